"""Loading: canonical reorientation round trips, physical-space resampling, normalisation, saving, crops."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from emim.data.cases import Case, find_cases
from emim.data.loading import load_case, normalize
from emim.errors import DataError, EmimError
from test_data_cases import LPS_AFFINE, brain, write_case, write_nifti

BRATS = ("t1n", "t1c", "t2w", "t2f")


def on_disk(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def world_to_voxel(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (np.linalg.inv(affine) @ np.c_[points, np.ones(len(points))].T)[:3].T


def voxel_to_world(affine: np.ndarray, shape) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    return (affine @ np.c_[index, np.ones(len(index))].T)[:3].T


@pytest.fixture(scope="module")
def real_case(brats_mini: Path) -> Case:
    return find_cases(brats_mini)[-1]  # the smallest case (70 slices)


def test_real_case_is_canonical_and_normalised(real_case: Case):
    loaded = load_case(real_case, BRATS)
    raw_affine = nib.load(str(real_case.images["t1n"])).affine
    canonical = nib.as_closest_canonical(nib.load(str(real_case.images["t1n"])))
    assert loaded.image.dtype == np.float32 and loaded.image.shape == (4, *canonical.shape)
    assert np.array_equal(loaded.affine, raw_affine) and loaded.reference == real_case.images["t1n"]
    assert loaded.spacing == pytest.approx(canonical.header.get_zooms())
    for channel, modality in zip(loaded.image, BRATS):
        raw = np.asanyarray(nib.as_closest_canonical(nib.load(str(real_case.images[modality]))).dataobj)
        assert np.array_equal(channel == 0, raw == 0), modality  # background stays exactly 0
        inside = channel[raw != 0]
        assert abs(inside.mean()) < 1e-4 and abs(inside.std() - 1) < 1e-4
        assert np.corrcoef(inside, raw[raw != 0])[0, 1] > 0.9999  # an affine map of the raw intensities
    seg = np.asanyarray(nib.as_closest_canonical(nib.load(str(real_case.label))).dataobj)
    assert loaded.label.dtype == np.uint8 and np.array_equal(loaded.label, seg)
    # back on the file's own voxel order, channel 0 is the normalised on-disk array
    expected = normalize(on_disk(real_case.images["t1n"]))
    assert np.allclose(loaded.to_reference(loaded.image[0]), expected, atol=1e-5)
    assert np.array_equal(loaded.to_reference(loaded.label), on_disk(real_case.label))


def test_flipped_copy_on_disk_loads_to_the_same_canonical_arrays(real_case: Case, tmp_path: Path):
    swap_and_flip = np.array([[1, -1], [0, 1], [2, -1]])  # x <-> y, with two axes reversed
    files = {**real_case.images, "seg": real_case.label}
    copies = {}
    for name, path in files.items():
        image = nib.load(str(path)).as_reoriented(swap_and_flip)
        copies[name] = tmp_path / f"copy-{name}.nii"  # uncompressed: fast to write
        nib.save(image, str(copies[name]))
    original = load_case(real_case, BRATS)
    copy = load_case(Case("copy", {m: copies[m] for m in BRATS}, copies["seg"]), BRATS)
    assert not np.array_equal(on_disk(copies["t1n"]), on_disk(real_case.images["t1n"]))
    assert np.array_equal(copy.image, original.image) and np.array_equal(copy.label, original.label)
    assert copy.spacing == original.spacing and not np.allclose(copy.affine, original.affine)
    assert np.array_equal(copy.to_reference(copy.label), on_disk(copies["seg"]))
    copy.save_like_reference(copy.label, tmp_path / "out" / "label.nii.gz", np.uint8)
    written = nib.load(str(tmp_path / "out" / "label.nii.gz"))
    assert np.array_equal(written.affine, nib.load(str(copies["t1n"])).affine)
    assert np.array_equal(np.asanyarray(written.dataobj), on_disk(copies["seg"]))


def test_save_like_reference_keeps_qform_sform_and_shape(tmp_path: Path):
    image, label = brain()
    reference = nib.Nifti1Image(image, LPS_AFFINE)
    reference.set_qform(LPS_AFFINE, code=1)
    sform = LPS_AFFINE.copy()
    sform[:3, 3] += 0.25  # a different sform, as some scanners write; nibabel and ITK both prefer it
    reference.set_sform(sform, code=2)
    nib.save(reference, str(tmp_path / "c-t1n.nii.gz"))
    loaded = load_case(Case("c", {"t1n": tmp_path / "c-t1n.nii.gz"}, None), ["t1n"], normalization="none")
    probabilities = np.stack([loaded.image[0] / loaded.image.max(), 1 - loaded.image[0] / loaded.image.max()])
    loaded.save_like_reference(probabilities, tmp_path / "prob.nii.gz", np.float32)
    written = nib.load(str(tmp_path / "prob.nii.gz"))
    assert written.shape == (*image.shape, 2)
    for form in ("qform", "sform"):
        expected_affine, expected_code = getattr(reference, f"get_{form}")(coded=True)
        got_affine, got_code = getattr(written, f"get_{form}")(coded=True)
        assert got_code == expected_code and np.allclose(got_affine, expected_affine)
    assert np.allclose(written.get_fdata()[..., 0], image / image.max(), atol=1e-6)
    with pytest.raises(ValueError, match="does not match the reference grid"):
        loaded.save_like_reference(np.zeros((3, 3, 3)), tmp_path / "bad.nii.gz", np.float32)


def test_differing_grids_are_refused_then_resampled_in_physical_space(tmp_path: Path):
    folder = write_case(tmp_path, "c")
    image, label = brain()
    # t2w: same voxels stored in another order (x flipped) with the origin moved by whole voxels
    moved = LPS_AFFINE @ np.array([[-1, 0, 0, image.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    moved[:3, 3] += LPS_AFFINE[:3, :3] @ np.array([3.0, -2.0, 1.0])
    t2w = (image[::-1] * 3).astype(np.int16)
    write_nifti(folder / "c-t2w.nii.gz", t2w, moved)
    write_nifti(folder / "c-seg.nii.gz", label[::-1].copy(), moved)
    # t2f: a linear function of physical position on a coarser, shifted grid; linear interpolation is exact
    coarse = LPS_AFFINE @ np.diag([1.5, 1.5, 1.25, 1.0])
    coarse[:3, 3] += [0.4, -0.3, 0.7]
    shape = (16, 19, 14)
    ramp = lambda xyz: 1000 + xyz @ np.array([3.0, -2.0, 5.0])  # noqa: E731
    write_nifti(folder / "c-t2f.nii.gz", ramp(voxel_to_world(coarse, shape)).reshape(shape).astype(np.float32), coarse)
    (case,) = find_cases(tmp_path)

    with pytest.raises(DataError, match="--resample") as info:
        load_case(case, BRATS, normalization="none")
    assert info.value.kind == "grid" and info.value.file.name == "c-t2w.nii.gz" and "case c" in str(info.value)

    loaded = load_case(case, BRATS, normalization="none", resample=True)
    reference = nib.as_closest_canonical(nib.load(str(case.images["t1n"])))
    world = voxel_to_world(reference.affine, reference.shape)
    # shifted copy: each reference voxel takes the t2w voxel at the same physical point, or 0 outside it
    index = np.rint(world_to_voxel(moved, world)).astype(int)
    inside = np.all((index >= 0) & (index < image.shape), axis=1)
    expected = np.zeros(len(world), np.float32)
    expected[inside] = t2w[tuple(index[inside].T)]
    # up to float32 header rounding of the 1.2 mm spacing, which leaves interpolation weights of ~1e-6
    assert np.allclose(loaded.image[2].ravel(), expected, atol=1e-5 * t2w.max())
    expected_label = np.zeros(len(world), np.uint8)
    expected_label[inside] = label[::-1][tuple(index[inside].T)]
    assert np.array_equal(loaded.label.ravel(), expected_label)
    assert 0 < inside.mean() < 1  # the shift really moved voxels out of the grid
    # ramp: exact wherever the reference voxel lies inside the coarse grid
    continuous = world_to_voxel(coarse, world)
    within = np.all((continuous >= 0) & (continuous <= np.array(shape) - 1), axis=1)
    assert within.sum() > 1000
    assert np.allclose(loaded.image[3].ravel()[within], ramp(world[within]), rtol=1e-5)
    assert np.array_equal(loaded.image[0], np.asanyarray(reference.dataobj).astype(np.float32))


def test_normalisations():
    rng = np.random.default_rng(1)
    array = np.where(rng.random((12, 10, 8)) > 0.3, rng.normal(500, 80, (12, 10, 8)), 0).astype(np.float32)
    nonzero = normalize(array, "zscore-nonzero")
    assert np.array_equal(nonzero == 0, array == 0)
    assert nonzero[array != 0].mean() == pytest.approx(0, abs=1e-5)
    assert nonzero[array != 0].std() == pytest.approx(1, abs=1e-5)
    whole = normalize(array, "zscore")
    assert whole.mean() == pytest.approx(0, abs=1e-5) and whole.std() == pytest.approx(1, abs=1e-5)
    peak = normalize(array, "max")
    assert peak.max() == pytest.approx(1) and np.allclose(peak * array.max(), array, rtol=1e-6)
    assert np.array_equal(normalize(array, "none"), array)
    with pytest.raises(EmimError, match="unknown normalisation"):
        normalize(array, "minmax")


@pytest.mark.parametrize("breakage, kind", [("missing", "missing"), ("4D", "4D"), ("nan", "non-finite"),
                                            ("empty", "empty"), ("ambiguous", "ambiguous")])
def test_load_refuses_broken_cases_with_the_file_and_fix(tmp_path: Path, breakage: str, kind: str):
    folder = write_case(tmp_path, "c")
    image, _ = brain()
    target = folder / "c-t1c.nii.gz"
    if breakage == "missing":
        target.unlink()
    elif breakage == "4D":
        write_nifti(target, np.stack([image] * 3, -1))
    elif breakage == "nan":
        write_nifti(target, np.full(image.shape, np.inf, np.float32))
    elif breakage == "empty":
        write_nifti(target, np.zeros_like(image))
    else:
        write_nifti(folder / "c-t1ce.nii.gz", image)
    (case,) = find_cases(tmp_path)
    with pytest.raises(DataError) as info:
        load_case(case, BRATS)
    assert info.value.kind == kind and "case c" in str(info.value) and "Fix:" in str(info.value)
    if breakage != "ambiguous":
        assert info.value.file.name == "c-t1c.nii.gz" and str(info.value.file) in str(info.value)
    assert load_case(case, ["t1n", "t2w"]).image.shape == (2, 20, 24, 16)  # other modalities still load


def _cached_case(tmp_path, image: np.ndarray, label: np.ndarray):
    """A real cache entry of a 2-modality case written as NIfTI files (RAS, so the arrays keep their voxel order)."""
    from emim.data.cache import CacheSettings, cached_cases
    from emim.data.cases import find_cases

    folder = tmp_path / "data" / "c"
    folder.mkdir(parents=True)
    for i, name in enumerate(["t1n", "t2w"]):
        write_nifti(folder / f"c-{name}.nii.gz", image[i], np.eye(4))
    write_nifti(folder / "c-seg.nii.gz", label.astype(np.uint8), np.eye(4))
    settings = CacheSettings(("t1n", "t2w"), "none", False, with_label=True)
    return cached_cases(find_cases(tmp_path / "data"), settings, tmp_path / "cache")[0]


def test_crops_pad_small_volumes_and_favour_tumour(tmp_path):
    from emim.train.batches import read_sample

    shape = (48, 40, 20)  # fewer slices than the crop
    image = np.zeros((2, *shape), np.float32)
    image[:, 4:44, 4:36, 2:18] = np.random.default_rng(0).normal(size=(2, 40, 32, 16))
    label = np.zeros(shape, np.uint8)
    label[38:41, 30:33, 8:10] = 1  # a tiny tumour near one corner of the brain
    entry = _cached_case(tmp_path, image, label)
    assert entry.shape == (40, 32, 16) and entry.label_values == (0, 1)
    crop = (16, 16, 32)
    rng = np.random.default_rng(0)
    samples = [read_sample(entry, crop, True, rng) for _ in range(40)]
    assert all(s["image"].shape == (2, *crop) and s["label"].shape == (1, *crop) for s in samples)
    assert all(s["image"].dtype == torch.float32 and s["label"].dtype == torch.uint8 for s in samples)
    # the 16 brain slices sit in the middle of the 32 of the crop, zeros around them
    assert all(not s["image"][:, :, :, :8].any() and not s["image"][:, :, :, 24:].any() for s in samples)
    with_tumour = np.mean([bool(s["label"].any()) for s in samples])
    # uniform crops show this tumour in ~8 % of draws; the tumour/brain centres in >= 50 % on average (binomial sd
    # ~8 % over 40 draws), and crops without it still occur
    assert 0.3 <= with_tumour < 1.0
    sample = read_sample(entry, crop, False, rng)
    assert sample["image"].shape == (2, *crop) and set(sample) == {"image"}


def test_a_crop_is_the_same_voxels_as_cutting_the_array_and_keeps_image_and_label_aligned(tmp_path):
    from emim.data.crops import read_crop
    from emim.train.batches import read_sample

    rng = np.random.default_rng(1)
    image = np.zeros((2, 50, 44, 30), np.float32)
    image[:, 5:45, 6:40, 3:27] = rng.integers(1, 100, size=(2, 40, 34, 24))
    label = np.zeros((50, 44, 30), np.uint8)
    label[30:36, 20:26, 10:14] = 2
    entry = _cached_case(tmp_path, image, label)
    box = image[:, 5:45, 6:40, 3:27]
    assert np.array_equal(entry.array("image"), box)  # integers below 2048 are exact in float16
    assert np.array_equal(read_crop(box, (3, 4, 0), (16, 16, 32))[:, :, :, 4:28], box[:, 3:19, 4:20, :])
    for _ in range(20):  # wherever a crop lands and however it is flipped, label 2 sits on its own image voxels
        sample = read_sample(entry, (16, 16, 32), True, rng)
        inside = sample["label"][0] == 2
        values = set(sample["image"][0][inside].tolist())
        assert values <= set(box[0][label[5:45, 6:40, 3:27] == 2].tolist())


def test_the_brain_mask_is_read_before_normalisation(tmp_path):
    import nibabel as nib

    from emim.data.cases import find_cases
    from emim.data.loading import load_case
    from emim.sample import make_sample_cases

    make_sample_cases(tmp_path, 1, seed=5, size="small")
    (case,) = find_cases(tmp_path)
    loaded = load_case(case, ["t1n", "t1c", "t2w", "t2f"], "zscore", with_label=False)
    assert (loaded.image[:, ~loaded.inside] != 0).all()  # whole-volume z-scores move the background off 0
    raw = np.any([np.asarray(nib.load(str(p)).dataobj) != 0 for p in case.images.values()], axis=0)
    assert np.array_equal(loaded.to_reference(loaded.inside), raw)


def test_loader_workers_are_refused_where_their_sockets_would_not_fit(tmp_path, monkeypatch):
    """Under a long temporary folder a worker cannot open the socket it hands a batch back through, and the run
    used to wait for that batch forever; now it stops at once, naming TMPDIR and --workers 0."""
    import multiprocessing
    from multiprocessing.connection import arbitrary_address

    from emim.train.batches import SOCKET_PATH_MAX, check_worker_sockets

    if torch.multiprocessing.get_sharing_strategy() != "file_descriptor":
        pytest.skip("torch shares batches through files here, not through sockets")
    if arbitrary_address("AF_UNIX").startswith("\0"):
        pytest.skip("this Python names its sockets in Linux's abstract namespace, which has no path limit")

    def with_temporary_folder(folder: str) -> None:
        """multiprocessing's own temporary folder (made under TMPDIR on first use), where its sockets are named:
        FOLDER/listener-XXXXXXXX"""
        monkeypatch.setitem(multiprocessing.current_process()._config, "tempdir", folder)

    fits = "/" + "x" * (SOCKET_PATH_MAX - len("/listener-12345678") - 1)  # the socket path is exactly the limit
    with_temporary_folder(fits + "x")
    with pytest.raises(EmimError, match=r"--workers 2 .* Set TMPDIR to a shorter folder .* or use --workers 0"):
        check_worker_sockets(2)
    check_worker_sockets(0)  # no workers, no sockets
    with_temporary_folder(fits)
    check_worker_sockets(2)
