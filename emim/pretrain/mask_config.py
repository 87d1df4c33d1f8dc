"""The hybrid mask's settings, torch-free so that building the command-line parsers never imports torch.

The masks themselves are drawn in `emim.pretrain.masks`, which says why these defaults were chosen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from emim.contract import HYBRID, MASK_CHOICES, PATCH_RATIO, POSITION_RATIO


@dataclass(frozen=True)
class MaskConfig:
    pattern: str = HYBRID              # one of MASK_CHOICES
    patch_ratio: float = PATCH_RATIO
    position_ratio: float = POSITION_RATIO
    hybrid_probs: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)  # patch, position, modal

    def __post_init__(self) -> None:
        if self.pattern not in MASK_CHOICES:
            raise ValueError(f"mask pattern must be one of {MASK_CHOICES}, got {self.pattern!r}")
        for name in ("patch_ratio", "position_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1)")
        if len(self.hybrid_probs) != 3 or min(self.hybrid_probs) < 0 or sum(self.hybrid_probs) <= 0:
            raise ValueError("hybrid_probs needs three non-negative weights (patch, position, modal)")

    def to_dict(self) -> dict:
        return asdict(self)
