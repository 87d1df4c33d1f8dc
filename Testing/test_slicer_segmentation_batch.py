"""The batch script run with plain Python on slicer-core: a real case, the sample case and a broken case."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import nibabel as nib
import numpy as np

from conftest import SMALLEST_CASE
from support.slicer_scene import MODULE_DIR, REPO, write_model_metadata

from EMIMCommonLib.sample_data import CASE_ID, sample_case_folder

SCRIPT = MODULE_DIR / "EMIMSegmentationBatch.py"


GOOD_CASES = (SMALLEST_CASE, CASE_ID)


@pytest.fixture
def batch_input(brats_mini, tmp_path) -> Path:
    """A real case and the shipped sample case (linked, not copied), and a case whose FLAIR is a truncated file."""
    root = tmp_path / "cases"
    for case, folder in zip(GOOD_CASES, (brats_mini / SMALLEST_CASE, sample_case_folder()), strict=True):
        (root / case).mkdir(parents=True)
        for source in folder.glob("*-t*.nii.gz"):
            (root / case / source.name).symlink_to(source)
    broken = root / "BraTS-broken-000"
    broken.mkdir()
    for source in (brats_mini / SMALLEST_CASE).glob("*-t*.nii.gz"):
        target = broken / source.name.replace(SMALLEST_CASE, broken.name)
        if "t2f" in source.name:
            target.write_bytes(source.read_bytes()[:2000])
        else:
            target.symlink_to(source)
    return root


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=REPO)


def test_batch_check_goes_past_a_broken_case(batch_input, tmp_path):
    model = write_model_metadata(tmp_path / "model")
    result = _run(["--input", str(batch_input), "--model", str(model), "--output", str(tmp_path / "out"), "--check"])
    assert result.returncode == 1, result.stderr
    assert "Summary: 2 of 3 cases succeeded, 1 failed." in result.stdout
    assert "FAILED BraTS-broken-000:" in result.stdout and "t2f.nii.gz' is damaged" in result.stdout
    assert result.stdout.count("inputs ok") == 2


def test_batch_refuses_a_folder_that_is_not_a_model(batch_input, tmp_path):
    result = _run(["--input", str(batch_input), "--model", str(tmp_path), "--output", str(tmp_path / "out")])
    assert result.returncode == 2 and "No metadata.json" in result.stderr


def test_batch_segments_cases_and_writes_seg_nrrd(batch_input, tiny_segmentation_model, tmp_path):
    out = tmp_path / "out"
    result = _run(["--input", str(batch_input), "--model", str(tiny_segmentation_model), "--output", str(out),
                   "--device", "cpu", "--overlap", "0", "--nifti"])
    assert result.returncode == 1, result.stderr
    assert "Summary: 2 of 3 cases succeeded, 1 failed." in result.stdout
    assert "FAILED BraTS-broken-000:" in result.stdout
    for case in GOOD_CASES:
        labels = nib.load(out / f"{case}.nii.gz")
        reference = nib.load(batch_input / case / f"{case}-t1n.nii.gz")
        assert labels.shape == reference.shape
        np.testing.assert_allclose(labels.affine, reference.affine, atol=1e-4)
        assert set(np.unique(np.asarray(labels.dataobj))) <= {0, 1, 2, 3}
        header = (out / f"{case}.seg.nrrd").read_bytes()[:4000].decode("latin-1")
        assert "Segment0_Name:=Necrotic tumor core" in header and "Segment2_Name:=Enhancing tumor" in header
    assert not (out / "BraTS-broken-000.seg.nrrd").exists()
