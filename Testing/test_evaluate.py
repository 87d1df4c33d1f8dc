"""Evaluation (Dice, HD95, BraTS empty-mask conventions, pairing, grid refusal) and the label/region conversions."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from emim.errors import EmimError
from emim.evaluate import case_id, evaluate_case, label_files, pair_cases
from emim.metrics import HD95_PENALTY_MM, hd95
from emim.labels import BRATS_LABELS, BRATS_REGIONS, labels_to_regions, regions_to_labels


def _real_label(brats_mini: Path) -> tuple[np.ndarray, np.ndarray]:
    """The label map and affine of the smallest real case (fewest voxels keeps the test fast)."""
    files = sorted(brats_mini.glob("*/*-seg.nii.gz"), key=lambda p: np.prod(nib.load(str(p)).shape))
    image = nib.load(str(files[0]))
    return np.asarray(image.dataobj).astype(np.uint8), image.affine


def _write(path: Path, label: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), str(path))
    return path


def _independent_dice(pred: np.ndarray, gt: np.ndarray, labels: list[int]) -> float:
    a, b = np.isin(pred, labels), np.isin(gt, labels)
    denominator = a.sum() + b.sum()
    return 1.0 if denominator == 0 else 2.0 * float((a & b).sum()) / float(denominator)


# ---------------------------------------------------------------- labels <-> regions


def test_regions_and_labels_round_trip_on_a_real_case(brats_mini: Path) -> None:
    label, _ = _real_label(brats_mini)
    assert set(np.unique(label)) == {0, 1, 2, 3}
    regions = labels_to_regions(label)
    assert regions.shape == (3, *label.shape) and regions.dtype == bool
    assert np.array_equal(regions[1], label > 0)  # WT is every tumour voxel
    assert np.array_equal(regions_to_labels(regions), label)
    probabilities = np.where(regions, 0.7, 0.2).astype(np.float32)
    assert np.array_equal(regions_to_labels(probabilities, threshold=0.5), label)
    assert not regions_to_labels(probabilities, threshold=0.8).any()


def test_other_label_sets_follow_the_metadata() -> None:
    disjoint = [{"name": "PZ", "labels": [1]}, {"name": "TZ", "labels": [2]}]
    label = np.random.default_rng(0).integers(0, 3, size=(6, 5, 4))
    assert np.array_equal(regions_to_labels(labels_to_regions(label, disjoint), disjoint), label)
    crossing = [{"name": "A", "labels": [1, 2]}, {"name": "B", "labels": [2, 3]}]
    with pytest.raises(EmimError, match="overlap without nesting"):
        regions_to_labels(np.zeros((2, 2, 2, 2), bool), crossing)
    with pytest.raises(EmimError, match="3 regions"):
        regions_to_labels(np.zeros((2, 2, 2, 2), bool))


def test_label_table_is_complete_with_standard_codes() -> None:
    assert [label["value"] for label in BRATS_LABELS] == [1, 2, 3]
    colors = [tuple(label["color"]) for label in BRATS_LABELS]
    assert len(set(colors)) == 3 and all(0 <= c <= 255 for color in colors for c in color)
    terms = [label["terminology"] for label in BRATS_LABELS]
    assert all(t["category"]["CodeValue"] == "49755003" for t in terms)
    assert [t["type"]["CodeValue"] for t in terms] == ["6574001", "79654002", "108369006"]


# ---------------------------------------------------------------- pairing


def test_case_ids_and_label_files_follow_the_documented_rule(brats_mini: Path, tmp_path: Path) -> None:
    assert case_id(Path("BraTS-GLI-00360-000-seg.nii.gz")) == "BraTS-GLI-00360-000"
    assert case_id(Path("BraTS-GLI-00360-000.nii.gz")) == "BraTS-GLI-00360-000"
    assert case_id(Path("p001_seg.nii")) == "p001"
    assert case_id(Path("data/p002/seg.nii.gz")) == "p002"
    assert case_id(Path("BraTS-GLI-00360-000-t1n.nii.gz")) == "BraTS-GLI-00360-000-t1n"
    found = label_files(brats_mini)  # a BraTS data folder: only the -seg files, not the modalities
    assert len(found) == 3 and all(path.name.endswith("-seg.nii.gz") for path in found.values())
    assert set(found) == {d.name for d in brats_mini.iterdir() if d.is_dir()}
    # a flat prediction folder without suffixes: every NIfTI file directly in it
    for name in ("BraTS-GLI-00360-000.nii.gz", "other.nii"):
        _write(tmp_path / "pred" / name, np.zeros((3, 3, 3)), np.eye(4))
    pairing = pair_cases(tmp_path / "pred", brats_mini)
    assert [case for case, _, _ in pairing.pairs] == ["BraTS-GLI-00360-000"]
    assert pairing.only_pred == ["other"] and len(pairing.only_gt) == 2


# ---------------------------------------------------------------- metrics


def test_evaluate_agrees_with_an_independent_dice_including_empty_masks(brats_mini: Path, tmp_path: Path, emim) -> None:
    label, affine = _real_label(brats_mini)
    tumour = label > 0
    without_et = np.where(label == 3, 1, label)
    # (ground truth, prediction) per case: real label perturbed, plus the empty-mask conventions
    cases = {
        "eroded": (label, label * ndimage.binary_erosion(tumour, iterations=2)),
        "dilated": (label, ndimage.grey_dilation(label, size=(3, 3, 3))),
        "shifted": (label, np.roll(label, (3, -2, 1), axis=(0, 1, 2))),
        "pred-without-et": (label, without_et),  # ET: prediction empty, ground truth not
        "gt-without-et": (without_et, np.roll(label, 2, axis=0)),  # ET: ground truth empty, prediction not
        "both-without-et": (without_et, np.roll(without_et, 2, axis=1)),  # ET: both empty
        "pred-empty": (label, np.zeros_like(label)),
    }
    for name, (gt, pred) in cases.items():
        _write(tmp_path / "gt" / name / f"{name}-seg.nii.gz", gt, affine)
        _write(tmp_path / "pred" / f"{name}.nii", pred, affine)
    _write(tmp_path / "gt" / "unpredicted" / "unpredicted-seg.nii.gz", label, affine)

    result = emim("evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--csv", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    assert "unpredicted" in result.stderr and "mean" in result.stdout
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(cases) | {"mean"}

    for name, (gt, pred) in cases.items():
        for region in BRATS_REGIONS:
            expected = _independent_dice(pred, gt, region["labels"])
            assert abs(float(rows[name][f"dice_{region['name']}"]) - expected) < 1e-6, (name, region["name"])
    assert 0.3 < float(rows["shifted"]["dice_WT"]) < 0.99  # a real, partial overlap, not a degenerate case
    assert float(rows["pred-without-et"]["dice_ET"]) == 0.0
    assert float(rows["pred-without-et"]["hd95_ET"]) == pytest.approx(373.13, abs=0.005)
    assert float(rows["gt-without-et"]["hd95_ET"]) == pytest.approx(HD95_PENALTY_MM)
    assert float(rows["both-without-et"]["dice_ET"]) == 1.0 and float(rows["both-without-et"]["hd95_ET"]) == 0.0
    assert all(float(rows["pred-empty"][f"hd95_{r['name']}"]) == pytest.approx(HD95_PENALTY_MM)
               for r in BRATS_REGIONS)
    for column in ("dice_TC", "hd95_WT"):
        assert float(rows["mean"][column]) == pytest.approx(np.mean([float(rows[c][column]) for c in cases]))


def test_hd95_of_parallel_plates_is_their_offset_in_mm(tmp_path: Path) -> None:
    """Every surface voxel of a one-voxel-thick plate is k voxels from the other plate: HD95 = k * spacing."""
    spacing = (0.8, 1.2, 2.5)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 3.0)
    for axis, k in ((2, 3), (0, 4)):
        gt, pred = np.zeros((30, 32, 20), np.uint8), np.zeros((30, 32, 20), np.uint8)
        plate = [slice(5, 25), slice(6, 28), slice(4, 16)]
        plate[axis] = slice(8, 9)
        gt[tuple(plate)] = 1
        plate[axis] = slice(8 + k, 9 + k)
        pred[tuple(plate)] = 1
        row = evaluate_case("plates", _write(tmp_path / f"p{axis}.nii.gz", pred, affine),
                            _write(tmp_path / f"g{axis}.nii.gz", gt, affine))
        assert row["hd95_WT"] == pytest.approx(k * spacing[axis]) and row["hd95_TC"] == row["hd95_WT"]
        assert row["dice_WT"] == 0.0 and row["dice_ET"] == 1.0 and row["hd95_ET"] == 0.0


def _brute_force_hd95(a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Surface = voxels with a face neighbour outside (checked by shifting); distances by exhaustive nearest search."""

    def surface_points(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(3):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis=axis)[1:-1, 1:-1, 1:-1]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    pa, pb = surface_points(a), surface_points(b)
    distances = np.concatenate([cKDTree(pb).query(pa)[0], cKDTree(pa).query(pb)[0]])
    return float(np.percentile(distances, 95))


