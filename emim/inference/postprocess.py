"""Clean label maps: no label outside the case's brain, nested regions inside each other, no specks.

A sliding-window network scores every voxel on its own, so on real scans it paints small false lesions along
the cortex and the brain's edge (45 to 278 per case for the demo model on real BraTS cases). Before labels are
painted, each region's thresholded mask is
1. cut to the case's own brain: the voxels that are non-zero in some input modality (skull-stripped data is
   exactly 0 outside), on the case's grid, so nothing leaks into the background after the spacing round trip;
2. cut to the regions that contain it (BraTS: ET inside TC inside WT), so removing an outer speck removes the
   inner labels with it;
3. rid of its connected lesions (26-connected, as the BraTS lesion-wise metrics count them) smaller than
   `min_lesion_mm3`, and, for the regions in `largest`, of all lesions but the largest.
The settings are a model's inference defaults (metadata `inference.postprocess`), chosen by measurement on real
cases (docs/postprocessing.md); `emim segment --postprocess none` keeps the raw masks (step 1 always applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from emim.errors import EmimError
from emim.labels import regions_to_labels

POSTPROCESS_CHOICES = ("model", "none")
MAX_LESION_MM3 = 1e7  # far above any brain (about 1.5e6 mm^3)


@dataclass(frozen=True)
class PostProcess:
    min_lesion_mm3: float = 0.0  # lesions of any region smaller than this are dropped
    largest: tuple[str, ...] = ()  # regions reduced to their largest lesion

    def __post_init__(self) -> None:
        if not 0 <= self.min_lesion_mm3 < MAX_LESION_MM3:
            raise EmimError(f"the minimum lesion size must be between 0 and {MAX_LESION_MM3:g} mm^3, got "
                            f"{self.min_lesion_mm3:g} (--min-lesion-mm3, or inference.postprocess in metadata.json).")

    def to_metadata(self) -> dict[str, Any]:
        return {"min_lesion_mm3": self.min_lesion_mm3, "largest": list(self.largest)}

    @classmethod
    def from_metadata(cls, data: dict[str, Any] | None) -> "PostProcess":
        """A model's recorded settings; models exported before they were recorded get `DEFAULT`."""
        if data is None:
            return DEFAULT
        largest = data.get("largest", []) if isinstance(data, dict) else None
        try:
            if not isinstance(largest, list) or not all(isinstance(name, str) for name in largest):
                raise TypeError("largest")
            return cls(float(data.get("min_lesion_mm3", 0.0)), tuple(largest))
        except (TypeError, ValueError, AttributeError):
            raise EmimError(f"the model's inference.postprocess {data!r} is not valid; it needs min_lesion_mm3 "
                            "(a number) and largest (a list of region names). Fix metadata.json.") from None

    def check_regions(self, regions: Sequence[dict[str, Any]]) -> None:
        """Refuse a `largest` region the model does not have (before any inference runs)."""
        names = [r["name"] for r in regions]
        unknown = sorted(set(self.largest) - set(names))
        if unknown:
            raise EmimError(f"post-processing keeps the largest lesion of {', '.join(unknown)}, which the model "
                            f"does not have; its regions are {', '.join(names)} (--keep-largest).")


NONE = PostProcess()
DEFAULT = PostProcess(min_lesion_mm3=500.0)  # docs/postprocessing.md: measured on the real mini cases


def _containing(regions: Sequence[dict[str, Any]]) -> list[list[int]]:
    sets = [frozenset(int(v) for v in r["labels"]) for r in regions]
    return [[j for j, other in enumerate(sets) if own < other] for own in sets]


def _keep(mask: np.ndarray, min_voxels: float, largest: bool) -> np.ndarray:
    from emim.metrics import lesions  # scipy: not at import, the CLI imports this module to build its options

    labelled, count = lesions(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labelled.ravel(), minlength=count + 1)
    sizes[0] = 0
    keep = sizes >= max(min_voxels, 1)
    if largest:
        keep &= np.arange(count + 1) == int(np.argmax(sizes))
    return keep[labelled]


def clean_regions(masks: np.ndarray, regions: Sequence[dict[str, Any]], spacing: Sequence[float],
                  settings: PostProcess) -> np.ndarray:
    """(C, X, Y, Z) bool region masks -> the cleaned masks (steps 2 and 3 of the module docstring)."""
    settings.check_regions(regions)
    names = [r["name"] for r in regions]
    containing = _containing(regions)
    min_voxels = settings.min_lesion_mm3 / float(np.prod(spacing))
    cleaned = np.array(masks, dtype=bool)
    for channel in sorted(range(len(regions)), key=lambda c: len(containing[c])):  # outer regions first
        for outer in containing[channel]:
            cleaned[channel] &= cleaned[outer]
        if min_voxels > 0 or names[channel] in settings.largest:
            cleaned[channel] = _keep(cleaned[channel], min_voxels, names[channel] in settings.largest)
    return cleaned


def label_map(probabilities: np.ndarray, brain: np.ndarray, spacing: Sequence[float],
              regions: Sequence[dict[str, Any]], settings: PostProcess, threshold: float = 0.5) -> np.ndarray:
    """(C, X, Y, Z) region probabilities -> the uint8 label map `emim segment` writes (module docstring)."""
    masks = (probabilities > threshold) & brain[None]
    return regions_to_labels(clean_regions(masks, regions, spacing, settings), list(regions))
