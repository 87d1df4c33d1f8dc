"""Lesion-wise scores as the official `brats-evaluation` package computes them, for `emim evaluate`.

Global Dice says nothing about the 200 specks a model may paint along the cortex beside one well-found tumour;
lesion-wise scores do. Per region:

1. Lesions are the 26-connected components of the prediction and of the reference (`emim.metrics.lesions`).
2. Predicted and reference lesions are matched one to one, maximising the summed Dice of the pairs (Hungarian
   assignment); any overlap qualifies. Matched pairs are true positives (TP), unmatched predicted lesions false
   positives (FP), unmatched reference lesions false negatives (FN). This is the matching of the official
   `brats-evaluation` package (panoptica's maximum bipartite matching on Dice with a 1e-6 threshold), so the counts
   are the same.
3. Lesion-wise Dice = (sum of the matched pairs' Dice) / (TP + FP + FN): every missed or invented lesion counts as
   a zero. Lesion-wise HD95 = (sum of the matched pairs' HD95 + 374 mm per FP and FN) / (TP + FP + FN). With no
   lesion on either side: Dice 1 and HD95 0.

The BraTS 2023 challenge's own scripts differed in three ways, so their counts are not comparable for fragmented
predictions: they dilated reference lesions by 3 voxels to merge close ones, let several predicted lesions match
one reference lesion, and ignored lesions under 50 voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from emim.metrics import bounding_box, hd95, lesions

LESION_HD95_PENALTY_MM = 374.0  # BraTS 2023 lesion-wise penalty for a false-positive or false-negative lesion
MATCH_THRESHOLD = 1e-6  # pairs with a Dice above this may match: any overlap


@dataclass(frozen=True)
class LesionScores:
    tp: int
    fp: int
    fn: int
    dice: float  # lesion-wise Dice
    hd95: float  # lesion-wise HD95, mm
    matched_dice: tuple[float, ...]  # Dice of each matched pair (official package: their mean, "sq_dsc")


def match_lesions(pred: np.ndarray, n_pred: int, gt: np.ndarray, n_gt: int) -> list[tuple[int, int, float]]:
    """(predicted lesion, reference lesion, Dice) of the one-to-one matching with the largest summed Dice."""
    both = (pred > 0) & (gt > 0)
    if not both.any():
        return []
    pairs, overlap = np.unique(pred[both].astype(np.int64) * (n_gt + 1) + gt[both], return_counts=True)
    p, g = pairs // (n_gt + 1), pairs % (n_gt + 1)
    size_pred = np.bincount(pred.ravel(), minlength=n_pred + 1)
    size_gt = np.bincount(gt.ravel(), minlength=n_gt + 1)
    scores = 2.0 * overlap / (size_pred[p] + size_gt[g])
    rows, cols = np.unique(p), np.unique(g)  # only lesions that overlap something can match
    matrix = np.zeros((rows.size, cols.size))
    matrix[np.searchsorted(rows, p), np.searchsorted(cols, g)] = scores
    chosen_rows, chosen_cols = linear_sum_assignment(matrix, maximize=True)
    return [(int(rows[r]), int(cols[c]), float(matrix[r, c])) for r, c in zip(chosen_rows, chosen_cols)
            if matrix[r, c] > MATCH_THRESHOLD]


def lesion_scores(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float, float]) -> LesionScores:
    """Lesion-wise Dice, HD95 and TP/FP/FN lesion counts of two boolean masks (module docstring)."""
    pred_lesions, n_pred = lesions(pred)
    gt_lesions, n_gt = lesions(gt)
    matches = match_lesions(pred_lesions, n_pred, gt_lesions, n_gt)
    tp = len(matches)
    fp, fn = n_pred - tp, n_gt - tp
    if tp + fp + fn == 0:
        return LesionScores(0, 0, 0, 1.0, 0.0, ())
    distances = []
    for p, g, _ in matches:
        box = bounding_box((pred_lesions == p) | (gt_lesions == g))
        distances.append(hd95(pred_lesions[box] == p, gt_lesions[box] == g, spacing))
    matched = tuple(score for _, _, score in matches)
    count = tp + fp + fn
    return LesionScores(tp, fp, fn, sum(matched) / count,
                        (sum(distances) + LESION_HD95_PENALTY_MM * (fp + fn)) / count, matched)
