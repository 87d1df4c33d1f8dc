"""Pyramid Barlow Twins (PBT): a Barlow Twins loss between the two masked views at several encoder depths.

Estimator. Barlow Twins standardises each feature over a batch of samples and pushes the views' cross-correlation
matrix towards the identity. 3D volumes come 1-4 per GPU, where batch statistics over samples are meaningless, so the
"samples" here are spatial positions: per view, the features of the visible tokens at one position are averaged over
modalities, and every position visible in both views of a volume gives one paired sample. A 96^3 crop yields tens to
hundreds of pairs per volume (all volumes of the local batch are pooled), which is enough to estimate a
cross-correlation, and pairing by position asks for exactly what PBT is for: the same anatomy seen through two
different masks must map to the same features (invariance), and the feature dimensions must carry decorrelated
information across the positions of a scan (no dimensional collapse).

Defaults (the paper does not publish them): projector Linear-BatchNorm-ReLU-Linear of width `projector_dim` per
level; off-diagonal weight lambda = 0.0051 (the Barlow Twins paper's value); the loss is divided by the projector width
so that its scale does not depend on it; PBT weight 0.1 relative to the reconstruction MSE, chosen so that PBT acts
as a regulariser rather than dominating reconstruction (measured start values are in the README).
"""

from __future__ import annotations

import torch
from torch import nn

from emim.model.tokens import position_features


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, off_diagonal_weight: float = 0.0051) -> torch.Tensor:
    """Barlow Twins loss of paired samples (n, d), divided by d: 0 for identical decorrelated features."""
    n, d = z1.shape
    z1 = (z1 - z1.mean(0)) / (z1.std(0, unbiased=False) + 1e-5)
    z2 = (z2 - z2.mean(0)) / (z2.std(0, unbiased=False) + 1e-5)
    c = z1.T @ z2 / n
    diagonal = torch.diagonal(c)
    on = (diagonal - 1).pow(2).sum()
    off = c.pow(2).sum() - diagonal.pow(2).sum()
    return (on + off_diagonal_weight * off) / d


class PyramidBarlowTwins(nn.Module):
    """One projector per pyramid level; `levels` picks how many (from the deepest down), 0 disables PBT."""

    def __init__(self, embed_dim: int, projector_dim: int, levels: int = 4, off_diagonal_weight: float = 0.0051):
        super().__init__()
        if not 0 <= levels <= 4:
            raise ValueError("PBT levels must be between 0 (plain MIM) and 4")
        self.levels = levels
        self.off_diagonal_weight = off_diagonal_weight
        self.projectors = nn.ModuleList(
            nn.Sequential(nn.Linear(embed_dim, projector_dim, bias=False), nn.BatchNorm1d(projector_dim),
                          nn.ReLU(inplace=True), nn.Linear(projector_dim, projector_dim))
            for _ in range(levels))

    def forward(self, view1: list[torch.Tensor], keep1: torch.Tensor, padding1: torch.Tensor | None,
                view2: list[torch.Tensor], keep2: torch.Tensor, padding2: torch.Tensor | None,
                positions: int) -> tuple[torch.Tensor, dict[int, float]]:
        """Mean Barlow Twins loss over the last `levels` pyramid levels, and each level's value keyed by its
        1-based pyramid level; a level with fewer than two positions visible in both views is left out (missing
        from the dict, not shifted onto the next level's name)."""
        chosen = list(range(len(view1)))[len(view1) - self.levels:]
        losses: dict[int, torch.Tensor] = {}
        for projector, level in zip(self.projectors, chosen):
            f1, present1 = position_features(view1[level], keep1, padding1, positions)
            f2, present2 = position_features(view2[level], keep2, padding2, positions)
            both = present1 & present2
            if int(both.sum()) < 2:
                continue
            z1 = projector(f1[both]).float()
            z2 = projector(f2[both]).float()
            losses[level + 1] = barlow_twins_loss(z1, z2, self.off_diagonal_weight)
        if not losses:
            return view1[0].new_zeros(()).float(), {}
        return torch.stack(list(losses.values())).mean(), {k: float(v.detach()) for k, v in losses.items()}
