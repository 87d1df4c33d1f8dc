"""Modality assignment and case discovery: BraTS 2023 and 2021 folders, one case folder, datalist JSON.

`write_nifti` and `write_case` are also used by the other data tests (real NIfTI files in tmp_path).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emim.data.cases import dataset_spec, expected_labels, find_cases
from emim.data.modalities import BRATS, ModalitySpec, assign_modalities, match_modalities
from emim.errors import EmimError

# a BraTS-like LPS affine with anisotropic spacing, so canonical reorientation and spacing are exercised
LPS_AFFINE = np.array([[-1.0, 0, 0, 30], [0, -1.2, 0, 40], [0, 0, 2.0, -10], [0, 0, 0, 1]])


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def brain(shape=(20, 24, 16), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic head: an ellipsoid of non-zero int16 intensities in a zero background, and a label blob."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    inside = (grid**2).sum(0) < 0.8
    image = np.where(inside, rng.integers(100, 1000, shape), 0).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    label[((grid - 0.2) ** 2).sum(0) < 0.05] = 2
    label[((grid - 0.2) ** 2).sum(0) < 0.02] = 3
    return image, label


def write_case(root: Path, case_id: str, suffixes=("t1n", "t1c", "t2w", "t2f"), sep: str = "-",
               shape=(20, 24, 16), affine: np.ndarray = LPS_AFFINE, seg: str | None = "seg") -> Path:
    """One case folder CASE/CASE{sep}{suffix}.nii.gz with different intensities per modality."""
    folder = root / case_id
    image, label = brain(shape)
    for index, suffix in enumerate(suffixes):
        write_nifti(folder / f"{case_id}{sep}{suffix}.nii.gz", (image * (index + 1)).astype(np.int16), affine)
    if seg:
        write_nifti(folder / f"{case_id}{sep}{seg}.nii.gz", label, affine)
    return folder


def test_brats_patterns_assign_2023_2021_and_slicer_names():
    names_2023 = [f"BraTS-GLI-00001-000-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f", "seg")]
    assert assign_modalities(names_2023, BRATS) == {m: f"BraTS-GLI-00001-000-{m}.nii.gz" for m in BRATS.names}
    names_2021 = [f"BraTS2021_00000_{m}.nii.gz" for m in ("t1", "t1ce", "t2", "flair", "seg")]
    assert assign_modalities(names_2021, BRATS) == {
        "t1n": names_2021[0], "t1c": names_2021[1], "t2w": names_2021[2], "t2f": names_2021[3]}
    expected = {"T1": "t1n", "T1w": "t1n", "T1ce": "t1c", "T1Gd": "t1c", "T1post": "t1c", "T1 post-contrast": "t1c",
                "T1+C": "t1c", "T2": "t2w", "T2w": "t2w", "FLAIR": "t2f", "T2-FLAIR": "t2f", "t2_flair": "t2f"}
    for name, modality in expected.items():
        assert assign_modalities([name], BRATS) == {modality: name}, name


def test_ambiguous_and_unmatched_names_are_left_out():
    # two names for one modality: neither is chosen, both are listed
    assert assign_modalities(["T1", "T1_repeat", "FLAIR"], BRATS) == {"t2f": "FLAIR"}
    assert match_modalities(["T1", "T1_repeat"], BRATS)["t1n"] == ["T1", "T1_repeat"]
    # one name matching two modalities equally, or none
    assert assign_modalities(["t1_t2", "MPRAGE", "brainmask"], BRATS) == {}


def test_spec_metadata_round_trip_and_select():
    again = ModalitySpec.from_metadata(BRATS.to_metadata())
    assert again == BRATS
    prostate = ModalitySpec.from_metadata(["t2w", {"name": "adc", "title": "ADC map"}, "hbv"])
    assert prostate.names == ("t2w", "adc", "hbv") and prostate.title("adc") == "ADC map"
    assert assign_modalities(["p1_adc.nii.gz", "p1_hbv.nii.gz", "p1_t2w.nii", "p1_adcx.nii"], prostate) == {
        "t2w": "p1_t2w.nii", "adc": "p1_adc.nii.gz", "hbv": "p1_hbv.nii.gz"}
    subset = BRATS.select(["t2f", "t1c"])
    assert subset.names == ("t2f", "t1c") and subset.patterns["t2f"] == BRATS.patterns["t2f"]
    assert assign_modalities(["x_dwi.nii.gz"], BRATS.select(["dwi"])) == {"dwi": "x_dwi.nii.gz"}


def test_find_cases_real_brats_2023_folder(brats_mini: Path):
    cases = find_cases(brats_mini)
    assert [c.case_id for c in cases] == sorted(d.name for d in brats_mini.iterdir() if d.is_dir())
    for case in cases:
        assert set(case.images) == set(BRATS.names)
        for modality, path in case.images.items():
            assert path.name == f"{case.case_id}-{modality}.nii.gz"
        assert case.label.name == f"{case.case_id}-seg.nii.gz" and not case.ambiguous


def test_find_cases_brats_2021_names_and_single_case_folder(tmp_path: Path):
    for case_id in ("BraTS2021_00002", "BraTS2021_00001"):
        write_case(tmp_path / "data", case_id, suffixes=("t1", "t1ce", "t2", "flair"), sep="_")
    cases = find_cases(tmp_path / "data")
    assert [c.case_id for c in cases] == ["BraTS2021_00001", "BraTS2021_00002"]
    assert cases[0].images["t1c"].name == "BraTS2021_00001_t1ce.nii.gz"
    assert cases[0].images["t1n"].name == "BraTS2021_00001_t1.nii.gz"
    assert cases[0].label.name == "BraTS2021_00001_seg.nii.gz"
    single = find_cases(tmp_path / "data" / "BraTS2021_00002")
    assert len(single) == 1 and single[0].case_id == "BraTS2021_00002" and len(single[0].images) == 4


def test_missing_and_ambiguous_files_are_recorded_not_raised(tmp_path: Path):
    folder = write_case(tmp_path, "c1")
    (folder / "c1-t2f.nii.gz").unlink()
    (folder / "c1-t1n.nii.gz").rename(folder / "c1-t1.nii.gz")
    write_nifti(folder / "c1-t1w.nii.gz", brain()[0])
    (case,) = find_cases(tmp_path)
    assert "t2f" not in case.images and "t1n" not in case.images
    assert sorted(p.name for p in case.ambiguous["t1n"]) == ["c1-t1.nii.gz", "c1-t1w.nii.gz"]


def test_datalist_json_list_and_dict_forms(tmp_path: Path):
    prostate = ("t2w", "adc", "hbv")
    for case_id in ("p001", "p002"):
        write_case(tmp_path, case_id, suffixes=prostate, sep="_")
    datalist = {
        "modalities": [{"name": "t2w", "title": "T2 weighted"}, "adc", "hbv"],
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "training": [
            {"image": [f"p002/p002_{m}.nii.gz" for m in prostate], "label": "p002/p002_seg.nii.gz"},
            {"case_id": "first", "image": {m: f"p001/p001_{m}.nii.gz" for m in ("hbv", "t2w", "adc")}},
        ],
    }
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    cases = find_cases(path)
    assert [c.case_id for c in cases] == ["first", "p002"]
    assert cases[1].images == {m: tmp_path / "p002" / f"p002_{m}.nii.gz" for m in prostate}
    assert cases[1].label == tmp_path / "p002" / "p002_seg.nii.gz" and cases[0].label is None
    assert cases[0].images["adc"] == tmp_path / "p001" / "p001_adc.nii.gz"
    assert dataset_spec(path).names == prostate and dataset_spec(path).title("t2w") == "T2 weighted"
    assert expected_labels(path, dataset_spec(path)) == (0, 1, 2)
    assert expected_labels(tmp_path / "p001", BRATS) == (0, 1, 2, 3)


def test_datalist_names_cases_by_folder_when_file_names_repeat(tmp_path: Path):
    entries = [{"image": [f"{c}/t1.nii.gz", f"{c}/t2.nii.gz"]} for c in ("b", "a")]
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"modalities": ["t1", "t2"], "training": entries}))
    assert [c.case_id for c in find_cases(path)] == ["a", "b"]


@pytest.mark.parametrize("content, expected", [
    ("{not json", "cannot read the datalist"),
    ('{"images": []}', "no 'training' list"),
    ('{"modalities": ["a", "b"], "training": [{"image": ["x.nii.gz"]}]}', "lists 1 images but the data set has 2"),
    ('{"training": [{"case_id": "x", "image": {"t1n": "a.nii"}}, {"case_id": "x", "image": {"t1n": "b.nii"}}]}',
     "appear more than once"),
])
def test_bad_datalists_raise_emim_error_naming_the_file(tmp_path: Path, content: str, expected: str):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(EmimError, match=expected) as info:
        find_cases(path)
    assert str(path) in str(info.value)


def test_no_cases_or_no_path_raise(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmimError, match="no cases found"):
        find_cases(tmp_path / "empty")
    with pytest.raises(EmimError, match="does not exist"):
        find_cases(tmp_path / "nowhere")

