"""The BraTS label table as data, and the conversion between label maps and nested region channels.

Networks predict overlapping *regions* (sigmoid channels: TC, WT, ET for BraTS) because the tumour sub-structures
are nested; people and Slicer want one *label map* (0 background, 1 necrotic core, 2 edema, 3 enhancing tumour).
Both conversions read the region definitions (`[{"name": "TC", "labels": [1, 3]}, ...]`) so that a model whose
metadata declares another label set works the same way.

The terminology entries use the DICOM/SNOMED-CT codes of 3D Slicer's terminology lists (category
"Morphologically Altered Structure", types Necrosis, Edema and Neoplasm, anatomic region Brain) so that Slicer
shows the segments with standard names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emim.errors import EmimError

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_ALTERED_STRUCTURE = {"CodingSchemeDesignator": "SCT", "CodeValue": "49755003",
                      "CodeMeaning": "Morphologically Altered Structure"}
_BRAIN = {"CodingSchemeDesignator": "SCT", "CodeValue": "12738006", "CodeMeaning": "Brain"}


def _terminology(type_code: str, type_meaning: str) -> dict[str, Any]:
    return {
        "contextName": TERMINOLOGY_CONTEXT,
        "category": dict(_ALTERED_STRUCTURE),
        "type": {"CodingSchemeDesignator": "SCT", "CodeValue": type_code, "CodeMeaning": type_meaning},
        "anatomicContextName": ANATOMIC_CONTEXT,
        "anatomicRegion": dict(_BRAIN),
    }


BRATS_LABELS: list[dict[str, Any]] = [
    {"value": 1, "name": "Necrotic tumor core", "color": [220, 40, 40],
     "terminology": _terminology("6574001", "Necrosis")},
    {"value": 2, "name": "Peritumoral edema", "color": [60, 200, 80],
     "terminology": _terminology("79654002", "Edema")},
    {"value": 3, "name": "Enhancing tumor", "color": [250, 220, 30],
     "terminology": _terminology("108369006", "Neoplasm")},
]

BRATS_REGIONS: list[dict[str, Any]] = [
    {"name": "TC", "title": "Tumor core", "labels": [1, 3]},
    {"name": "WT", "title": "Whole tumor", "labels": [1, 2, 3]},
    {"name": "ET", "title": "Enhancing tumor", "labels": [3]},
]


def region_label_values(regions: list[dict[str, Any]]) -> set[int]:
    """Every label value some region covers: values outside it would be silently ignored, so callers check."""
    return {int(v) for region in regions for v in region["labels"]}


def labels_to_regions(label: np.ndarray, regions: list[dict[str, Any]] = BRATS_REGIONS) -> np.ndarray:
    """(X, Y, Z) label map -> (C, X, Y, Z) bool, one channel per region in the given order."""
    label = np.asarray(label)
    return np.stack([np.isin(label, [int(v) for v in region["labels"]]) for region in regions])


def _painting_order(regions: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(channel, label value) pairs, outer regions first, so nested regions paint over the ones containing them.

    A region paints the one label it has that no region nested inside it has (WT -> 2, TC -> 1, ET -> 3 for
    BraTS). Regions that neither nest nor are disjoint have no such reading, so they are refused.
    """
    sets = [frozenset(int(v) for v in region["labels"]) for region in regions]
    order = []
    for channel, own in enumerate(sets):
        for other in sets:
            if own & other and not (own <= other or other <= own):
                raise EmimError(f"regions {regions[channel]['name']!r} {sorted(own)} and {sorted(other)} overlap "
                                "without nesting; a label map cannot be rebuilt from them. Fix 'regions' in the "
                                "model metadata so that any two regions are nested or disjoint.")
        inner = set().union(*(other for other in sets if other < own))
        values = own - inner
        if len(values) != 1:
            raise EmimError(f"region {regions[channel]['name']!r} {sorted(own)} leaves {sorted(values) or 'no'} "
                            "label(s) of its own after removing the regions nested in it; each region must add "
                            "exactly one label. Fix 'regions' in the model metadata.")
        order.append((len(own), channel, next(iter(values))))
    order.sort(key=lambda item: (-item[0], item[1]))
    return [(channel, value) for _, channel, value in order]


def regions_to_labels(regions_prob_or_bool: np.ndarray, regions: list[dict[str, Any]] = BRATS_REGIONS,
                      threshold: float = 0.5) -> np.ndarray:
    """(C, X, Y, Z) region probabilities or masks -> (X, Y, Z) uint8 label map (BraTS: 2 where WT, 1 where TC,
    3 where ET, in that order, so each voxel gets the label of the innermost region it belongs to)."""
    channels = np.asarray(regions_prob_or_bool)
    if channels.shape[0] != len(regions):
        raise EmimError(f"got {channels.shape[0]} region channels but the model metadata names {len(regions)} "
                        f"regions ({', '.join(r['name'] for r in regions)}); the model and its metadata disagree.")
    masks = channels if channels.dtype == bool else channels > threshold
    label = np.zeros(channels.shape[1:], dtype=np.uint8)
    for channel, value in _painting_order(regions):
        label[masks[channel]] = value
    return label
