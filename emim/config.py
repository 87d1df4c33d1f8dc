"""Model size presets and the serialisable configuration of a model.

The paper (arXiv 2407.10377) does not publish most sizes; `base` follows its authors' code (ViT-B/16: width 768,
depth 12, 12 heads, patch 16^3) and the UNETR convention of skips after blocks 3/6/9/12. `tiny` exists so that
tests and laptop smoke runs train in seconds on 2 CPU cores; `small` is the CPU inference preset (ViT-S width).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from emim.contract import BRATS_MODALITIES, PRESET_NAMES


# What a hidden token starts from in the MIM decoder (see emim.model.decoder): "local" = the mean of the visible
# tokens at its position, else of its 3x3x3 neighbourhood; "same-position" = that position only; "mask-token" =
# the learned mask token alone (MAE). Configs saved before the setting existed were trained with "mask-token".
DECODER_FILLS = ("local", "same-position", "mask-token")
LEGACY_DECODER_FILL = "mask-token"


# Upper bounds on sizes read from a config or a model's metadata: far above every preset, far below what would
# exhaust memory while the network is being built (a metadata depth of 1,000,000 reached 5 GB in 28 s).
LIMITS = {"patch_size": 64, "embed_dim": 4096, "depth": 64, "num_heads": 64, "decoder_dim": 4096,
          "decoder_depth": 64, "decoder_heads": 64, "projector_dim": 16384}
MAX_CROP = 256  # voxels per side: a 512^3 crop grew past 12 GB of memory before it was stopped


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an encoder/decoder with the same weights layout."""

    modalities: tuple[str, ...] = BRATS_MODALITIES
    crop_size: tuple[int, int, int] = (96, 96, 96)
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    pyramid_levels: tuple[int, ...] = (3, 6, 9, 12)  # 1-based block indices whose outputs are exposed
    decoder_dim: int = 384
    decoder_depth: int = 4
    decoder_heads: int = 6
    projector_dim: int = 1024  # PBT projector width per level
    dropout: float = 0.0
    decoder_fill: str = "local"  # what a hidden token starts from in the decoder, one of DECODER_FILLS

    def __post_init__(self) -> None:
        for name, high in LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
                raise ValueError(f"{name} must be a whole number between 1 and {high}, got {value!r}")
        sides = self.crop_size
        if len(sides) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_CROP
                                      for s in sides):
            raise ValueError(f"crop_size must be three whole numbers between 1 and {MAX_CROP}, got {sides!r}")
        if any(s % self.patch_size for s in self.crop_size):
            raise ValueError(f"crop size {self.crop_size} must be a multiple of the patch size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if len(self.pyramid_levels) != 4 or not all(1 <= lv <= self.depth for lv in self.pyramid_levels):
            raise ValueError(f"pyramid_levels must be four block indices in 1..{self.depth}, got {self.pyramid_levels}")
        if self.decoder_fill not in DECODER_FILLS:
            raise ValueError(f"decoder_fill must be one of {DECODER_FILLS}, got {self.decoder_fill!r}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid of one modality for a crop."""
        return tuple(s // self.patch_size for s in self.crop_size)  # type: ignore[return-value]

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        tuples = {"modalities", "crop_size", "pyramid_levels"}
        values = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        values.setdefault("decoder_fill", LEGACY_DECODER_FILL)
        return cls(**values)


@dataclass(frozen=True)
class Preset:
    """One model size and what a run of it starts with where the command line is silent."""

    model: ModelConfig
    pretrain_lr: float  # docs/pretraining-recipe.md: `tiny` measured on the real BraTS mini cases (CPU); `small`
    pretrain_batch: int  # and `base` keep MAE's 1.5e-4 until a GPU run measures them
    feature_size: int  # UNETR decoder width of a segmentation model


# keyed by contract.PRESET_NAMES, in that order (a test holds them equal)
PRESETS: dict[str, Preset] = dict(zip(PRESET_NAMES, (
    Preset(ModelConfig(crop_size=(64, 64, 64), embed_dim=96, depth=4, num_heads=3, pyramid_levels=(1, 2, 3, 4),
                       decoder_dim=64, decoder_depth=1, decoder_heads=2, projector_dim=128),
           pretrain_lr=3e-3, pretrain_batch=4, feature_size=8),
    Preset(ModelConfig(crop_size=(96, 96, 96), embed_dim=384, depth=12, num_heads=6, decoder_dim=192,
                       decoder_depth=2, decoder_heads=6, projector_dim=512),
           pretrain_lr=1.5e-4, pretrain_batch=2, feature_size=16),
    Preset(ModelConfig(), pretrain_lr=1.5e-4, pretrain_batch=2, feature_size=16),
)))


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A named preset's model with some fields replaced (e.g. modalities or crop size from the data)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name].model, **{k: v for k, v in overrides.items() if v is not None})


def preset_of(model: ModelConfig) -> str:
    """The preset whose encoder `model` has (for its recipe), else the largest."""
    return next((name for name, p in PRESETS.items() if (p.model.embed_dim, p.model.depth, p.model.num_heads) ==
                 (model.embed_dim, model.depth, model.num_heads)), PRESET_NAMES[-1])

