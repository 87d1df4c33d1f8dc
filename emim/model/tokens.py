"""Token layout shared by the encoder, the decoder, the masks and the losses.

A crop of M modalities with a grid of N = gx*gy*gz patches per modality becomes M*N tokens in modality-major order:
token t = m * N + n, with n the row-major index of the patch in the (gx, gy, gz) grid (the order of Conv3d output).
"""

from __future__ import annotations

import math

import torch


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, M, X, Y, Z) -> (B, M*N, patch^3) in token order, the reconstruction target layout."""
    b, m, sx, sy, sz = x.shape
    gx, gy, gz = sx // patch, sy // patch, sz // patch
    x = x.reshape(b, m, gx, patch, gy, patch, gz, patch)
    x = x.permute(0, 1, 2, 4, 6, 3, 5, 7)
    return x.reshape(b, m * gx * gy * gz, patch**3)


def unpatchify(tokens: torch.Tensor, modalities: int, grid: tuple[int, int, int], patch: int) -> torch.Tensor:
    """Inverse of `patchify`: (B, M*N, patch^3) -> (B, M, X, Y, Z)."""
    b = tokens.shape[0]
    gx, gy, gz = grid
    x = tokens.reshape(b, modalities, gx, gy, gz, patch, patch, patch)
    x = x.permute(0, 1, 2, 5, 3, 6, 4, 7)
    return x.reshape(b, modalities, gx * patch, gy * patch, gz * patch)


def sincos_position_embedding(grid: tuple[int, int, int], dim: int) -> torch.Tensor:
    """Fixed 3D sin-cos position embedding (N, dim); fixed so any crop size reuses the same weights."""
    per_axis = (dim // 6) * 2
    freqs = 1.0 / (10000 ** (torch.arange(per_axis // 2, dtype=torch.float64) / max(per_axis // 2, 1)))
    axes = torch.meshgrid(*[torch.arange(g, dtype=torch.float64) for g in grid], indexing="ij")
    parts = []
    for axis in axes:
        angles = axis.reshape(-1, 1) * freqs.reshape(1, -1)
        parts += [torch.sin(angles), torch.cos(angles)]
    emb = torch.cat(parts, dim=1)
    if emb.shape[1] < dim:
        emb = torch.cat([emb, torch.zeros(emb.shape[0], dim - emb.shape[1], dtype=emb.dtype)], dim=1)
    return emb.float()


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Select tokens (B, T, D) at per-sample indices (B, K) -> (B, K, D)."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def num_tokens(grid: tuple[int, int, int]) -> int:
    return math.prod(grid)


def position_features(features: torch.Tensor, keep: torch.Tensor, padding: torch.Tensor | None,
                      positions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Visible-token features (B, K, D) -> per-position means over modalities (B, N, D) and presence (B, N)."""
    b, _, d = features.shape
    position = keep % positions
    weight = torch.ones_like(position, dtype=features.dtype) if padding is None else (~padding).to(features.dtype)
    sums = features.new_zeros(b, positions, d).scatter_add_(
        1, position.unsqueeze(-1).expand(-1, -1, d), features * weight.unsqueeze(-1))
    counts = features.new_zeros(b, positions).scatter_add_(1, position, weight)
    return sums / counts.clamp(min=1).unsqueeze(-1), counts > 0