def test_hd95_matches_a_brute_force_computation_on_irregular_shapes() -> None:
    rng = np.random.default_rng(1)
    spacing = (0.9, 1.1, 3.0)
    for _ in range(3):
        a = ndimage.binary_opening(rng.random((40, 36, 24)) > 0.55, iterations=1)
        b = ndimage.binary_dilation(np.roll(a, 2, axis=0), iterations=1) & (rng.random(a.shape) > 0.1)
        a[0, :, :] = True  # touching the array border counts as surface
        assert hd95(a, b, spacing) == pytest.approx(_brute_force_hd95(a, b, spacing), abs=1e-9)
    assert math.isclose(HD95_PENALTY_MM, 373.13, abs_tol=0.005)


# ---------------------------------------------------------------- refusals


def test_prediction_on_another_grid_is_refused_naming_both_files(brats_mini: Path, tmp_path: Path, emim) -> None:
    label, affine = _real_label(brats_mini)
    gt = _write(tmp_path / "case-seg.nii.gz", label, affine)
    moved = affine.copy()
    moved[:3, 3] += 1.0
    pred = _write(tmp_path / "moved.nii.gz", label, moved)
    result = emim("evaluate", str(pred), str(gt))
    assert result.returncode == 2
    assert str(pred) in result.stderr and str(gt) in result.stderr and "origin" in result.stderr
    cropped = _write(tmp_path / "cropped.nii.gz", label[:-1], affine)
    with pytest.raises(EmimError, match="size") as refused:
        evaluate_case("case", cropped, gt)
    assert str(cropped) in str(refused.value) and str(gt) in str(refused.value)


def test_label_values_outside_the_regions_are_refused(tmp_path: Path) -> None:
    old_brats = np.zeros((8, 8, 8), np.uint8)
    old_brats[2:4, 2:4, 2:4] = 4  # BraTS <= 2021 enhancing tumour: would silently score as background
    gt = _write(tmp_path / "gt.nii.gz", old_brats, np.eye(4))
    with pytest.raises(EmimError, match=r"label values \[4\]"):
        evaluate_case("old", gt, gt)
