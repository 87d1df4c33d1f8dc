"""`emim reconstruct`: a 2-step pretraining reconstructs a real BraTS case on its exact grid, with the requested
mask pattern, visible voxels untouched, and the same files for the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emim.data.cases import find_cases
from emim.data.loading import load_case
from emim.pretrain.masks import MaskConfig

from conftest import SMALLEST_CASE

NAMES = ("t1n", "t1c", "t2w", "t2f")


@pytest.fixture(scope="module")
def case(brats_mini: Path):
    return find_cases(brats_mini / SMALLEST_CASE)[0]


@pytest.fixture(scope="module")
def normalised(case) -> np.ndarray:
    """The case as the model sees it, on disk order: what visible voxels must equal."""
    loaded = load_case(case, NAMES, "zscore-nonzero", with_label=False)
    return np.stack([loaded.to_reference(channel) for channel in loaded.image])


def _read(folder: Path, modality: str, kind: str) -> nib.Nifti1Image:
    return nib.load(str(folder / f"{modality}_{kind}.nii.gz"))


def test_modal_mask_cli_writes_outputs_on_the_input_grid(tiny_pretraining, case, normalised, tmp_path, emim):
    out = tmp_path / "out"
    result = emim("reconstruct", "--model", str(tiny_pretraining), "--mask", "modal", "--seed", "3", "--output",
                  str(out), "--device", "cpu", "--progress", "json", str(case.folder))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    outputs = [e for e in events if e["event"] == "output"]
    assert {(e["modality"], e["kind"]) for e in outputs} == {(m, k) for m in NAMES
                                                              for k in ("masked", "reconstruction", "mask")} | {
        (None, "report")}
    assert all(e["case"] == case.case_id and Path(e["path"]).is_file() for e in outputs)
    assert events[-1]["event"] == "done" and len(events[-1]["outputs"]) == 13
    report = json.loads((out / f"{case.case_id}.report.json").read_text())
    assert report["command"] == "reconstruct" and report["settings"]["seed"] == 3
    assert report["settings"]["mask"]["pattern"] == "modal" and len(report["model"]["sha256"]) == 64
    assert [i["modality"] for i in report["inputs"]] == list(NAMES) and set(report["seconds"]) == {"load",
                                                                                                    "inference"}

    for index, modality in enumerate(NAMES):
        source = nib.load(str(case.images[modality]))
        for kind in ("masked", "reconstruction", "mask"):
            image = _read(out, modality, kind)
            assert image.shape == source.shape
            assert np.array_equal(image.affine, source.affine)
    masks = np.stack([np.asarray(_read(out, m, "mask").dataobj) for m in NAMES])
    assert masks.dtype == np.uint8 and set(np.unique(masks)) <= {0, 1}
    fully_hidden = [bool(m.all()) for m in masks]
    assert sum(fully_hidden) == 1 and sum(bool(m.any()) for m in masks) == 1
    hidden = masks.astype(bool)
    for index, modality in enumerate(NAMES):
        masked = np.asarray(_read(out, modality, "masked").dataobj)
        reconstruction = np.asarray(_read(out, modality, "reconstruction").dataobj)
        visible = ~hidden[index]
        assert np.array_equal(reconstruction[visible], normalised[index][visible])
        assert np.array_equal(masked[visible], normalised[index][visible])
        assert not masked[hidden[index]].any()
    hidden_modality = fully_hidden.index(True)
    prediction = np.asarray(_read(out, NAMES[hidden_modality], "reconstruction").dataobj)
    assert np.isfinite(prediction).all() and not np.array_equal(prediction, normalised[hidden_modality])


def test_position_mask_is_reproducible_and_shared_by_modalities(tiny_pretraining, case, tmp_path):
    from emim.inference.reconstruct import load_reconstructor, reconstruct_case

    model = load_reconstructor(tiny_pretraining, "cpu")
    for folder in ("a", "b"):
        reconstruct_case(model, case, tmp_path / folder, "position", seed=5, batch_size=4)
    mask = np.stack([np.asarray(_read(tmp_path / "a", m, "mask").dataobj) for m in NAMES])
    assert all(np.array_equal(mask[0], layer) for layer in mask)  # same positions in every modality
    assert 0.3 < mask.mean() < 0.9  # position ratio 0.6 of each crop, crops partly outside the volume
    for modality in NAMES:
        for kind in ("masked", "reconstruction", "mask"):
            first = np.asarray(_read(tmp_path / "a", modality, kind).dataobj)
            again = np.asarray(_read(tmp_path / "b", modality, kind).dataobj)
            assert np.array_equal(first, again), (modality, kind)


def test_window_masks_follow_the_pattern():
    from emim.inference.reconstruct import window_masks

    patch = window_masks(6, 4, 64, MaskConfig("patch", patch_ratio=0.75), seed=1)
    assert patch.shape == (6, 4, 64) and (patch.sum(dim=2) == 48).all()
    assert not all(bool((patch[0] == patch[i]).all()) for i in range(1, 6))  # drawn per window
    modal = window_masks(6, 4, 64, MaskConfig("modal"), seed=1, hide=[2])
    assert modal[:, 2].all() and not modal[:, [0, 1, 3]].any()
    hybrid = MaskConfig("hybrid")
    assert (window_masks(6, 4, 64, hybrid, seed=9) == window_masks(6, 4, 64, hybrid, seed=9)).all()
    position = MaskConfig("position")
    assert not (window_masks(6, 4, 64, position, seed=5) == window_masks(6, 4, 64, position, seed=6)).all()


def test_refuses_a_checkpoint_without_a_decoder_and_a_bad_hide(tiny_pretraining, case, tmp_path):
    from emim.errors import EmimError
    from emim.inference.reconstruct import load_reconstructor, reconstruct_case
    from emim.train.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(tiny_pretraining / "checkpoints" / "last.pt")
    state["model"] = {k: v for k, v in state["model"].items() if k.startswith("encoder.")}
    run = tmp_path / "run"  # a copy of the shared run: its checkpoint loses the decoder
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text((tiny_pretraining / "config.json").read_text())
    encoder_only = save_checkpoint(run / "checkpoints" / "encoder-only.pt", state)
    with pytest.raises(EmimError, match="decoder"):
        load_reconstructor(encoder_only, "cpu")
    model = load_reconstructor(tiny_pretraining, "cpu")
    with pytest.raises(EmimError, match="t9"):
        reconstruct_case(model, case, tmp_path / "x", "modal", 0, hide="t9")
    assert not (tmp_path / "x").exists()


def test_exported_pretraining_model_reconstructs_like_its_run(tiny_pretraining, tmp_path):
    from emim.export import export_model
    from emim.inference.reconstruct import load_reconstructor, reconstruct_volume

    folder = export_model(tiny_pretraining, tmp_path / "model")
    from_run, from_model = load_reconstructor(tiny_pretraining, "cpu"), load_reconstructor(folder, "cpu")
    assert from_model.weights.spec.names == NAMES and from_model.weights.normalization == "zscore-nonzero"
    image = np.random.default_rng(0).normal(size=(4, 128, 64, 64)).astype(np.float32)  # two whole crops
    config = MaskConfig("patch")
    first = reconstruct_volume(from_run, image, config, seed=2)
    second = reconstruct_volume(from_model, image, config, seed=2)
    for kind in ("masked", "reconstruction", "mask"):
        assert first[kind].shape == image.shape and np.array_equal(first[kind], second[kind])
    assert first["mask"].mean() == pytest.approx(config.patch_ratio)  # the ratio holds in every crop
    visible = ~first["mask"]
    assert np.array_equal(first["reconstruction"][visible], image[visible])
