"""The light MIM decoder: predicts the voxels of every token from the visible tokens' latents.

Mask tokens fill the masked slots; the decoder re-adds position and modality embeddings of its own width because
the encoder only saw the visible tokens. It is deliberately small (the paper's "light decoder"; the authors' code
uses 8 blocks of width 384, our presets use fewer) so that the encoder, not the decoder, has to learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emim.config import ModelConfig
from emim.model.blocks import Block
from emim.model.encoder import init_weights
from emim.model.tokens import sincos_position_embedding


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
        full = full + sincos_position_embedding(grid, x.shape[-1]).to(x.device, x.dtype)
        full = full + self.modality_embed[list(modality_ids)].to(x.dtype)[None, :, None, :]
        full = full.reshape(b, m * n, -1)
        for block in self.blocks:
            full = block(full)
        return self.head(self.norm(full))
