"""Overlap and distance between two masks, and connected lesions, with the BraTS conventions.

- Dice = 2|P & G| / (|P| + |G|); both empty -> 1.
- HD95 (mm) = the 95th percentile of the symmetric surface distances: the distances from every surface voxel of
  one mask to the nearest surface voxel of the other, pooled over both directions (surface voxel: in the mask with
  a 6-connected neighbour outside it; distances use the voxel spacing). This is how the official BraTS package
  (panoptica) computes it; MONAI instead takes the larger of the two directed percentiles, so compare HD95 only
  between runs of the same definition. Both empty -> 0; exactly one empty -> `HD95_PENALTY_MM`.
- Lesions are 26-connected components, as in the BraTS lesion-wise evaluations (cc3d's default).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

HD95_PENALTY_MM = math.sqrt(240**2 + 240**2 + 155**2)  # 373.13 mm: the diagonal of the 240x240x155 mm SRI24 box
LESION_CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-connected


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty (BraTS convention)."""
    total = np.count_nonzero(pred) + np.count_nonzero(gt)
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(pred & gt)) / int(total)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))


def bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box holding every True voxel of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """95th percentile of the pooled symmetric surface distances in mm (0 / 373.13 for empty masks)."""
    has_pred, has_gt = bool(pred.any()), bool(gt.any())
    if not has_pred and not has_gt:
        return 0.0
    if not has_pred or not has_gt:
        return HD95_PENALTY_MM
    # nearest surface voxels lie inside the union's bounding box; a zero margin keeps border voxels on the surface
    box = bounding_box(pred | gt)
    surface_pred = _surface(np.pad(pred[box], 1))
    surface_gt = _surface(np.pad(gt[box], 1))
    to_gt = ndimage.distance_transform_edt(~surface_gt, sampling=spacing)[surface_pred]
    to_pred = ndimage.distance_transform_edt(~surface_pred, sampling=spacing)[surface_gt]
    return float(np.percentile(np.concatenate([to_gt, to_pred]), 95))


def lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(component index per voxel, 0 outside; number of components) of a boolean mask, 26-connected."""
    labelled, count = ndimage.label(mask, structure=LESION_CONNECTIVITY)
    return labelled, int(count)
