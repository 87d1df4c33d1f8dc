"""E-MIM pretraining on the real mini cases: learning, diagnostics, crash + resume, and torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emim.pretrain.run import default_config, run_pretraining
from emim.progress import Progress
from emim.train.checkpoint import load_checkpoint
from emim.train.runfolder import read_metrics
from emim.train.trainer import TrainSettings

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _config(data: Path, steps: int, **train):
    config = default_config(str(data), "tiny")
    settings = {"steps": steps, "lr": 2e-3, "warmup_steps": 2, "log_every": 1, "eval_every": steps,
                "checkpoint_every": steps, **train}
    return config.__class__(**{**config.__dict__, "train": TrainSettings(**settings), "device": "cpu"})


def test_loss_falls_and_both_diagnostics_are_logged(brats_mini, tmp_path):
    run_dir = tmp_path / "run"
    checkpoint = run_pretraining(_config(brats_mini, 24), run_dir, progress=Progress("none"))
    records = read_metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == list(range(1, 25))
    # the loss on fixed held-out crops with fixed masks falls (training batches mix mask patterns, too noisy)
    assert evals[-1]["heldout_rec_loss"] < 0.99 * evals[0]["heldout_rec_loss"]
    # complete-collapse diagnostics beside the reconstruction loss, on training batches and the held-out crops
    assert {"collapsed_loss_global", "collapsed_loss_sample", "collapsed_loss_patch", "loss_ratio",
            "prediction_std"} <= set(train[-1])
    assert [r["step"] for r in evals] == [0, 24]
    assert evals[-1]["heldout_collapsed_loss_sample"] > 0
    # the same per mask pattern: held-out on fixed masks of each pattern, and on the training batches
    for pattern in ("patch", "position", "modal"):
        assert {f"heldout_{pattern}_rec_loss", f"heldout_{pattern}_collapsed_loss_sample",
                f"heldout_{pattern}_prediction_std"} <= set(evals[-1])
    assert any(f"{p}_loss_ratio" in r for r in train for p in ("patch", "position", "modal"))
    # dimensional-collapse diagnostics: effective rank and normalised spectrum per pyramid level
    assert len(evals[-1]["effective_rank"]) == 4 and all(1 <= r <= 96 for r in evals[-1]["effective_rank"])
    assert all(abs(sum(s) - 1) < 1e-4 for s in evals[-1]["spectrum"])
    state = load_checkpoint(checkpoint)
    assert state["step"] == 24
    assert json.loads((run_dir / "config.json").read_text())["mask"]["pattern"] == "hybrid"


def _pretrain_command(data: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "emim", "pretrain", str(data), "--run", str(run_dir), "--device", "cpu",
            "--progress", "json", *extra]


def test_killed_run_resumes_from_its_last_checkpoint_with_the_same_config(brats_mini, tmp_path):
    run_dir = tmp_path / "run"
    command = _pretrain_command(brats_mini, run_dir, "--steps", "24", "--checkpoint-every", "4", "--crop", "32",
                                "--batch-size", "1", "--eval-every", "1000", "--log-every", "2", "--lr", "1e-3")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=ENV)
    killed_after = None
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "checkpoint" and event["step"] >= 8:
            process.send_signal(signal.SIGKILL)  # a crash: no chance to save anything more
            killed_after = event["step"]
            break
    process.wait(timeout=60)
    assert killed_after is not None and process.returncode == -signal.SIGKILL
    config_before = (run_dir / "config.json").read_text()
    saved_step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert saved_step >= killed_after

    result = subprocess.run(_pretrain_command(brats_mini, run_dir, "--resume"), capture_output=True, text=True,
                            env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    progress_steps = [e["step"] for e in events if e["event"] == "progress"]
    assert progress_steps[0] > saved_step and progress_steps[-1] == 24
    assert (run_dir / "config.json").read_text() == config_before
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 24
    train_steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == 24


def test_sigterm_stops_cleanly_with_a_checkpoint(brats_mini, tmp_path):
    run_dir = tmp_path / "run"
    command = _pretrain_command(brats_mini, run_dir, "--steps", "500", "--checkpoint-every", "1000",
                                "--eval-every", "1000", "--log-every", "1")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=ENV)
    for line in process.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["step"] >= 3:
            process.send_signal(signal.SIGTERM)
            break
    remaining = process.stdout.read()
    assert process.wait(timeout=60) == 0
    step = load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
    assert 3 <= step < 500
    assert any(json.loads(l)["event"] == "checkpoint" for l in remaining.splitlines())


def test_a_finished_run_folder_is_not_overwritten(brats_mini, tmp_path):
    run_pretraining(_config(brats_mini, 1), tmp_path / "run", progress=Progress("none"))
    from emim.errors import EmimError

    with pytest.raises(EmimError, match="--resume"):
        run_pretraining(_config(brats_mini, 1), tmp_path / "run", progress=Progress("none"))


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_a_second_writer_on_a_live_run_folder_is_refused(tmp_path):
    from emim.train.runfolder import RunFolder

    holder = RunFolder(tmp_path / "run")
    command = [sys.executable, "-c", "import sys; from emim.train.runfolder import RunFolder; RunFolder(sys.argv[1])",
               str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode != 0 and "another process is already training into" in result.stderr
    del holder
    assert subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=60).returncode == 0


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_after_a_two_process_resume_each_rank_draws_the_masks_of_an_uninterrupted_run(brats_mini, tmp_path):
    """Two gloo ranks under torchrun: one run straight through 4 steps, which leaves one checkpoint (rank 0 writes
    it); one stopped after step 2 (SIGTERM, as Slicer's Stop) and resumed. Per rank, the masks of every step are the
    same in both, and the ranks' masks differ."""
    script = Path(__file__).parent / "support" / "mask_trace.py"

    def torchrun(run: str, masks: str, *mode: str, port: int) -> list[list]:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                   str(port), str(script), str(brats_mini), str(tmp_path / run), str(tmp_path / masks), *mode]
        result = subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return [json.loads((tmp_path / masks / f"rank{rank}.json").read_text()) for rank in (0, 1)]

    whole = torchrun("whole", "whole-masks", "fresh", port=29541)
    checkpoints = list((tmp_path / "whole" / "checkpoints").glob("*.pt"))
    assert [p.name for p in checkpoints] == ["last.pt"] and load_checkpoint(checkpoints[0])["step"] == 4
    first = torchrun("cut", "cut-masks", "stop-at", "1", port=29542)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 2
    resumed = torchrun("cut", "resumed-masks", "resume", port=29543)
    for rank in (0, 1):
        assert [step for step, _ in whole[rank]] == [0, 0, 1, 1, 2, 2, 3, 3]  # two masked views per step
        assert first[rank] == whole[rank][:4] and resumed[rank] == whole[rank][4:]
    assert whole[0] != whole[1] and resumed[0] != resumed[1]


def test_the_held_out_set_is_the_configured_number_of_crops_however_many_cases(tmp_path):
    from dataclasses import replace

    from test_cache import stored, write_cases

    data = write_cases(tmp_path / "data", 40)
    for heldout_cases, crops in ((0, 8), (30, 8), (30, 3)):
        config = replace(default_config(str(data), "tiny", ("t1n", "t2w")), batch_size=1, device="cpu",
                         heldout_cases=heldout_cases, heldout_crops=crops,
                         train=TrainSettings(steps=1, warmup_steps=0, eval_every=1000))
        run = tmp_path / f"run-{heldout_cases}-{crops}"
        run_pretraining(config, run, progress=Progress("none"))
        evaluations = [r for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "eval"]
        assert evaluations and all(r["heldout_crops"] == crops for r in evaluations)
    assert len(stored(tmp_path / "emim-cache")) == 40  # one entry per case, shared by the three runs
