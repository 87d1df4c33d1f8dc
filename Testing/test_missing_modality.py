"""Segmenting a case that lacks a sequence: a model fine-tuned with modality dropout takes any subset, on the exact
input grid, and says what was missing; a model without it refuses, naming the sequence and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emim.errors import EmimError
from emim.finetune.modality_dropout import draw_present, zero_absent
from support.segmenting import segment
from emim.inference.segmentation_model import load_segmentation_model
from emim.progress import Progress

from conftest import SMALLEST_CASE

CASE = SMALLEST_CASE
MODALITIES = ("t1n", "t1c", "t2w", "t2f")


class Recorder(Progress):
    def __init__(self) -> None:
        super().__init__("none")
        self.events: list[dict] = []

    def event(self, event: str, **fields) -> None:
        self.events.append({"event": event, **fields})


def test_dropout_draws_a_proper_non_empty_subset_reproducibly():
    draws = [draw_present(4, 1.0, 0, 0, step) for step in range(40)]
    assert all(d is not None and 1 <= len(d) <= 3 and d == sorted(set(d)) for d in draws)
    assert len({tuple(d) for d in draws}) > 5 and draws == [draw_present(4, 1.0, 0, 0, s) for s in range(40)]
    assert draws != [draw_present(4, 1.0, 0, 1, s) for s in range(40)]  # ranks draw their own
    assert draw_present(4, 0.0, 0, 0, 3) is None
    image = np.ones((1, 4, 2, 2, 2), np.float32)
    import torch

    zeroed = zero_absent(torch.from_numpy(image), [0, 2])
    assert zeroed[0, :, 0, 0, 0].tolist() == [1.0, 0.0, 1.0, 0.0] and image.all()


@pytest.mark.parametrize("missing", MODALITIES)
def test_a_dropout_model_segments_each_three_sequence_version_of_a_real_case(dropout_model, brats_mini, tmp_path,
                                                                            missing):
    model = load_segmentation_model(dropout_model, "cpu")
    assert model.metadata["inference"]["missing_modalities"]["supported"] is True
    progress = Recorder()
    label_path = segment(model, brats_mini / CASE, tmp_path, overlap=0.0, progress=progress, single=False,
                         missing=[missing])
    reference = nib.load(brats_mini / CASE / f"{CASE}-{next(m for m in MODALITIES if m != missing)}.nii.gz")
    label = nib.load(label_path)
    assert label.shape == reference.shape and np.allclose(label.affine, reference.affine)
    assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3}
    output = next(e for e in progress.events if e["event"] == "output" and e["kind"] == "label")
    assert output["missing"] == [missing]
    assert any(e["event"] == "warning" and e.get("missing") == [missing] for e in progress.events)
    report = json.loads((tmp_path / f"{CASE}.report.json").read_text())
    assert report["settings"]["missing_modalities"] == [missing]
    assert missing not in [entry["modality"] for entry in report["inputs"]]


def test_a_case_without_a_file_for_a_sequence_is_segmented_by_a_dropout_model(dropout_model, brats_mini, tmp_path):
    case = tmp_path / CASE
    case.mkdir()
    for modality in ("t1n", "t1c", "t2w"):  # no FLAIR file at all
        (case / f"{CASE}-{modality}.nii.gz").symlink_to(brats_mini / CASE / f"{CASE}-{modality}.nii.gz")
    progress = Recorder()
    label = segment(dropout_model, case, tmp_path / "out", overlap=0.0, device="cpu", progress=progress,
                    single=False)
    assert nib.load(label).shape == nib.load(case / f"{CASE}-t1n.nii.gz").shape
    assert next(e for e in progress.events if e.get("kind") == "label")["missing"] == ["t2f"]


def test_a_model_without_dropout_refuses_a_missing_sequence_and_says_what_to_do(tiny_segmentation_model,
                                                                                 brats_mini, tmp_path):
    with pytest.raises(EmimError, match=r"without t2f.*--modality-dropout"):
        segment(tiny_segmentation_model, brats_mini / CASE, tmp_path, device="cpu", single=False,
                missing=["t2f"])
    case = tmp_path / CASE
    case.mkdir()
    for modality in ("t1n", "t1c", "t2w"):
        (case / f"{CASE}-{modality}.nii.gz").symlink_to(brats_mini / CASE / f"{CASE}-{modality}.nii.gz")
    with pytest.raises(EmimError, match=r"missing t2f.*--modality-dropout"):
        segment(tiny_segmentation_model, case, tmp_path / "out", device="cpu", single=False)
    with pytest.raises(EmimError, match="no such modality"):
        segment(tiny_segmentation_model, brats_mini / CASE, tmp_path, device="cpu", missing=["dwi"])
    assert not list(tmp_path.glob("*.nii.gz"))


def test_fill_missing_synthesises_the_sequence_on_the_input_grid_for_a_model_without_dropout(
        tiny_segmentation_model, tiny_pretraining, brats_mini, tmp_path, emim):

    result = emim("segment", "--model", str(tiny_segmentation_model), "--fill-missing", str(tiny_pretraining),
                  "--missing", "t2f", "--overlap", "0", "--device", "cpu", "--progress", "json",
                  "--output", str(tmp_path / "out"), str(brats_mini / CASE))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    synthetic = next(e for e in events if e["event"] == "output" and e["kind"] == "synthetic")
    assert synthetic["modality"] == "t2f" and synthetic["units"] == "zscore-nonzero"
    path = tmp_path / "out" / f"{CASE}_synthetic_t2f.nii.gz"
    assert Path(synthetic["path"]) == path
    reference = nib.load(brats_mini / CASE / f"{CASE}-t1n.nii.gz")
    image, label = nib.load(path), nib.load(tmp_path / "out" / f"{CASE}.nii.gz")
    for output in (image, label):
        assert output.shape == reference.shape and np.allclose(output.affine, reference.affine)
    values = np.asarray(image.dataobj)
    inside = np.stack([np.asarray(nib.load(brats_mini / CASE / f"{CASE}-{m}.nii.gz").dataobj) != 0
                       for m in ("t1n", "t1c", "t2w")]).any(axis=0)
    assert np.isfinite(values).all() and not values[~inside].any() and values[inside].std() > 0
    report = json.loads((tmp_path / "out" / f"{CASE}.report.json").read_text())
    assert report["settings"]["missing_modalities"] == ["t2f"]
    filled_by = report["settings"]["filled_by"]
    assert filled_by["task"] == "pretraining" and len(filled_by["sha256"]) == 64
    assert str(path) in report["outputs"] and "synthesis" in report["seconds"]
    assert any(e["event"] == "warning" and "synthesised" in e["message"] for e in events)


def test_fill_missing_fills_two_sequences_and_refuses_a_pretraining_in_other_units(
        tiny_segmentation_model, tiny_pretraining, brats_mini, tmp_path):
    from dataclasses import replace

    from emim.inference.reconstruct import load_reconstructor

    filler = load_reconstructor(tiny_pretraining, "cpu")
    images = {m: brats_mini / CASE / f"{CASE}-{m}.nii.gz" for m in ("t1n", "t2f")}  # the API's {modality: file}
    segment(tiny_segmentation_model, images, tmp_path, overlap=0.0, device="cpu", single=False, fill=filler)
    made = sorted(tmp_path.glob("*_synthetic_*"))
    assert [p.name for p in made] == [f"{CASE}_synthetic_t1c.nii.gz", f"{CASE}_synthetic_t2w.nii.gz"]
    assert not np.array_equal(*(np.asarray(nib.load(p).dataobj) for p in made))  # one stand-in per sequence
    other_units = replace(filler, weights=replace(filler.weights, normalization="max"))
    with pytest.raises(EmimError, match="normalises intensities with max"):
        segment(tiny_segmentation_model, brats_mini / CASE, tmp_path / "x", device="cpu", single=False,
                missing=["t2f"], fill=other_units)
    assert not (tmp_path / "x").exists()
