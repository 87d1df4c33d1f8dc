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


def _view_moments(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per view (B,): masked-voxel MSE, target mean and variance, prediction variance, the mean variance within a
    masked patch, and the number of masked tokens. The voxels are reduced once, to per-token moments; a view's
    variance is built from its tokens' means and variances (law of total variance: every token holds the same number
    of voxels), so the statistics of any set of views (a mask pattern, the whole batch) follow without touching the
    voxels again."""
    prediction, target = prediction.float(), target.float()
    hidden = mask.to(target.dtype)
    tokens = hidden.sum(dim=1)

    def over_masked(per_token: torch.Tensor) -> torch.Tensor:
        return (per_token * hidden).sum(dim=1) / tokens.clamp(min=1)

    def mean_and_var(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        token_mean = values.mean(dim=-1)
        token_var = (values - token_mean[..., None]).pow(2).mean(dim=-1)  # on CPU ~4x faster than torch.var_mean
        mean = over_masked(token_mean)
        return mean, over_masked(token_var + (token_mean - mean[:, None]).pow(2)), over_masked(token_var)

    target_mean, target_var, patch_var = mean_and_var(target)
    return {"tokens": tokens, "mse": over_masked((prediction - target).pow(2).mean(dim=-1)),
            "target_mean": target_mean, "target_var": target_var, "patch_var": patch_var,
            "prediction_var": mean_and_var(prediction)[1]}


def _summarise(moments: dict[str, torch.Tensor], views: torch.Tensor) -> dict[str, float]:
    """The logged statistics of the chosen views (bool (B,)) that hide at least one token (NaN where none does).
    Views are chosen by weights, not indexing, so that on a GPU the values come back in one transfer."""
    tokens = moments["tokens"]
    chosen = (views & (tokens > 0)).to(tokens.dtype)

    def view_mean(values: torch.Tensor) -> torch.Tensor:
        return (values * chosen).sum() / chosen.sum()

    weight = tokens * chosen / (tokens * chosen).sum()  # the pooled voxels: each view by its masked tokens
    pooled_mean = (weight * moments["target_mean"]).sum()
    pooled_var = (weight * (moments["target_var"] + (moments["target_mean"] - pooled_mean).pow(2))).sum()
    values = torch.stack([view_mean(moments["mse"]), pooled_var, view_mean(moments["target_var"]),
                          view_mean(moments["patch_var"]), view_mean(moments["prediction_var"]).sqrt()]).tolist()
    rec, collapsed_global, collapsed_sample, collapsed_patch, prediction_std = values
    return {
        "rec_loss": rec,
        "collapsed_loss_global": collapsed_global,
        "collapsed_loss_sample": collapsed_sample,
        "collapsed_loss_patch": collapsed_patch,
        "loss_ratio": rec / max(collapsed_sample, 1e-12),
        "prediction_std": prediction_std,
        "target_std": collapsed_sample ** 0.5,
    }


@torch.no_grad()
def complete_collapse_stats(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                            patterns: Sequence[str] | None = None) -> dict[str, float]:
    """prediction/target (B, T, P) voxels per token, mask (B, T) True = masked token; views without a masked
    token are left out. Per-view values are averaged with equal weight (see the module docstring). With
    `patterns` (the mask pattern of each view) the same statistics of each pattern's views follow, keyed
    `{pattern}_{stat}`."""
    moments = _view_moments(prediction, target, mask)
    stats = _summarise(moments, torch.ones_like(moments["tokens"], dtype=torch.bool))
    for pattern in sorted(set(patterns or ())):
        views = torch.tensor([p == pattern for p in patterns], device=mask.device)
        stats.update({f"{pattern}_{key}": value for key, value in _summarise(moments, views).items()})
    return stats


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
