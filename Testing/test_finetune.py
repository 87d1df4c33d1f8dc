"""Segmentation fine-tuning on the real mini cases: pretrained encoder loading (proved tensor by tensor),
refusal of mismatched checkpoints, encoder freezing, stop + resume, validation Dice, and export to a model folder."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from support.stopping import StopAfterFirstStep

from emim.errors import EmimError
from emim.pretrained import load_pretrained_encoder
from emim.finetune.segmentation import (SegmentationTask, default_config, resume_finetuning,
                                        run_finetuning)
from emim.model.unetr import EMIMUNETR
from emim.progress import Progress
from emim.train.checkpoint import load_checkpoint
from emim.train.runfolder import read_metrics
from emim.train.trainer import TrainSettings

STEPS = 2


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _finetune_config(data, **changes):
    config = default_config(str(data), "tiny")
    settings = TrainSettings(steps=STEPS, lr=1e-3, warmup_steps=1, log_every=1, eval_every=100, checkpoint_every=1)
    return replace(config, train=settings, feature_size=4, batch_size=1, val_cases=1, overlap=0.0, sw_batch_size=4,
                   device="cpu", **changes)


@pytest.fixture(scope="module")
def finetune_run(brats_mini, tiny_pretraining, tmp_path_factory):
    """Fine-tune from the pretraining run, stopped by SIGTERM after step 1 and resumed to the end."""
    run_dir = tmp_path_factory.mktemp("finetune") / "run"
    config = _finetune_config(brats_mini, pretrained=str(tiny_pretraining), freeze_encoder_steps=1)
    first, second = io.StringIO(), io.StringIO()
    run_finetuning(config, run_dir, progress=StopAfterFirstStep("json", stream=first))
    config_text = (run_dir / "config.json").read_text()
    stopped_at = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    resume_finetuning(run_dir, device="cpu", progress=Progress("json", stream=second))
    return {"dir": run_dir, "first": _events(first), "second": _events(second), "config_text": config_text,
            "stopped_at": stopped_at}


def test_pretrained_encoder_tensors_are_loaded_not_random(tiny_pretraining, finetune_run, brats_mini):
    checkpoint = load_checkpoint(tiny_pretraining / "checkpoints" / "last.pt")["model"]
    expected = {k[len("encoder."):]: v for k, v in checkpoint.items() if k.startswith("encoder.")}
    model = EMIMUNETR(_finetune_config(brats_mini).model, 3, 4)
    fresh = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    assert set(fresh) == set(expected)
    assert not torch.equal(fresh["patch_embed.weight"], expected["patch_embed.weight"])
    assert not torch.equal(fresh["blocks.0.attn.qkv.weight"], expected["blocks.0.attn.qkv.weight"])

    count, source = load_pretrained_encoder(model.encoder, model.config, tiny_pretraining)
    loaded = model.encoder.state_dict()
    assert count == len(expected) > 0 and "step 2" in source
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    # the run itself says how many tensors it took, in its start event and its log
    start = next(e for e in finetune_run["first"] if e["event"] == "start")
    assert start["pretrained_tensors"] == len(expected)
    assert f"loaded {len(expected)} encoder tensors" in (finetune_run["dir"] / "train.log").read_text()


def test_checkpoint_with_other_modalities_or_width_is_refused(tiny_pretraining, brats_mini, tmp_path):
    three = _finetune_config(brats_mini)
    three = replace(three, model=replace(three.model, modalities=("t1n", "t1c", "t2w")))
    with pytest.raises(EmimError, match=r"modalities \['t1n', 't1c', 't2w', 't2f'\].*\['t1n', 't1c', 't2w'\]"):
        load_pretrained_encoder(EMIMUNETR(three.model, 3, 4).encoder, three.model, tiny_pretraining)
    narrow = _finetune_config(brats_mini)
    narrow = replace(narrow, model=replace(narrow.model, embed_dim=48), pretrained=str(tiny_pretraining))
    with pytest.raises(EmimError, match="embed_dim 96 .* but 48"):
        run_finetuning(narrow, tmp_path / "run", progress=Progress("none"))
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_frozen_encoder_gets_no_gradient_until_the_freeze_ends(brats_mini):
    config = _finetune_config(brats_mini)
    model = EMIMUNETR(replace(config.model, crop_size=(32, 32, 32)), 3, 4)
    task = SegmentationTask(model, config.regions, [], freeze_encoder_steps=2, overlap=0.0, sw_batch_size=1)
    batch = {"image": torch.randn(1, 4, 32, 32, 32), "label": torch.randint(0, 4, (1, 1, 32, 32, 32),
                                                                           dtype=torch.uint8)}
    for step, encoder_trains in ((1, False), (2, True)):
        model.zero_grad(set_to_none=True)
        loss, logs = task.loss(model, batch, step)
        loss.backward()
        assert {"dice_loss", "bce_loss"} <= set(logs)
        assert all((p.grad is not None) == encoder_trains for p in model.encoder.parameters())
        assert model.head.conv.conv.weight.grad is not None


def test_stopped_run_resumes_and_validates_each_region(finetune_run):
    run_dir = finetune_run["dir"]
    assert finetune_run["stopped_at"] == 1
    assert any(e["event"] == "warning" and "resume" in e["message"] for e in finetune_run["first"])
    progress = [e["step"] for e in finetune_run["second"] if e["event"] == "progress"]
    assert progress == [2]
    assert (run_dir / "config.json").read_text() == finetune_run["config_text"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == STEPS
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, STEPS]
    for record in evals:
        dice = [record[f"val_dice_{name}"] for name in ("TC", "WT", "ET")]
        assert all(0.0 <= d <= 1.0 for d in dice)
        assert record["val_dice_mean"] == pytest.approx(sum(dice) / 3)
    cases = json.loads((run_dir / "cases.json").read_text())
    assert len(cases["train"]) == 2 and len(cases["validation"]) == 1


def test_export_of_both_runs_loads_as_model_folders(finetune_run, tiny_pretraining, tmp_path):
    from emim.export import export_model
    from emim.inference.segmentation_model import load_segmentation_model
    from emim.modelfile import load_model

    folder = export_model(finetune_run["dir"], tmp_path / "seg")
    state, metadata = load_model(folder)
    checkpoint = load_checkpoint(finetune_run["dir"] / "checkpoints" / "last.pt")["model"]
    assert set(state) == set(checkpoint) and all(torch.equal(state[k], checkpoint[k]) for k in state)
    assert metadata["task"] == "segmentation"
    assert [r["name"] for r in metadata["regions"]] == ["TC", "WT", "ET"]
    assert [label["value"] for label in metadata["labels"]] == [1, 2, 3]
    assert [m["name"] for m in metadata["modalities"]] == ["t1n", "t1c", "t2w", "t2f"]
    assert all(m["patterns"] for m in metadata["modalities"])
    last_eval = [r for r in read_metrics(finetune_run["dir"] / "metrics.jsonl") if r["kind"] == "eval"][-1]
    assert metadata["provenance"]["steps"] == STEPS
    assert metadata["provenance"]["validation"]["val_dice_WT"] == pytest.approx(last_eval["val_dice_WT"])
    assert load_segmentation_model(folder, "cpu").network.feature_size == 4
    with pytest.raises(EmimError, match="--force"):
        export_model(finetune_run["dir"], folder)

    state, metadata = load_model(export_model(tiny_pretraining, tmp_path / "pre"))
    assert metadata["task"] == "pretraining"
    assert any(k.startswith("decoder.") for k in state) and not any(k.startswith("pbt.") for k in state)


def test_command_line_options_reach_the_config(brats_mini):
    from emim.cli import build_parser
    from emim.commands.finetune import config_from_args

    args = build_parser(only="finetune").parse_args(
        ["finetune", str(brats_mini), "--run", "r", "--steps", "7", "--freeze-encoder-steps", "3", "--val-cases",
         "2", "--pretrained", "p", "--feature-size", "12", "--crop", "32"])
    config = config_from_args(args)
    assert (config.train.steps, config.freeze_encoder_steps, config.val_cases, config.pretrained,
            config.feature_size, config.model.crop_size) == (7, 3, 2, "p", 12, (32, 32, 32))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_torchrun_two_processes_fine_tune_validate_and_checkpoint_once(tmp_path):
    """The torchrun plumbing (one writer, one checkpoint, validation on rank 0) on three small generated cases."""
    import os
    import subprocess
    import sys

    from emim.sample import make_sample_cases

    make_sample_cases(tmp_path / "cases", 3, seed=11, size="small")
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "emim", "finetune", str(tmp_path / "cases"), "--run-dir", str(run_dir), "--steps", "3",
               "--device", "cpu", "--progress", "none", "--batch-size", "1", "--eval-every", "3", "--val-cases", "1",
               "--feature-size", "4", "--val-overlap", "0"]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in (run_dir / "checkpoints").glob("*.pt")] == ["last.pt"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 3
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == [3]  # one writer: rank 0
    evaluations = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evaluations] == [0, 3]  # before training and at --eval-every, once each
    assert all({"val_dice_TC", "val_dice_WT", "val_dice_ET"} <= set(r) for r in evaluations)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_a_bad_case_on_one_rank_stops_both_ranks_at_once_with_its_message(tmp_path):
    """Each rank checks only its own shard: the rank that finds a label no region covers stops with the message,
    and the other stops too, saying why (without it, torchrun's agent killed it mid-way)."""
    import nibabel as nib

    from test_cache import write_cases

    data = write_cases(tmp_path / "data", 3)
    bad = data / "case001" / "case001-seg.nii.gz"  # rank 1's case of three: every second one from case000
    label = np.asarray(nib.load(bad).dataobj).copy()
    label[label == 2] = 7
    nib.save(nib.Nifti1Image(label, np.eye(4)), str(bad))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29551",
               "-m", "emim", "finetune", str(data), "--run-dir", str(tmp_path / "run"), "--modalities", "t1n,t2w",
               "--steps", "2", "--val-cases", "0", "--device", "cpu", "--progress", "none"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    assert "case case001" in result.stderr and "values [7]" in result.stderr
    assert "another torchrun rank found a problem" in result.stderr


def test_validation_cases_default_to_a_fifth_of_the_data_within_bounds():
    from emim.finetune.segmentation import auto_val_cases

    assert [auto_val_cases(n) for n in (1, 2, 9, 10, 19, 30, 1000)] == [0, 1, 1, 2, 3, 4, 4]
