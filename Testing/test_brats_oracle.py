"""emim's lesion counts and global Dice against the official BraTS package on a real case with a noisy prediction.

The package (`brats-evaluation`) is AGPL, so emim never imports it: it runs in a Python of its own, named by
$EMIM_ORACLE_PYTHON (or this one, if it has the package). Skips when neither has it; the full comparison on real
and generated cases is bench/brats_oracle.py, whose result the README quotes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _oracle_python() -> str | None:
    if importlib.util.find_spec("brats_evaluation") is not None:
        return sys.executable
    return os.environ.get("EMIM_ORACLE_PYTHON") or None


@pytest.mark.skipif(_oracle_python() is None, reason="brats-evaluation is not installed (set EMIM_ORACLE_PYTHON)")
def test_lesion_counts_and_global_dice_agree_with_the_official_package(brats_mini, tmp_path):
    from bench.brats_oracle import compare, emim_scores, run_oracle

    gt_path = sorted(brats_mini.glob("*/*-seg.nii.gz"))[-1]
    truth = nib.load(str(gt_path))
    gt = np.asarray(truth.dataobj).astype(np.uint8)
    rng = np.random.default_rng(0)
    pred = ndimage.grey_erosion(gt, size=(2, 2, 2))  # shrunk lesions
    background = np.argwhere(gt == 0)
    for x, y, z in background[rng.choice(len(background), 40, replace=False)]:  # 40 specks of every label
        pred[x:x + 2, y:y + 2, z:z + 1] = rng.integers(1, 4)
    pred_path = tmp_path / "pred.nii.gz"
    nib.save(nib.Nifti1Image(pred, truth.affine, truth.header), str(pred_path))
    pairs = [{"case": "noisy", "pred": str(pred_path), "gt": str(gt_path)}]
    result = compare({"noisy": emim_scores(pred_path, gt_path)}, run_oracle(_oracle_python(), pairs, tmp_path))
    assert result["counts_equal"] == result["pairs_compared"] == 3, json.dumps(result["rows"], indent=1)
    assert result["max_global_dice_gap"] < 1e-4 and result["max_matched_dice_gap"] < 1e-4
    assert any(int(row["emim TP/FP/FN"].split("/")[1]) > 10 for row in result["rows"])  # the specks are counted
