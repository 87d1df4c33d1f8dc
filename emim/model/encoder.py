"""The E-MIM encoder: a 3D ViT whose patch embedding is shared by all modalities.

Each modality is embedded by the same 1-channel Conv3d, then gets a fixed 3D sin-cos position embedding and a
learned modality embedding, and all tokens of all modalities attend to each other. Sharing the tokeniser lets the
encoder take any subset of modalities (a missing sequence is simply absent), and the modality embedding tells the
attention which contrast a token came from. Masked tokens are dropped before the encoder (MAE-style), so encoder
compute scales with the visible fraction only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emim.config import ModelConfig
from emim.model.blocks import Block, attention_mask
from emim.model.tokens import gather_tokens, sincos_position_embedding


class EMIMEncoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = nn.Conv3d(1, dim, kernel_size=config.patch_size, stride=config.patch_size)
        self.modality_embed = nn.Parameter(torch.zeros(config.num_modalities, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, config.dropout) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim)
        self._positions: dict[tuple[int, int, int], torch.Tensor] = {}
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.apply(init_weights)

    def position_embedding(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        key = tuple(grid)
        if key not in self._positions or self._positions[key].device != device:
            self._positions[key] = sincos_position_embedding(key, self.config.embed_dim).to(device)
        return self._positions[key]

    def embed(self, x: torch.Tensor, modality_ids: Sequence[int] | None = None) -> torch.Tensor:
        """(B, M', X, Y, Z) -> (B, M'*N, D) tokens, modality-major (see emim.model.tokens)."""
        b, m = x.shape[:2]
        ids = list(range(m)) if modality_ids is None else list(modality_ids)
        if len(ids) != m:
            raise ValueError(f"got {m} image channels but {len(ids)} modality ids")
        tokens = self.patch_embed(x.reshape(b * m, 1, *x.shape[2:]))  # (B*M, D, gx, gy, gz)
        grid = tuple(tokens.shape[2:])
        tokens = tokens.flatten(2).transpose(1, 2).reshape(b, m, -1, self.config.embed_dim)
        tokens = tokens + self.position_embedding(grid, x.device).to(tokens.dtype)
        tokens = tokens + self.modality_embed[ids].to(tokens.dtype)[None, :, None, :]
        return tokens.reshape(b, -1, self.config.embed_dim)

    def forward(self, x: torch.Tensor, modality_ids: Sequence[int] | None = None, keep: torch.Tensor | None = None,
                padding: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Encode the tokens at `keep` (B, K) (all tokens if None); `padding` (B, K) marks filler indices.

        Returns the features after each block in `config.pyramid_levels` (the last one layer-normed), each (B, K, D).
        """
        tokens = self.embed(x, modality_ids)
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        attend = attention_mask(padding)
        levels = set(self.config.pyramid_levels)
        outputs = []
        for depth, block in enumerate(self.blocks, start=1):
            tokens = block(tokens, attend)
            if depth in levels:
                outputs.append(self.norm(tokens) if depth == self.config.depth else tokens)
        return outputs


def fuse_modalities(features: torch.Tensor, num_modalities: int) -> torch.Tensor:
    """Full-token features (B, M*N, D) -> per-position features (B, N, D), the mean over modalities.

    The mean (not a concatenation) keeps the spatial features meaningful for any subset of modalities.
    """
    b, t, d = features.shape
    return features.reshape(b, num_modalities, t // num_modalities, d).mean(dim=1)


def init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv3d):
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
