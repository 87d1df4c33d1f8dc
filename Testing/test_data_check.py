"""`emim check-data`: the real cases pass; broken copies name the case, the file, the fix, and exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from emim.data.check import check_dataset
from emim.data.modalities import BRATS
from test_data_cases import LPS_AFFINE, brain, write_case, write_nifti


def shifted(affine: np.ndarray, voxels) -> np.ndarray:
    """The affine with its origin moved by whole voxels along the voxel axes."""
    moved = affine.copy()
    moved[:3, 3] += affine[:3, :3] @ np.asarray(voxels, float)
    return moved


def break_cases(root: Path) -> dict[str, tuple[str, str, str]]:
    """One good case and one case per problem; returns case -> (problem kind, severity, file name)."""
    image, label = brain()
    for case_id in ("good", "missing", "corrupt", "fourd", "twod", "nan", "empty", "grid", "labelgrid", "labelvalues"):
        write_case(root, case_id)
    (root / "missing" / "missing-t2f.nii.gz").unlink()
    (root / "corrupt" / "corrupt-t1c.nii.gz").write_bytes(b"this is not a NIfTI file")
    write_nifti(root / "fourd" / "fourd-t2w.nii.gz", np.stack([image, image], -1))
    write_nifti(root / "twod" / "twod-t1c.nii.gz", image[:, :, 5:6])
    with_nan = image.astype(np.float32)
    with_nan[10, 10, 8] = np.nan
    write_nifti(root / "nan" / "nan-t2f.nii.gz", with_nan)
    write_nifti(root / "empty" / "empty-t1c.nii.gz", np.zeros_like(image))
    write_nifti(root / "grid" / "grid-t2w.nii.gz", image * 3, shifted(LPS_AFFINE, (3, 0, 0)))
    write_nifti(root / "labelgrid" / "labelgrid-seg.nii.gz", label, LPS_AFFINE @ np.diag([1, 1, 1.5, 1]))
    write_nifti(root / "labelvalues" / "labelvalues-seg.nii.gz", np.where(label == 3, 4, label).astype(np.uint8))
    return {"missing": ("missing", "error", "missing-t2f.nii.gz"),
            "corrupt": ("unreadable", "error", "corrupt-t1c.nii.gz"),
            "fourd": ("4D", "error", "fourd-t2w.nii.gz"),
            "twod": ("2D", "error", "twod-t1c.nii.gz"),
            "nan": ("non-finite", "error", "nan-t2f.nii.gz"),
            "empty": ("empty", "error", "empty-t1c.nii.gz"),
            "grid": ("grid", "error", "grid-t2w.nii.gz"),
            "labelgrid": ("label-grid", "error", "labelgrid-seg.nii.gz"),
            "labelvalues": ("label-values", "warning", "labelvalues-seg.nii.gz")}


def test_real_cases_are_all_usable(brats_mini: Path, emim):
    result = emim("check-data", str(brats_mini))
    assert result.returncode == 0, result.stderr
    assert "3 case(s): 3 usable, 0 with errors, 0 with warnings" in result.stdout
    for case in brats_mini.iterdir():
        assert case.name in result.stdout


def test_real_cases_json(brats_mini: Path, emim):
    result = emim("check-data", str(brats_mini), "--json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == ["start", "progress", "progress", "progress", "done"]
    report = events[-1]
    assert report["ok"] and report["summary"]["usable"] == 3 and report["modalities"] == list(BRATS.names)
    for case in report["cases"]:
        assert case["usable"] and case["has_label"] and not case["problems"]
        assert case["shape"][:2] == [240, 240] and case["spacing"] == [1.0, 1.0, 1.0]


def test_each_problem_names_case_file_and_fix(tmp_path: Path):
    expected = break_cases(tmp_path)
    report = check_dataset(tmp_path)
    by_case = {c.case_id: c for c in report.cases}
    assert not by_case["good"].problems and by_case["good"].shape == (20, 24, 16)
    assert by_case["good"].spacing == pytest.approx((1.0, 1.2, 2.0))
    for case_id, (kind, severity, file_name) in expected.items():
        problems = by_case[case_id].problems
        assert [(p.kind, p.severity) for p in problems] == [(kind, severity)], (case_id, problems)
        problem = problems[0]
        assert problem.case_id == case_id and problem.file.name == file_name
        assert file_name in problem.message and problem.fix
    assert by_case["labelvalues"].usable and "relabel 4 -> 3" in by_case["labelvalues"].problems[0].fix
    assert not report.ok()


def test_cli_exit_status_and_messages_on_broken_copies(tmp_path: Path, emim):
    expected = break_cases(tmp_path)
    result = emim("check-data", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert "10 case(s): 2 usable, 8 with errors, 1 with warnings" in result.stdout
    for case_id, (_, severity, file_name) in expected.items():
        line = next(line for line in result.stdout.splitlines() if line.startswith(f"{severity.upper()} {case_id}:"))
        assert file_name in line
    assert "pass --resample" in result.stdout


def test_resample_turns_grid_errors_into_warnings(tmp_path: Path, emim):
    for case_id in ("good", "grid", "labelgrid"):
        write_case(tmp_path, case_id)
    image, label = brain()
    write_nifti(tmp_path / "grid" / "grid-t2w.nii.gz", image * 3, shifted(LPS_AFFINE, (3, 0, 0)))
    write_nifti(tmp_path / "labelgrid" / "labelgrid-seg.nii.gz", label, LPS_AFFINE @ np.diag([1, 1, 1.5, 1]))
    assert emim("check-data", str(tmp_path)).returncode == 1
    result = emim("check-data", str(tmp_path), "--resample", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    problems = {c["case_id"]: c["problems"] for c in report["cases"]}
    assert [(p["kind"], p["severity"]) for p in problems["grid"]] == [("grid", "warning")]
    assert [(p["kind"], p["severity"]) for p in problems["labelgrid"]] == [("label-grid", "warning")]
    assert "will be resampled" in problems["grid"][0]["message"] and not problems["good"]


def test_tolerance_accepts_header_rounding(tmp_path: Path):
    write_case(tmp_path, "c")
    write_nifti(tmp_path / "c" / "c-t2w.nii.gz", brain()[0] * 3, shifted(LPS_AFFINE, (1e-5, 0, 0)))
    assert check_dataset(tmp_path).ok()
    assert not check_dataset(tmp_path, tolerance=1e-6).ok()


def test_modalities_option_limits_the_check(tmp_path: Path, emim):
    write_case(tmp_path, "c")
    (tmp_path / "c" / "c-t2f.nii.gz").unlink()
    write_nifti(tmp_path / "c" / "c-t1.nii.gz", brain()[0])  # a second t1n: ambiguous
    assert not check_dataset(tmp_path).ok()
    assert check_dataset(tmp_path, BRATS.select(["t1c", "t2w"])).ok()
    (tmp_path / "c" / "c-t1.nii.gz").unlink()
    result = emim("check-data", str(tmp_path), "--modalities", "t1n,t1c,t2w")
    assert result.returncode == 0 and "3/3" in result.stdout


def test_truncated_real_file_is_unreadable(tmp_path: Path, brats_mini: Path, emim):
    source = sorted(d for d in brats_mini.iterdir() if d.is_dir())[-1]
    case = shutil.copytree(source, tmp_path / source.name)
    target = case / f"{source.name}-t2f.nii.gz"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    result = emim("check-data", str(case))
    assert result.returncode == 1
    assert f"ERROR {source.name}: t2f file {target} is truncated or corrupt" in result.stdout


def test_missing_path_is_a_clean_error(tmp_path: Path, emim):
    result = emim("check-data", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_datalist_with_its_own_modalities_and_a_wrong_path(tmp_path: Path, emim):
    prostate = ("t2w", "adc", "hbv")
    write_case(tmp_path, "p1", suffixes=prostate, sep="_")
    write_case(tmp_path, "p2", suffixes=prostate, sep="_")
    entries = [{"case_id": c, "image": [f"{c}/{c}_{m}.nii.gz" for m in prostate], "label": f"{c}/{c}_seg.nii.gz"}
               for c in ("p1", "p2")]
    entries[1]["image"][1] = "p2/p2_ADC.nii.gz"  # a typo in the datalist
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"modalities": list(prostate), "labels": {"0": "bg", "1": "a", "2": "b", "3": "c"},
                                "training": entries}))
    result = emim("check-data", str(path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["modalities"] == list(prostate) and report["summary"]["usable"] == 1
    (problem,) = report["cases"][1]["problems"]
    assert problem["kind"] == "missing" and problem["file"] == str(tmp_path / "p2" / "p2_ADC.nii.gz")
    assert "does not exist" in problem["message"] and "datalist" in problem["fix"]
