"""The DICOM items of the red team of issue #26 ("DICOM trusted too much"), each kept as a regression test on small
synthetic volumes written as real DICOM MR series (`support/dicom_series.write_series`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emim.data import dicom
from emim.data.cache import CacheSettings, entry_name
from emim.data.cases import find_cases
from emim.data.check import check_dataset
from emim.data.loading import load_case
from emim.data.modalities import BRATS, ModalitySpec, match_modalities
from emim.errors import EmimError
from emim.modelfile import load_metadata

from support.dicom_series import write_series

REPO = Path(__file__).resolve().parents[1]
ROOT = "1.2.826.0.1.3680043.10.4321"  # UIDs of the series written here
T1 = ["t1n"]


def volume(path: Path, seed: int = 0) -> Path:
    """A 16 x 16 x 6 int16 volume of varied intensities, 1 x 1 x 2 mm."""
    data = np.random.default_rng(seed).integers(100, 1000, (16, 16, 6)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), path)
    return path


def series(folder: Path, number: int = 1, study: int = 1, patient: str = "EMIM-TEST", description: str = "AX T1",
           shift_slice: int | None = None) -> list[Path]:
    """One synthetic MR series in `folder` (its volume two levels up, out of the case); its slice files in order."""
    folder.mkdir(parents=True)
    return write_series(volume(folder.parents[1] / f"volume-{number}.nii.gz", number), folder, description,
                        f"{ROOT}.1.{study}", f"{ROOT}.2.{number}", f"{ROOT}.3", number, shift_slice, patient)


def load(folder: Path) -> None:
    (case,) = find_cases(folder, BRATS)
    load_case(case, T1, with_label=False)


def edit(path: Path, **values) -> None:
    import pydicom

    dataset = pydicom.dcmread(path)
    for key, value in values.items():
        setattr(dataset, key, value)
    dataset.save_as(path)


@pytest.mark.parametrize("rows, message", [(32, r"slice-000\.dcm declares 32 x 32 pixels .* holds \d+ bytes"),
                                           (5000, r"slice-000\.dcm declares 5000 x 5000 pixels, more than")])
def test_declared_slice_sizes_are_checked_against_the_files_before_any_pixel_is_read(tmp_path, rows, message):
    pytest.importorskip("pydicom")
    files = series(tmp_path / "case" / "t1")
    for path in files:
        edit(path, Rows=rows, Columns=rows)
    with pytest.raises(EmimError, match=message + ".*re-export the series"):
        load(tmp_path / "case")


def test_a_series_larger_than_the_voxel_bound_is_refused_unread(tmp_path, monkeypatch):
    series(tmp_path / "case" / "t1")
    monkeypatch.setattr(dicom, "MAX_SERIES_VOXELS", 16 * 16 * 5)
    with pytest.raises(EmimError, match="declares 1536 voxels, more than the 1280 accepted"):
        load(tmp_path / "case")


def test_a_damaged_slice_is_named_not_dropped(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    files = series(tmp_path / "case" / "t1")
    meta = pydicom.dataset.FileMetaDataset()  # a DICOMDIR beside the slices is no damaged slice
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.1.3.10", f"{ROOT}.9"
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    directory = pydicom.dataset.Dataset()
    directory.file_meta = meta
    directory.save_as(files[0].parent / "DICOMDIR", enforce_file_format=True)
    load(tmp_path / "case")
    files[0].write_bytes(files[0].read_bytes()[:-100])  # cut short: GDCM leaves it out of the series
    with pytest.raises(EmimError, match=r"slice-000\.dcm beside its slices is in no readable series"):
        load(tmp_path / "case")


@pytest.mark.parametrize("spec", ["BRATS", *sorted(p.name for p in (REPO / "Resources" / "Models").iterdir())])
def test_contrast_keywords_after_a_t1_make_it_t1c_and_a_t1_flair_is_t1n(spec):
    spec = BRATS if spec == "BRATS" else ModalitySpec.from_metadata(
        load_metadata(REPO / "Resources" / "Models" / spec)["modalities"])
    expected = {"T1 3D GD": "t1c", "T1W_SE_GD": "t1c", "T1_MPRAGE_GADO": "t1c", "t1_mprage_sag_post": "t1c",
                "AX T1 +C": "t1c", "AX T1 FLAIR": "t1n", "T1W FLAIR": "t1n", "T1 pre contrast": "t1n",
                "T1 w/o gd": "t1n", "AX T1 SE": "t1n", "T2 FLAIR AX": "t2f"}
    for name, modality in expected.items():
        assert match_modalities([name], spec)[modality] == [name], name


def test_two_patients_under_one_study_are_two_cases(tmp_path):
    series(tmp_path / "study" / "a", number=1, patient="PATIENT-A")
    series(tmp_path / "study" / "b", number=2, patient="PATIENT-B")
    cases = find_cases(tmp_path / "study", BRATS)
    assert sorted(c.dicom["t1n"].patient for c in cases) == ["PATIENT-A", "PATIENT-B"]
    assert len({c.case_id for c in cases}) == 2


def test_a_study_that_cannot_be_converted_is_that_cases_error_and_the_others_go_on(tmp_path):
    series(tmp_path / "studies" / "good", number=1, study=1, patient="GOOD")
    series(tmp_path / "studies" / "bad", number=2, study=2, patient="BAD", shift_slice=2)
    cases = {case.dicom["t1n"].patient: case for case in find_cases(tmp_path / "studies", BRATS)}
    good, bad = cases["GOOD"], cases["BAD"]
    assert load_case(good, T1, with_label=False).image.shape == (1, 16, 16, 6)
    with pytest.raises(EmimError, match=f"case {bad.case_id}: DICOM series 'AX T1'.*uneven slice spacing"):
        load_case(bad, T1, with_label=False)
    reports = {r.case_id: r for r in check_dataset(tmp_path / "studies", BRATS.select(T1)).cases}
    assert reports[good.case_id].usable
    assert [p.kind for p in reports[bad.case_id].problems] == ["dicom"]


def test_a_study_whose_series_cannot_be_matched_is_that_cases_error_and_the_others_go_on(tmp_path):
    """Two series for one sequence used to stop the whole folder while it was searched."""
    series(tmp_path / "studies" / "good", number=1, study=1, patient="GOOD")
    series(tmp_path / "studies" / "twice-1", number=2, study=2, patient="TWICE")
    series(tmp_path / "studies" / "twice-2", number=3, study=2, patient="TWICE", description="SAG T1")
    good, twice = sorted(find_cases(tmp_path / "studies", BRATS), key=lambda case: bool(case.problem))
    assert load_case(good, T1, with_label=False).image.shape == (1, 16, 16, 6)
    with pytest.raises(EmimError, match=f"case {twice.case_id}: several DICOM series match t1n.*Fix: keep one"):
        load_case(twice, T1, with_label=False)
    reports = {r.case_id: r for r in check_dataset(tmp_path / "studies", BRATS.select(T1)).cases}
    assert reports[good.case_id].usable and not reports[twice.case_id].usable


def test_conversions_of_a_killed_process_are_removed_by_the_next_one_and_nothing_else(tmp_path):
    series(tmp_path / "case" / "t1")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    convert = ("import os, sys; from emim.data.cases import find_cases; from emim.data.loading import load_case; "
               "(case,) = find_cases(sys.argv[1]); load_case(case, ['t1n'], with_label=False); "
               "os.kill(os.getpid(), int(sys.argv[2]))")
    run = [sys.executable, "-c", convert, str(tmp_path / "case")]
    environment = {**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": str(REPO)}
    killed = subprocess.Popen(run + ["9"], cwd=REPO, env=environment)
    assert killed.wait(timeout=120) == -9
    (left,) = temporary.glob(f"emim-dicom-{killed.pid}-*")
    assert (left / ".emim-dicom").is_file() and list(left.rglob("*-t1n.nii.gz"))
    unmarked = temporary / f"emim-dicom-{killed.pid}-users"  # named alike, but not made by emim
    (unmarked / "keep").mkdir(parents=True)
    running = temporary / f"emim-dicom-{os.getpid()}-running"  # the folder of a process still running
    running.mkdir()
    (running / ".emim-dicom").touch()
    assert subprocess.run(run + ["0"], cwd=REPO, env=environment, timeout=120).returncode == 0
    assert not left.exists() and (unmarked / "keep").is_dir() and running.is_dir()
    assert sorted(p.name for p in temporary.iterdir()) == sorted([unmarked.name, running.name])


def test_the_cache_keys_a_dicom_case_on_its_series_not_its_temporary_conversion(tmp_path):
    files = series(tmp_path / "case" / "t1")
    settings = CacheSettings(tuple(T1), "zscore-nonzero", False, with_label=False)
    (first,), (second,) = find_cases(tmp_path / "case", BRATS), find_cases(tmp_path / "case", BRATS)
    assert first.images["t1n"] != second.images["t1n"]  # a new conversion folder per search
    before = entry_name(first, settings)
    assert entry_name(second, settings) == before
    os.utime(files[3], ns=(0, 0))  # a slice changed: the same case, in another state
    after = entry_name(second, settings)
    assert after[0] == before[0] and after[1] != before[1]
