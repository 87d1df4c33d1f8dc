"""DICOM in and out: a real mini case written as four DICOM MR series (SimpleITK, scanner-like descriptions) is
found, matched and segmented to exactly the label map of its NIfTI files; `--output-format dicom-seg` writes a
DICOM SEG that reads back (highdicom) with the same voxels, on the source slices, with the model's segment codes;
series the engine would misread are refused with the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emim.data.cases import find_cases
from emim.data.dicom import convert_case
from emim.data.loading import load_case
from emim.data.modalities import BRATS
from emim.errors import EmimError
from support.segmenting import segment
from emim.inference.segmentation_model import load_segmentation_model

from conftest import SMALLEST_CASE
from support.dicom_series import write_case, write_series

STARTER = Path(__file__).resolve().parents[1] / "Resources" / "Models" / "EMIM-starter-tiny"
DESCRIPTIONS = {"t1n": "AX T1 SE", "t1c": "AX T1 POST GD", "t2w": "T2W TSE AX", "t2f": "T2 FLAIR AX"}


@pytest.fixture(scope="module")
def dicom_case(brats_mini, tmp_path_factory) -> Path:
    return write_case(brats_mini / SMALLEST_CASE, SMALLEST_CASE, tmp_path_factory.mktemp("dicom") / SMALLEST_CASE,
                      DESCRIPTIONS)


@pytest.fixture(scope="module")
def starter():
    return load_segmentation_model(STARTER, "cpu")


def load(folder: Path) -> None:
    """Find the one case in `folder` and load it: its series are checked and converted then."""
    (case,) = find_cases(folder, BRATS)
    load_case(case, BRATS.names, with_label=False)


def test_series_are_matched_by_description_and_converted_exactly(dicom_case, brats_mini):
    (case,) = find_cases(dicom_case, BRATS)
    assert case.case_id == SMALLEST_CASE and set(case.images) == set(BRATS.names)
    assert {m: s.description for m, s in case.dicom.items()} == DESCRIPTIONS
    convert_case(case.case_id, case.images, case.dicom, BRATS.names)  # as loading the case does
    for modality, path in case.images.items():
        converted = nib.load(path)
        original = nib.load(brats_mini / SMALLEST_CASE / f"{SMALLEST_CASE}-{modality}.nii.gz")
        assert converted.shape == original.shape and np.allclose(converted.affine, original.affine, atol=1e-5)
        assert np.array_equal(np.asarray(converted.dataobj), np.asarray(original.dataobj))
        assert dicom_case not in path.parents  # converted privately, never into the input folder


def test_a_dicom_case_segments_to_the_same_label_map_as_its_nifti_files(dicom_case, brats_mini, starter, tmp_path):
    from_nifti = nib.load(segment(starter, brats_mini / SMALLEST_CASE, tmp_path / "nifti", single=False))
    from_dicom = nib.load(segment(starter, dicom_case, tmp_path / "dicom", single=False))
    assert from_dicom.shape == from_nifti.shape and np.allclose(from_dicom.affine, from_nifti.affine, atol=1e-5)
    labels = np.asarray(from_dicom.dataobj)
    assert np.array_equal(labels, np.asarray(from_nifti.dataobj)) and labels.any()
    report = json.loads((tmp_path / "dicom" / f"{SMALLEST_CASE}.report.json").read_text())
    series = {entry["modality"]: entry["dicom"] for entry in report["inputs"]}
    assert series["t1c"]["series_description"] == "AX T1 POST GD" and series["t1c"]["files"] == labels.shape[2]
    assert all(len(entry["sha256"]) == 64 for entry in series.values())


def test_dicom_seg_output_reads_back_with_the_voxels_codes_and_source_slices(dicom_case, brats_mini, starter,
                                                                             tmp_path, emim):
    highdicom = pytest.importorskip("highdicom")
    import pydicom

    out = tmp_path / "out"
    result = emim("segment", "--model", str(STARTER), "--device", "cpu", "--output-format", "dicom-seg", "--progress",
                  "json", "--output", str(out), str(dicom_case))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    label_event = next(e for e in events if e["event"] == "output" and e["kind"] == "label")
    assert label_event["format"] == "dicom-seg" and label_event["path"] == str(out / f"{SMALLEST_CASE}.seg.dcm")
    assert not (out / f"{SMALLEST_CASE}.nii.gz").exists() and (out / f"{SMALLEST_CASE}.volumes.csv").is_file()

    seg = highdicom.seg.segread(label_event["path"])
    labels = starter.metadata["labels"]
    assert [seg.get_segment_description(n).segment_label for n in (1, 2, 3)] == [lb["name"] for lb in labels]
    for number, label in enumerate(labels, start=1):
        kind = seg.get_segment_description(number).segmented_property_type
        assert kind.value == label["terminology"]["type"]["CodeValue"]
    t1n_series = sorted((dicom_case / "series1").glob("*.dcm"))
    sources = [pydicom.dcmread(p) for p in t1n_series]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    pixels = seg.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in sources], segment_numbers=[1, 2, 3],
                                               combine_segments=True)
    expected = nib.load(segment(starter, brats_mini / SMALLEST_CASE, tmp_path / "nifti", single=False))
    reference = nib.load(brats_mini / SMALLEST_CASE / f"{SMALLEST_CASE}-t1n.nii.gz")
    assert np.allclose(expected.affine, reference.affine)
    # the NIfTI's voxel (i, j, k) is column i, row j of slice k, in the slices' order along their normal
    assert np.array_equal(pixels, np.transpose(np.asarray(expected.dataobj), (2, 1, 0))) and pixels.any()


def test_dicom_problems_are_refused_with_the_fix(dicom_case, brats_mini, starter, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    uneven = write_case(brats_mini / SMALLEST_CASE, SMALLEST_CASE, tmp_path / "uneven", DESCRIPTIONS, uneven="t2w")
    with pytest.raises(EmimError, match=r"'T2W TSE AX'.*uneven slice spacing.*dcm2niix"):
        load(uneven)
    twice = tmp_path / "twice"
    shutil.copytree(dicom_case, twice)
    write_series(brats_mini / SMALLEST_CASE / f"{SMALLEST_CASE}-t2f.nii.gz", twice / "series9", "COR T2 FLAIR",
                 "1.2.826.0.1.3680043.10.1234.1", "1.2.826.0.1.3680043.10.1234.2.9", "1.2.826.0.1.3680043.10.1234.3", 9)
    with pytest.raises(EmimError, match="several DICOM series match t2f"):
        load(twice)
    same_name = tmp_path / "same_name"  # a repeated FLAIR under the same description is not silently dropped
    shutil.copytree(dicom_case, same_name)
    write_series(brats_mini / SMALLEST_CASE / f"{SMALLEST_CASE}-t2f.nii.gz", same_name / "series9", DESCRIPTIONS["t2f"],
                 "1.2.826.0.1.3680043.10.1234.1", "1.2.826.0.1.3680043.10.1234.2.9", "1.2.826.0.1.3680043.10.1234.3", 9)
    both = r"several DICOM series match t2f.*1234\.2\.4.*1234\.2\.9|1234\.2\.9.*1234\.2\.4"  # both UIDs named
    with pytest.raises(EmimError, match=both):
        load(same_name)
    split = tmp_path / "split"  # half of the FLAIR's slices in another folder: never half a brain
    shutil.copytree(dicom_case, split)
    (split / "series4b").mkdir()
    for path in sorted((split / "series4").glob("*.dcm"))[::2]:
        path.rename(split / "series4b" / path.name)
    with pytest.raises(EmimError, match="'T2 FLAIR AX'.*split across the folders"):
        load(split)
    no_position = tmp_path / "no_position"  # e.g. a secondary capture: no geometry to place the voxels
    shutil.copytree(dicom_case, no_position)
    for path in (no_position / "series4").glob("*.dcm"):
        dataset = pydicom.dcmread(path)
        del dataset.ImagePositionPatient
        dataset.save_as(path)
    with pytest.raises(EmimError, match="'T2 FLAIR AX'.*lacks the slice position"):
        load(no_position)
    with pytest.raises(EmimError, match="inside the DICOM folder"):
        segment(starter, dicom_case, dicom_case / "results", single=False)
    assert not (dicom_case / "results").exists()
    with pytest.raises(EmimError, match="dicom-seg references the source DICOM series.*NIfTI"):
        segment(starter, brats_mini / SMALLEST_CASE, tmp_path / "seg", single=False, output_format="dicom-seg")
    assert not (tmp_path / "seg").exists()
