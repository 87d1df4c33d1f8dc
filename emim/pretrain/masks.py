"""Hybrid mask pattern (HMP): modal, position and patch masks over the (modality, position) token grid.

- patch mask: every (modality, position) token is hidden independently at `patch_ratio`, so a hidden patch can
  often be read off another contrast at the same place (easy, low collapsed loss on MRI);
- position mask: the same positions are hidden in every modality (`position_ratio`), so the model must infer
  anatomy from context rather than copy it across contrasts;
- modal mask: one whole modality is hidden, so it must be synthesised from the others.
Mixing them raises the variance of what is masked (the "collapsed loss") above the converged reconstruction loss,
which is how E-MIM avoids complete collapse. The paper does not publish its ratios or mixing probabilities; the
defaults here (0.5 patch, 0.4 position, uniform mixing) are our choice, measured on real BraTS cases against MAE's
0.75 and our earlier 0.6 (docs/pretraining-recipe.md), and are flags.

Masks are boolean (M, N) per sample, True = hidden. Every draw keeps at least one visible token.
"""

from __future__ import annotations

import torch

from emim.contract import MASK_PATTERNS as PATTERNS
from emim.pretrain.mask_config import MaskConfig


def _hide_count(total: int, ratio: float) -> int:
    return min(total - 1, max(1, round(total * ratio)))


def patch_mask(modalities: int, positions: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Independent random patches per modality, exactly round(ratio * N) hidden in each modality."""
    hidden = _hide_count(positions, ratio)
    order = torch.argsort(torch.rand(modalities, positions, generator=generator), dim=1)
    return order < hidden


def position_mask(modalities: int, positions: int, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """The same random positions hidden in every modality."""
    hidden = _hide_count(positions, ratio)
    chosen = torch.randperm(positions, generator=generator)[:hidden]
    mask = torch.zeros(positions, dtype=torch.bool)
    mask[chosen] = True
    return mask.expand(modalities, positions).clone()


def modal_mask(modalities: int, positions: int, generator: torch.Generator) -> torch.Tensor:
    """One whole modality hidden, chosen uniformly."""
    if modalities < 2:
        raise ValueError("a modal mask needs at least two modalities")
    mask = torch.zeros(modalities, positions, dtype=torch.bool)
    mask[int(torch.randint(modalities, (1,), generator=generator))] = True
    return mask


def sample_mask(modalities: int, positions: int, config: MaskConfig,
                generator: torch.Generator) -> tuple[torch.Tensor, str]:
    """One (M, N) mask and the name of the pattern that made it."""
    pattern = config.pattern
    if pattern == "hybrid":
        probs = torch.tensor(config.hybrid_probs, dtype=torch.float64)
        if modalities < 2:
            probs[2] = 0.0
        pattern = PATTERNS[int(torch.multinomial(probs, 1, generator=generator))]
    if pattern == "patch":
        return patch_mask(modalities, positions, config.patch_ratio, generator), pattern
    if pattern == "position":
        return position_mask(modalities, positions, config.position_ratio, generator), pattern
    return modal_mask(modalities, positions, generator), pattern


def available_patterns(modalities: int) -> tuple[str, ...]:
    """The patterns that can be drawn for this many modalities (a modal mask needs two)."""
    return PATTERNS if modalities > 1 else PATTERNS[:2]


def pattern_weights(config: MaskConfig, modalities: int) -> dict[str, float]:
    """The probability of each pattern a mask config draws (patterns it never draws are left out)."""
    if config.pattern != "hybrid":
        return {config.pattern: 1.0}
    probs = {name: p for name, p in zip(PATTERNS, config.hybrid_probs) if name in available_patterns(modalities)}
    total = sum(probs.values())
    return {name: p / total for name, p in probs.items() if p > 0}


def sample_batch(batch: int, modalities: int, positions: int, config: MaskConfig,
                 generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """(B, M, N) masks drawn independently per sample."""
    draws = [sample_mask(modalities, positions, config, generator) for _ in range(batch)]
    return torch.stack([mask for mask, _ in draws]), [name for _, name in draws]


def visible_index(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token indices of the visible tokens of (B, M, N) masks -> keep (B, K) and padding (B, K) or None.

    Samples may keep different numbers of tokens (a modal mask hides 1/M, a patch mask 75%); shorter rows are
    padded with index 0 and flagged in `padding` so attention ignores them.
    """
    visible = ~mask.flatten(1)
    counts = visible.sum(dim=1)
    k = int(counts.max())
    # stable sort puts visible tokens first in their original order
    order = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)[:, :k]
    padding = torch.arange(k, device=mask.device)[None, :] >= counts[:, None]
    keep = order.masked_fill(padding, 0)
    return keep, (padding if bool(padding.any()) else None)
