"""Lesion-wise metrics as the official BraTS package computes them: 26-connected lesions, one-to-one matching,
penalties, and `emim evaluate`'s lesion table and CSV columns, on hand-built masks whose answers are known."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from emim.lesions import LESION_HD95_PENALTY_MM, lesion_scores
from emim.metrics import dice, hd95, lesions

SPACING = (1.0, 1.0, 1.0)


def _box(shape, *slices) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[slices] = True
    return mask


def test_voxels_touching_at_a_corner_are_one_lesion():
    mask = np.zeros((5, 5, 5), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True
    mask[4, 4, 0] = True
    assert lesions(mask)[1] == 2


def test_a_found_lesion_a_speck_and_a_missed_lesion_score_as_brats_counts_them():
    shape = (40, 40, 40)
    gt_one, gt_two = _box(shape, slice(2, 12), slice(2, 12), slice(2, 12)), _box(shape, slice(25, 35),
                                                                                slice(25, 35), slice(25, 35))
    found = _box(shape, slice(3, 12), slice(2, 12), slice(2, 12))
    speck = _box(shape, slice(30, 32), slice(2, 4), slice(2, 4))
    scores = lesion_scores(found | speck, gt_one | gt_two, SPACING)
    assert (scores.tp, scores.fp, scores.fn) == (1, 1, 1)
    assert scores.dice == pytest.approx(dice(found, gt_one) / 3)
    assert scores.hd95 == pytest.approx((hd95(found, gt_one, SPACING) + 2 * LESION_HD95_PENALTY_MM) / 3)
    assert scores.matched_dice == pytest.approx((dice(found, gt_one),))


def test_one_prediction_over_two_lesions_matches_one_of_them():
    shape = (30, 30, 30)
    big, small = _box(shape, slice(2, 14), slice(2, 14), slice(2, 14)), _box(shape, slice(16, 20), slice(2, 6),
                                                                             slice(2, 6))
    covering = _box(shape, slice(2, 20), slice(2, 14), slice(2, 14))
    scores = lesion_scores(covering, big | small, SPACING)
    assert (scores.tp, scores.fp, scores.fn) == (1, 0, 1)
    assert scores.matched_dice == pytest.approx((dice(covering, big),))  # the pair with the larger Dice


def test_no_lesion_on_either_side_is_perfect_and_a_missed_case_is_all_penalty():
    empty = np.zeros((8, 8, 8), bool)
    none = lesion_scores(empty, empty, SPACING)
    assert (none.tp, none.fp, none.fn, none.dice, none.hd95) == (0, 0, 0, 1.0, 0.0)
    missed = lesion_scores(empty, _box((8, 8, 8), slice(1, 4), slice(1, 4), slice(1, 4)), SPACING)
    assert (missed.tp, missed.fn, missed.dice, missed.hd95) == (0, 1, 0.0, LESION_HD95_PENALTY_MM)


def test_evaluate_prints_the_lesion_table_and_writes_the_counts(tmp_path, emim):
    shape = (30, 30, 30)
    gt = np.zeros(shape, np.uint8)
    gt[5:15, 5:15, 5:15] = 2
    gt[8:12, 8:12, 8:12] = 3
    pred = gt.copy()
    pred[20:22, 20:22, 20:22] = 2  # a false-positive WT lesion
    pred[25, 25, 25] = 3  # a false-positive ET (and TC, WT) speck
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for name, label in (("case-seg.nii.gz", gt), ("pred.nii.gz", pred)):
        nib.save(nib.Nifti1Image(label, affine), str(tmp_path / name))
    done = emim("evaluate", str(tmp_path / "pred.nii.gz"), str(tmp_path / "case-seg.nii.gz"), "--csv",
                str(tmp_path / "out.csv"))
    assert done.returncode == 0, done.stderr
    assert "lesion-wise (as brats-evaluation" in done.stdout and "FP WT" in done.stdout
    row = next(csv.DictReader((tmp_path / "out.csv").open()))
    assert (int(row["tp_WT"]), int(row["fp_WT"]), int(row["fn_WT"])) == (1, 2, 0)
    assert (int(row["tp_ET"]), int(row["fp_ET"])) == (1, 1)
    assert float(row["lesion_dice_ET"]) == pytest.approx(1.0 / 2, abs=1e-9)  # the true ET is exact
