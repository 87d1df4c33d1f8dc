"""Semi-synthetic sample cases (emim.sample): BraTS layout and geometry, appearance rules, label nesting, brain
confinement, foci count, volumes, byte-for-byte determinism, and acceptance by `emim check-data`.

Volume ranges asserted (mL, any grid, per case with one focus): whole tumour 15-300, tumour core 1-100,
enhancing tumour at most 60: roughly the spread of the BraTS glioma training labels, which the generator aims to
cover (its single foci measure about 20-230 mL whole tumour, 4-55 mL core).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from emim.sample import make_sample_cases, synthesize_case
from emim.sample.contrast import MODALITIES
from emim.sample.generate import write_case
from emim.sample.grid import GRIDS

SEED = 20250
CASES = 3
FACE = ndimage.generate_binary_structure(3, 1)
FULL = ndimage.generate_binary_structure(3, 3)


def _read(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    image = nib.load(path)
    return np.asanyarray(image.dataobj), image


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, emim) -> dict:
    """Small cases kept in memory (with their tissue maps) and written; the first again via the CLI; two more sets."""
    root = tmp_path_factory.mktemp("sample")
    cases = [synthesize_case(SEED, index, "small", foci=1) for index in range(CASES)]
    folders = [write_case(case, root / "api") for case in cases]
    cli = emim("make-sample", "--out", str(root / "cli"), "--cases", "1", "--seed", str(SEED), "--foci", "1",
               "--progress", "json")
    assert cli.returncode == 0, cli.stderr
    other = make_sample_cases(root / "other-seed", 1, SEED + 1, size="small", foci=1)
    two = make_sample_cases(root / "two-foci", 1, SEED, size="small", foci=2)
    return {"root": root, "folders": folders, "cases": cases, "cli": root / "cli", "other": other, "two": two}


def test_layout_and_geometry(generated: dict) -> None:
    grid = GRIDS["small"]
    for folder in generated["folders"]:
        name = folder.name
        assert name.startswith("BraTS-SYN-") and name.endswith("-000")
        for suffix in (*MODALITIES, "seg"):
            array, image = _read(folder / f"{name}-{suffix}.nii.gz")
            assert array.shape == grid.shape
            assert array.dtype == (np.uint8 if suffix == "seg" else np.int16)
            assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
            np.testing.assert_allclose(image.affine, grid.affine)
            assert image.header.get_zooms() == (2.0, 2.0, 2.0)
            assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 1
        seg, _ = _read(folder / f"{name}-seg.nii.gz")
        assert set(np.unique(seg)) <= {0, 1, 2, 3}
    assert min(grid.shape) >= 64


def test_full_grid_is_the_brats_grid(brats_mini: Path) -> None:
    """The mini cases are cropped in z only, so x/y origin, axes and spacing must match the full grid exactly."""
    real = next(brats_mini.glob("*/*-t1n.nii.gz"))
    image = nib.load(real)
    full = GRIDS["full"].affine
    np.testing.assert_allclose(image.affine[:3, :3], full[:3, :3])
    np.testing.assert_allclose(image.affine[:2, 3], full[:2, 3])
    assert image.shape[:2] == GRIDS["full"].shape[:2]


def _medians(case) -> dict[str, dict[str, float]]:
    """Median of each tissue/tumour class per modality as a ratio to white matter (the scales are arbitrary).

    Tumour classes are compared with white matter around the tumour, healthy classes with all white matter, so
    the smooth bias field (up to about +-20 %) does not decide the order.
    """
    anatomy, seg = case.anatomy, case.seg
    spacing = case.grid.spacing
    healthy = anatomy.brain & ~ndimage.binary_dilation(seg > 0, iterations=2)
    wm = healthy & (anatomy.wm > 0.9)
    near = ndimage.distance_transform_edt(seg == 0, sampling=spacing) < 25.0
    classes = {"gm": healthy & (anatomy.gm > 0.7), "csf": healthy & (anatomy.csf > 0.9)}
    lesion = {"ncr": seg == 1, "ed": seg == 2, "et": seg == 3}
    result = {}
    for modality, image in case.images.items():
        reference = float(np.median(image[wm]))
        local = float(np.median(image[wm & near])) if (wm & near).sum() >= 20 else reference
        ratios = {k: float(np.median(image[m])) / reference for k, m in classes.items() if m.sum() >= 20}
        ratios.update({k: float(np.median(image[m])) / local for k, m in lesion.items() if m.sum() >= 20})
        result[modality] = {"wm": 1.0, **ratios}
    return result


def test_appearance_order_per_modality(generated: dict) -> None:
    seen = set()
    for case in generated["cases"]:
        m = _medians(case)
        t1n, t1c, t2w, t2f = (m[k] for k in MODALITIES)
        assert {"wm", "gm", "csf"} <= set(t1n), case.case_id
        assert t1n["wm"] > t1n["gm"] > t1n["csf"]
        assert t2w["csf"] > t2w["gm"] > t2w["wm"]
        assert t2f["csf"] < t2f["wm"] and t2f["csf"] < t2f["gm"]
        if "et" in t1c:  # enhancing: brighter than white matter on t1c, and brighter on t1c than on t1n
            seen.add("et")
            assert t1c["et"] > 1.2 and t1c["et"] > t1n["et"] * 1.2
        if "ncr" in t1c:  # necrosis: dark on t1c (below white matter, far below the rim), bright (fluid) on t2w
            seen.add("ncr")
            assert t1c["ncr"] < 1.0 and t2w["ncr"] > t2w["gm"]
            if "et" in t1c:
                assert t1c["ncr"] < 0.6 * t1c["et"]
        if "ed" in t2f:  # edema: bright on FLAIR
            seen.add("ed")
            assert t2f["ed"] > 1.3 and t2f["ed"] > t2f["gm"]
    assert seen == {"et", "ncr", "ed"}, f"the generated set lacks {({'et', 'ncr', 'ed'} - seen)}"


def test_labels_nest_and_surround(generated: dict) -> None:
    for case in generated["cases"]:
        seg = case.seg
        core = np.isin(seg, (1, 3))
        assert core.any(), case.case_id
        components, count = ndimage.label(seg > 0, structure=FULL)
        for label in range(1, count + 1):
            lesion = components == label
            assert (core & lesion).any(), f"{case.case_id}: edema fragment without a core"
            if (seg[lesion] == 3).any() and (seg[lesion] == 1).any():  # ring: necrosis only meets enhancing rim
                shell = ndimage.binary_dilation((seg == 1) & lesion, structure=FULL) & ~((seg == 1) & lesion)
                assert set(np.unique(seg[shell])) <= {1, 3}, case.case_id
        border = ndimage.binary_dilation(core, structure=FACE) & ~core
        assert (seg[border] == 2).mean() > 0.6, f"{case.case_id}: tumour core not wrapped in edema"


def test_nothing_outside_the_brain(generated: dict) -> None:
    for case in generated["cases"]:
        brain = case.anatomy.brain
        assert not (case.seg[~brain]).any()
        for modality, image in case.images.items():
            np.testing.assert_array_equal(image != 0, brain, err_msg=f"{case.case_id} {modality}")
        assert (case.images["t1n"][brain] > 0).all()


def test_foci_count(generated: dict) -> None:
    for folders, expected in ((generated["folders"], 1), (generated["two"], 2)):
        for folder in folders:
            seg, _ = _read(folder / f"{folder.name}-seg.nii.gz")
            for structure in (FACE, FULL):
                assert ndimage.label(seg > 0, structure=structure)[1] == expected, folder.name


def test_volumes_in_brats_ranges(generated: dict) -> None:
    for case in generated["cases"]:
        millilitres = case.grid.spacing**3 / 1000.0
        wt = np.count_nonzero(case.seg) * millilitres
        tc = np.count_nonzero(np.isin(case.seg, (1, 3))) * millilitres
        et = np.count_nonzero(case.seg == 3) * millilitres
        assert 15.0 <= wt <= 300.0 and 1.0 <= tc <= 100.0 and et <= 60.0, (case.case_id, wt, tc, et)


def _bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.nii.gz"))}


def test_same_seed_same_bytes_other_seed_differs(generated: dict) -> None:
    api = _bytes(generated["folders"][0])
    cli_folder = generated["cli"] / generated["folders"][0].name
    assert _bytes(cli_folder) == api  # make_sample_cases in a separate process, through the command line
    other = _bytes(generated["other"][0])
    assert other.keys() == api.keys()
    assert all(other[name] != api[name] for name in api)


def test_check_data_accepts_the_folder(generated: dict, emim) -> None:
    result = emim("check-data", str(generated["root"] / "api"))
    assert result.returncode == 0, result.stdout + result.stderr
    for folder in generated["folders"]:
        assert folder.name in result.stdout


def test_bad_request_is_a_clean_error(tmp_path: Path, emim) -> None:
    result = emim("make-sample", "--out", str(tmp_path), "--cases", "1", "--foci", "9")
    assert result.returncode == 2
    assert "--foci" in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_full_size_case_is_brats_sized(tmp_path: Path) -> None:
    folder = make_sample_cases(tmp_path, 1, SEED, size="full")[0]
    seg, image = _read(folder / f"{folder.name}-seg.nii.gz")
    assert seg.shape == (240, 240, 155)
    np.testing.assert_allclose(image.affine, GRIDS["full"].affine)
    wt = np.count_nonzero(seg) / 1000.0
    assert 15.0 <= wt <= 300.0


def test_randomised_cases_keep_the_rules_and_add_unlabelled_look_alikes() -> None:
    randomised = synthesize_case(SEED, 1, "small", randomise=True)
    again = synthesize_case(SEED, 1, "small", randomise=True)
    assert all(np.array_equal(randomised.images[m], again.images[m]) for m in MODALITIES)
    brain = randomised.anatomy.brain
    assert not randomised.seg[~brain].any()
    for modality, image in randomised.images.items():
        np.testing.assert_array_equal(image != 0, brain, err_msg=modality)
    assert ndimage.label(randomised.seg > 0, structure=FULL)[1] == len(randomised.foci)
    # the look-alikes stay clear of the tumour; enhancing ones on t1c, hyperintense ones on FLAIR
    from emim.sample.distractors import distractor_factors

    factors = distractor_factors(np.random.default_rng(0), randomised.grid, randomised.anatomy, randomised.seg,
                                 MODALITIES)
    for modality, factor in factors.items():
        assert np.abs(factor[randomised.seg > 0] - 1.0).max() < 0.05, modality  # only a vessel's sub-voxel blur
    assert factors["t1c"].max() > 1.3 and factors["t2f"].max() > 1.3
