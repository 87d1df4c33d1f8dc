"""The paper's complete-collapse analysis of a data set, without training.

For each mask pattern the "collapsed loss" is what a model scores that outputs one constant per masked view: the
variance of the hidden voxels (per view, as the training loss averages it; pooled over all views; and per patch,
the loss of knowing each hidden patch's own mean). A model only escapes the constant if it can beat that. Beside
it stands the loss a healthy (non-collapsed) pretraining reached on held-out real crops with the default recipe
(`HEALTHY`, measured, with its source), and a verdict per pattern.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from emim.model.tokens import patchify
from emim.pretrain.diagnostics import complete_collapse_stats
from emim.pretrain.masks import MaskConfig, available_patterns, pattern_weights, sample_batch

# Held-out loss ratio (reconstruction / per-view collapsed loss) per pattern that the default `tiny` recipe reached
# after 1,000 CPU steps on 2 real BraTS 2023 cases, measured on 8 fixed crops of a third, left-out case
# (docs/pretraining-recipe.md, row I). A pattern whose collapsed loss is not clearly above what a healthy run
# reaches gives the constant output nothing to lose.
HEALTHY_SOURCE = "docs/pretraining-recipe.md row I: default tiny recipe, 1,000 steps, 2 BraTS cases, left-out third"
HEALTHY: dict[str, float] = {"patch": 0.787, "position": 0.965, "modal": 0.596}
# A healthy run above this share of the collapsed loss barely beats a constant output.
WEAK_RATIO = 0.95
# Below this share of a view's variance left inside its patches, knowing the patch means is worth little.
LOW_HEADROOM = 0.1


@dataclass(frozen=True)
class PatternRisk:
    pattern: str
    probability: float
    collapsed_loss_global: float
    collapsed_loss_view: float
    collapsed_loss_patch: float
    healthy_ratio: float

    @property
    def headroom(self) -> float:
        """Share of the per-view variance that the hidden patches' own means explain."""
        return 1.0 - self.collapsed_loss_patch / max(self.collapsed_loss_view, 1e-12)

    @property
    def verdict(self) -> str:
        if self.headroom < LOW_HEADROOM:
            return (f"risk: patch means explain only {self.headroom:.0%} of the hidden variance, so a constant "
                    "output is nearly as good as any model; use smaller patches (--patch-size 8) or larger crops")
        if self.healthy_ratio >= 1.0:
            return ("risk: a healthy run does not beat the constant here; give this pattern less weight "
                    "(--hybrid-probs) and mix in the others")
        if self.healthy_ratio > WEAK_RATIO:
            return (f"weak: a healthy run reaches only {self.healthy_ratio:.2f} x this collapsed loss; it trains "
                    "the encoder little at this patch size, the other patterns carry the learning")
        return (f"ok: a healthy run reaches {self.healthy_ratio:.2f} x this collapsed loss, so the constant output "
                "loses")

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "probability": self.probability,
                "collapsed_loss_global": self.collapsed_loss_global,
                "collapsed_loss_view": self.collapsed_loss_view, "collapsed_loss_patch": self.collapsed_loss_patch,
                "headroom": self.headroom, "healthy_loss_ratio": self.healthy_ratio,
                "healthy_loss": self.healthy_ratio * self.collapsed_loss_view, "verdict": self.verdict}


def collapse_risk(crops: torch.Tensor, patch_size: int, mask: MaskConfig, seed: int = 0) -> list[PatternRisk]:
    """The collapsed losses of crops (B, M, X, Y, Z) of normalised images under every pattern (those the mask
    config does not draw with probability 0); the masks are drawn from `seed`."""
    target = patchify(crops, patch_size)
    modalities = crops.shape[1]
    positions = target.shape[1] // modalities
    weights = pattern_weights(mask, modalities)
    rows = []
    generator = torch.Generator().manual_seed(seed)
    for pattern in available_patterns(modalities):
        masks = sample_batch(crops.shape[0], modalities, positions, replace(mask, pattern=pattern), generator)[0]
        hidden = masks.flatten(1)
        constant = torch.where(hidden[..., None], 0.0, target)  # any prediction: only the target statistics count
        stats = complete_collapse_stats(constant, target, hidden)
        rows.append(PatternRisk(pattern, weights.get(pattern, 0.0), stats["collapsed_loss_global"],
                                stats["collapsed_loss_sample"], stats["collapsed_loss_patch"], HEALTHY[pattern]))
    return rows


def report_table(rows: Sequence[PatternRisk]) -> str:
    lines = [f"{'pattern':9} {'p':>5} {'collapsed: view':>15} {'global':>7} {'patch':>7} {'headroom':>8} "
             f"{'healthy':>8}  verdict"]
    for r in rows:
        lines.append(f"{r.pattern:9} {r.probability:5.2f} {r.collapsed_loss_view:15.3f} "
                     f"{r.collapsed_loss_global:7.3f} {r.collapsed_loss_patch:7.3f} {r.headroom:8.0%} "
                     f"{r.healthy_ratio * r.collapsed_loss_view:8.3f}  {r.verdict}")
    lines.append(f"healthy = the held-out loss a healthy run reaches, as a share of the collapsed loss, from "
                 f"{HEALTHY_SOURCE}")
    return "\n".join(lines)
