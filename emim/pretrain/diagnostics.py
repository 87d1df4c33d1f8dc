"""Collapse diagnostics.

Complete collapse: the best constant prediction of the masked voxels has an MSE equal to their variance, the
"collapsed loss". If that is below the loss a healthy model converges to, a constant output wins and the model
collapses. We log the collapsed loss (globally over the batch, per sample, and per patch - the loss of predicting each
patch's own mean) beside the reconstruction loss, their ratio and the spread of the predictions.

Dimensional collapse: features that fill a low-dimensional subspace. We log the effective rank (exp of the entropy of
the normalised singular values, Roy & Vetterli 2007) and the normalised singular-value spectrum of encoder features
per pyramid level, computed on a fixed held-out set so the numbers are comparable over steps.
"""

from __future__ import annotations

import torch

# A run is called completely collapsed when its reconstruction loss is within 5% of the per-sample collapsed loss
# while its predictions vary less than a quarter as much as the targets.
COLLAPSE_LOSS_RATIO = 0.95
COLLAPSE_STD_RATIO = 0.25
# A pyramid level is called dimensionally collapsing when its effective rank falls below half of its first value.
RANK_DROP_RATIO = 0.5


@torch.no_grad()
def complete_collapse_stats(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """prediction/target (B, T, P) voxels per token, mask (B, T) True = masked token."""
    prediction, target = prediction.float(), target.float()
    masked_target = target[mask]
    masked_prediction = prediction[mask]
    per_sample = [target[b][mask[b]].var(unbiased=False) for b in range(target.shape[0]) if mask[b].any()]
    rec = float((masked_prediction - masked_target).pow(2).mean())
    collapsed_sample = float(torch.stack(per_sample).mean())
    target_std = float(masked_target.std(unbiased=False))
    prediction_std = float(masked_prediction.std(unbiased=False))
    return {
        "rec_loss": rec,
        "collapsed_loss_global": float(masked_target.var(unbiased=False)),
        "collapsed_loss_sample": collapsed_sample,
        "collapsed_loss_patch": float(masked_target.var(dim=1, unbiased=False).mean()),
        "loss_ratio": rec / max(collapsed_sample, 1e-12),
        "prediction_std": prediction_std,
        "target_std": target_std,
    }


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
