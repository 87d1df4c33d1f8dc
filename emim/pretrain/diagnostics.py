"""Collapse diagnostics.

Complete collapse: the best constant prediction of a view's masked voxels has an MSE equal to their variance, the
"collapsed loss". If that is below the loss a healthy model converges to, a constant output wins and the model
collapses. We log the collapsed loss (globally over the batch, per view, and per patch - the loss of predicting each
patch's own mean) beside the reconstruction loss, their ratio and the spread of the predictions.

Every per-view quantity is averaged over views with equal weight, exactly as the training loss is (see
`per_view_mse`), so a predictor that outputs each view's own masked mean scores a loss ratio of exactly 1.

Dimensional collapse: features that fill a low-dimensional subspace. We log the effective rank (exp of the entropy of
the normalised singular values, Roy & Vetterli 2007) and the normalised singular-value spectrum of encoder features
per pyramid level, computed on a fixed held-out set so the numbers are comparable over steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# A run is called completely collapsed when its reconstruction loss is within 5% of the per-view collapsed loss
# while its predictions vary less than a quarter as much as the targets.
COLLAPSE_LOSS_RATIO = 0.95
COLLAPSE_STD_RATIO = 0.25
# ... and only after this share of the run: the first evaluations of a healthy run sit there too.
COLLAPSE_QUIET_SHARE = 0.2
# A pyramid level is called dimensionally collapsing when its effective rank falls below half of its first value.
RANK_DROP_RATIO = 0.5


def per_view_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked-voxel MSE of each view (B,), from prediction/target (B, T, P) and mask (B, T) True = masked.

    The training loss is the mean of these: pooling all masked voxels instead would weight a view by how much it
    hides (a modal mask hides 1/4 of the tokens, a patch mask 3/4), so the easiest pattern would dominate.
    """
    squared = (prediction.float() - target.float()).pow(2).mean(dim=-1)
    hidden = mask.to(squared.dtype)
    return (squared * hidden).sum(dim=1) / hidden.sum(dim=1).clamp(min=1)


def _masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Variance over the masked voxels of each view: values (B, T, P), mask (B, T) -> (B,)."""
    weight = mask.to(values.dtype)[..., None].expand_as(values)
    count = weight.sum(dim=(1, 2)).clamp(min=1)
    mean = (values * weight).sum(dim=(1, 2)) / count
    return ((values - mean[:, None, None]).pow(2) * weight).sum(dim=(1, 2)) / count


@torch.no_grad()
def complete_collapse_stats(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """prediction/target (B, T, P) voxels per token, mask (B, T) True = masked token; views without a masked
    token are left out. Per-view values are averaged with equal weight (see the module docstring)."""
    prediction, target = prediction.float(), target.float()
    views = mask.any(dim=1)
    prediction, target, mask = prediction[views], target[views], mask[views]
    hidden = mask.to(target.dtype)
    tokens = hidden.sum(dim=1).clamp(min=1)
    rec = float(per_view_mse(prediction, target, mask).mean())
    collapsed_view = _masked_var(target, mask)
    patch_var = (target.var(dim=-1, unbiased=False) * hidden).sum(dim=1) / tokens
    collapsed_sample = float(collapsed_view.mean())
    return {
        "rec_loss": rec,
        "collapsed_loss_global": float(target[mask].var(unbiased=False)),
        "collapsed_loss_sample": collapsed_sample,
        "collapsed_loss_patch": float(patch_var.mean()),
        "loss_ratio": rec / max(collapsed_sample, 1e-12),
        "prediction_std": float(_masked_var(prediction, mask).mean().sqrt()),
        "target_std": collapsed_sample ** 0.5,
    }


def stats_by_pattern(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                     patterns: Sequence[str]) -> dict[str, float]:
    """`complete_collapse_stats` of the views of each mask pattern, keyed `{pattern}_{stat}`."""
    out: dict[str, float] = {}
    for pattern in sorted(set(patterns)):
        rows = torch.tensor([p == pattern for p in patterns], device=mask.device)
        stats = complete_collapse_stats(prediction[rows], target[rows], mask[rows])
        out.update({f"{pattern}_{key}": value for key, value in stats.items()})
    return out


def is_completely_collapsed(stats: dict[str, float]) -> bool:
    return (stats["loss_ratio"] >= COLLAPSE_LOSS_RATIO
            and stats["prediction_std"] < COLLAPSE_STD_RATIO * stats["target_std"])


@torch.no_grad()
def singular_spectrum(features: torch.Tensor) -> tuple[float, list[float]]:
    """Effective rank and normalised singular values (sum 1, descending) of features (n, D), centred."""
    x = features.float()
    x = x - x.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(x)
    p = singular / singular.sum().clamp(min=1e-12)
    entropy = -(p * torch.log(p.clamp(min=1e-12))).sum()
    return float(torch.exp(entropy)), [float(v) for v in p]
