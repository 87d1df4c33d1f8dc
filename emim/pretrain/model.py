"""The E-MIM pretraining network: shared encoder + light decoder + pyramid Barlow Twins, both views in one pass."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emim.config import ModelConfig
from emim.contract import PBT_LEVELS, PBT_WEIGHT
from emim.model.decoder import MIMDecoder
from emim.model.encoder import EMIMEncoder
from emim.model.tokens import patchify
from emim.pretrain.diagnostics import complete_collapse_stats, per_view_mse
from emim.pretrain.masks import visible_index
from emim.pretrain.pbt import PyramidBarlowTwins


class EMIMPretrainer(nn.Module):
    def __init__(self, config: ModelConfig, pbt_levels: int = PBT_LEVELS, pbt_weight: float = PBT_WEIGHT,
                 off_diagonal_weight: float = 0.0051) -> None:
        super().__init__()
        self.config = config
        self.encoder = EMIMEncoder(config)
        self.decoder = MIMDecoder(config)
        self.pbt = PyramidBarlowTwins(config.embed_dim, config.projector_dim, pbt_levels, off_diagonal_weight)
        self.pbt_weight = pbt_weight

    def reconstruct(self, x: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor],
                                                                          torch.Tensor, torch.Tensor | None]:
        """x (B, M, X, Y, Z), masks (B, M, N) -> voxel predictions (B, M*N, p^3), pyramid features, keep, padding."""
        keep, padding = visible_index(masks)
        levels = self.encoder(x, keep=keep, padding=padding)
        grid = tuple(s // self.config.patch_size for s in x.shape[2:])
        prediction = self.decoder(levels[-1], keep, padding, grid, range(x.shape[1]))
        return prediction, levels, keep, padding

    def forward(self, x: torch.Tensor, masks1: torch.Tensor, masks2: torch.Tensor, with_stats: bool = False,
                patterns: Sequence[str] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss = mean over the 2B views of each view's masked-voxel MSE + pbt_weight * PBT, and values to log.

        `patterns` names the mask pattern of each of the 2B views (masks1 then masks2); with `with_stats` the
        collapse statistics are then also logged per pattern.
        """
        b = x.shape[0]
        positions = masks1.shape[2]
        prediction, levels, keep, padding = self.reconstruct(torch.cat([x, x]), torch.cat([masks1, masks2]))
        target = patchify(x, self.config.patch_size).to(prediction.dtype)
        target = torch.cat([target, target])
        hidden = torch.cat([masks1, masks2]).flatten(1)
        rec_loss = per_view_mse(prediction, target, hidden).mean()
        logs: dict[str, float] = {"rec_loss": float(rec_loss.detach())}
        loss = rec_loss
        if self.pbt.levels:
            pad1 = None if padding is None else padding[:b]
            pad2 = None if padding is None else padding[b:]
            pbt_loss, per_level = self.pbt([lv[:b] for lv in levels], keep[:b], pad1,
                                           [lv[b:] for lv in levels], keep[b:], pad2, positions)
            loss = loss + self.pbt_weight * pbt_loss
            logs["pbt_loss"] = float(pbt_loss.detach())
            logs.update({f"pbt_level{level}": v for level, v in per_level.items()})
        if with_stats:
            stats = complete_collapse_stats(prediction.detach(), target, hidden, patterns)
            logs.update({k: v for k, v in stats.items() if k != "rec_loss"})
        return loss, logs
