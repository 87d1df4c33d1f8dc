"""The light MIM decoder: predicts the voxels of every token from the visible tokens' latents.

Hidden slots start from a learned mask token plus, by default (`decoder_fill="local"`), the mean of the visible
latents at the same position (the other modalities there) or, where all of them are hidden, of the 3x3x3
neighbourhood; the decoder then re-adds position and modality embeddings of its own width because the encoder
only saw the visible tokens. Why the fill: with the mask token alone (MAE), a small decoder must first learn to
route attention from each hidden slot to the right visible tokens, and on random crops of real BraTS cases it did
not within thousands of CPU steps: every pattern stayed at the collapsed solution. Given what lies at and around
its position, the decoder learns the cross-contrast and local mapping at once (docs/pretraining-recipe.md); it is
the densification that sparse-convolution MIM gets from its convolutions. The decoder is deliberately small (the
paper's "light decoder"; the authors' code uses 8 blocks of width 384, our presets use fewer) so that the encoder,
not the decoder, has to learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from emim.config import ModelConfig
from emim.model.blocks import Block
from emim.model.encoder import init_weights
from emim.model.tokens import position_features, sincos_position_embedding


def visible_context(x: torch.Tensor, keep: torch.Tensor, padding: torch.Tensor | None, grid: tuple[int, int, int],
                    neighbours: bool) -> torch.Tensor:
    """Per position (B, N, D): the mean of the visible tokens at that position (other modalities); with
    `neighbours`, where none is visible there, the mean of the visible tokens of its 3x3x3 neighbourhood; zero
    where nothing near is visible."""
    n = grid[0] * grid[1] * grid[2]
    means, present = position_features(x, keep, padding, n)
    weight = present.unsqueeze(-1).to(x.dtype)
    if not neighbours:
        return means * weight
    b, _, d = means.shape
    sums = (means * weight).transpose(1, 2).reshape(b, d, *grid)
    counts = weight.transpose(1, 2).reshape(b, 1, *grid)
    # zero-padded so that grids of 1 or 2 positions per axis work too; the ratio of the two means is the mean
    pooled = F.avg_pool3d(F.pad(sums, (1,) * 6), 3, stride=1)
    pooled_counts = F.avg_pool3d(F.pad(counts, (1,) * 6), 3, stride=1)
    local = (pooled / pooled_counts.clamp(min=1e-6)).flatten(2).transpose(1, 2)
    local = local * (pooled_counts.flatten(2).transpose(1, 2) > 0).to(x.dtype)
    return torch.where(present.unsqueeze(-1), means, local)


class MIMDecoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.decoder_dim
        self.embed = nn.Linear(config.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.modality_embed = nn.Parameter(torch.zeros(config.num_modalities, dim))
        self.blocks = nn.ModuleList(Block(dim, config.decoder_heads, config.mlp_ratio) for _ in
                                    range(config.decoder_depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, config.patch_size**3)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.modality_embed, std=0.02)
        self.apply(init_weights)

    def forward(self, latent: torch.Tensor, keep: torch.Tensor, padding: torch.Tensor | None,
                grid: tuple[int, int, int], modality_ids: Sequence[int]) -> torch.Tensor:
        """latent (B, K, D_enc) at token indices keep (B, K) -> voxel predictions (B, M*N, patch^3) for all tokens."""
        b = latent.shape[0]
        m = len(modality_ids)
        n = grid[0] * grid[1] * grid[2]
        x = self.embed(latent)
        # padded entries are scattered into one extra slot that is dropped afterwards
        index = keep if padding is None else keep.masked_fill(padding, m * n)
        full = self.mask_token.to(x.dtype).expand(b, m * n + 1, x.shape[-1]).clone()
        full.scatter_(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)
        full = full[:, : m * n].reshape(b, m, n, -1)
        if self.config.decoder_fill != "mask-token":
            visible = torch.zeros(b, m * n + 1, dtype=torch.bool, device=x.device)
            visible.scatter_(1, index, True)
            context = visible_context(x, keep, padding, grid, self.config.decoder_fill == "local")
            full = torch.where(visible[:, : m * n].reshape(b, m, n, 1), full, full + context.unsqueeze(1))
        full = full + sincos_position_embedding(grid, x.shape[-1]).to(x.device, x.dtype)
        full = full + self.modality_embed[list(modality_ids)].to(x.dtype)[None, :, None, :]
        full = full.reshape(b, m * n, -1)
        for block in self.blocks:
            full = block(full)
        return self.head(self.norm(full))
