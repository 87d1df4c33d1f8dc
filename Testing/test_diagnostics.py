"""Collapse diagnostics are exact: a predictor that outputs each view's own masked mean scores ratio 1.000."""

from __future__ import annotations

import pytest
import torch

from emim.pretrain.diagnostics import complete_collapse_stats, per_view_mse
from emim.pretrain.masks import MaskConfig, sample_batch
from emim.pretrain.pbt import PyramidBarlowTwins


def _collapsed_prediction(target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Each view's mean over its own masked voxels, everywhere: the best constant per view."""
    weight = hidden[..., None].to(target.dtype).expand_as(target)
    mean = (target * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))
    return mean[:, None, None].expand_as(target).clone()


def test_an_exactly_collapsed_predictor_scores_one_under_hybrid_masks():
    generator = torch.Generator().manual_seed(0)
    masks, patterns = sample_batch(24, 4, 64, MaskConfig("hybrid"), generator)
    hidden = masks.flatten(1)
    # views with different scales, so a voxel-pooled estimate would weight them differently
    target = torch.randn(24, 4 * 64, 27, generator=generator) * torch.linspace(0.2, 3.0, 24)[:, None, None]
    prediction = _collapsed_prediction(target, hidden)
    stats = complete_collapse_stats(prediction, target, hidden)
    assert abs(stats["loss_ratio"] - 1.0) < 1e-3
    assert stats["prediction_std"] < 1e-5 * stats["target_std"]
    assert set(patterns) == {"patch", "position", "modal"}
    by_pattern = complete_collapse_stats(prediction, target, hidden, patterns)
    for pattern in ("patch", "position", "modal"):
        assert abs(by_pattern[f"{pattern}_loss_ratio"] - 1.0) < 1e-3


def test_each_statistic_is_its_definition_over_the_masked_voxels():
    """The statistics are assembled from per-token moments; here each one is computed from the voxels directly."""
    generator = torch.Generator().manual_seed(1)
    masks, patterns = sample_batch(6, 4, 27, MaskConfig("hybrid"), generator)
    hidden = masks.flatten(1)
    hidden[0] = False  # a view that hides nothing is left out
    target = torch.randn(6, 4 * 27, 8, generator=generator) * 2.0 + 0.5
    prediction = 0.3 * torch.randn(6, 4 * 27, 8, generator=generator) + 0.1
    stats = complete_collapse_stats(prediction, target, hidden, patterns)
    for name, views in [("", range(1, 6))] + [(f"{p}_", [v for v in range(1, 6) if patterns[v] == p])
                                               for p in set(patterns[1:])]:
        voxels = [target[v][hidden[v]] for v in views]
        assert stats[f"{name}collapsed_loss_global"] == pytest.approx(float(torch.cat(voxels).var(correction=0)))
        assert stats[f"{name}collapsed_loss_sample"] == pytest.approx(
            sum(float(x.var(correction=0)) for x in voxels) / len(views))
        assert stats[f"{name}collapsed_loss_patch"] == pytest.approx(
            sum(float(x.var(dim=-1, correction=0).mean()) for x in voxels) / len(views))
        assert stats[f"{name}prediction_std"] == pytest.approx(
            (sum(float(prediction[v][hidden[v]].var(correction=0)) for v in views) / len(views)) ** 0.5)
        assert stats[f"{name}rec_loss"] == pytest.approx(
            sum(float((prediction[v][hidden[v]] - target[v][hidden[v]]).pow(2).mean()) for v in views) / len(views))


def test_every_view_weighs_the_same_whatever_it_hides():
    target = torch.zeros(2, 8, 4)
    prediction = torch.zeros(2, 8, 4)
    prediction[0] = 1.0  # view 0 is wrong by 1 everywhere, view 1 is right
    hidden = torch.zeros(2, 8, dtype=torch.bool)
    hidden[0, :2] = True  # view 0 hides 2 tokens, view 1 hides 6
    hidden[1, 2:] = True
    assert per_view_mse(prediction, target, hidden).tolist() == [1.0, 0.0]
    assert complete_collapse_stats(prediction, target, hidden)["rec_loss"] == 0.5  # pooled voxels would say 0.25


def test_pbt_levels_are_named_by_their_pyramid_level():
    pbt = PyramidBarlowTwins(embed_dim=8, projector_dim=16, levels=2)
    keep = torch.arange(12).reshape(1, 12)
    levels = [torch.randn(1, 12, 8) for _ in range(4)]
    _, per_level = pbt(levels, keep, None, [x + 0.1 for x in levels], keep, None, positions=12)
    assert sorted(per_level) == [3, 4]  # the two deepest levels, not renamed 1 and 2
