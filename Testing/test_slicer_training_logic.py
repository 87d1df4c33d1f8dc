"""EMIMTraining Logic on real MRML (slicer-core) with real engine runs on the real BraTS mini cases.

One short `tiny` pretraining is started, watched, stopped and resumed (module fixture, ~40 s on 2 busy cores);
the tests below check what it left: live tables and charts, the stop checkpoint, the resumed steps, the warnings.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from support.slicer_scene import REPO, slicer, slicer_app  # noqa: F401  (fixture)

if str(REPO / "EMIMTraining") not in sys.path:
    sys.path.insert(0, str(REPO / "EMIMTraining"))

from EMIMCommonLib.headless import bootstrap  # noqa: E402
from EMIMSegmentationLib.logic import SegmentationLogic  # noqa: E402
from EMIMTrainingLib.errors import EMIMTrainingError  # noqa: E402
from EMIMTrainingLib.logic import TrainingLogic  # noqa: E402
from EMIMTrainingLib.settings import (DEFAULTS, START_MODEL, START_NOTHING, START_PRETRAINING,  # noqa: E402
                                      TrainingSettings, training_command)
from emim.contract import FINETUNE, FINETUNE_CLASSIFIER, PRETRAIN, STARTER_PRETRAINING  # noqa: E402
from EMIMTrainingLib.training_job import STOPPED  # noqa: E402

STEPS = 100  # long enough that the test can stop it part-way (after step 10), even on a quiet machine (~30 ms a step)
TIMEOUT_S = 240


def _poll_until(job, condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert not job.poll() or condition(), f"the run ended before {what}: {job.state} {job.error}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _tiny_settings(data: Path, run: Path, steps: int = STEPS) -> TrainingSettings:
    return TrainingSettings(task=PRETRAIN, data=str(data), run=str(run), preset="tiny", crop="32", batch_size=1,
                            steps=steps, device="cpu", log_every=1, eval_every=10, checkpoint_every=20)


@pytest.fixture(scope="module")
def pretraining(brats_mini, tmp_path_factory):
    """Start, watch (recording table sizes while it runs), stop, then resume to the end; returns observations."""
    app = bootstrap()
    logic = TrainingLogic()
    run = tmp_path_factory.mktemp("training") / "run"
    logs: list[str] = []
    job = logic.start(_tiny_settings(brats_mini, run), logCallback=logs.append)
    seen_rows = []

    def enough() -> bool:
        rows = job.metrics.tables["train"].GetNumberOfRows() if "train" in job.metrics.tables else 0
        if not seen_rows or rows != seen_rows[-1]:
            seen_rows.append(rows)
        return rows >= 3 and "eval" in job.metrics.tables

    _poll_until(job, enough, "three logged steps")
    running_text = job.progress_text()
    tree = [job.process.pid] + [p.pid for p in psutil.Process(job.process.pid).children(recursive=True)]
    state_while_running = job.state
    logic.stop(job, grace_s=120)
    stopped = {"state": job.state, "checkpoint_step": job.checkpoint_step, "tree": tree,
               "train_steps": job.metrics.column("train", "step"), "running_text": running_text,
               "seen_rows": seen_rows, "state_while_running": state_while_running,
               "charts": {k: c.GetNumberOfPlotSeriesNodes() for k, c in job.metrics.charts.items()}}
    from emim.train.checkpoint import load_checkpoint

    stopped["saved"] = load_checkpoint(run / "checkpoints" / "last.pt")
    resumed = logic.resume(run, device="cpu", logCallback=logs.append)
    resumed.wait()
    yield {"logic": logic, "app": app, "run": run, "stopped": stopped, "resumed": resumed, "logs": logs}
    app.close()


def test_tables_and_charts_fill_while_the_run_goes(pretraining):
    stopped = pretraining["stopped"]
    assert stopped["state_while_running"] == "running"
    assert len(stopped["seen_rows"]) >= 2 and stopped["seen_rows"] == sorted(stopped["seen_rows"])
    assert stopped["running_text"].startswith("Step ")
    # the pretraining charts: losses, PBT per level, collapse panel, effective rank per level
    assert stopped["charts"]["loss"] >= 3 and stopped["charts"]["pbt"] == 4 and stopped["charts"]["rank"] == 4
    assert stopped["charts"]["collapse"] == 3
    follower = pretraining["resumed"].metrics
    for chart in follower.charts.values():
        for index in range(chart.GetNumberOfPlotSeriesNodes()):
            series = chart.GetNthPlotSeriesNode(index)
            table = series.GetTableNode()
            assert table is not None and table.GetTable().GetColumnByName(series.GetYColumnName()) is not None
    records = [json.loads(line) for line in (pretraining["run"] / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert follower.column("train", "step") == [float(r["step"]) for r in train]
    assert follower.column("train", "rec_loss") == pytest.approx([r["rec_loss"] for r in train])
    evals = [r for r in records if r["kind"] == "eval"]
    assert follower.column("eval", "effective_rank_level4") == pytest.approx([r["effective_rank"][3] for r in evals])
    assert follower.tables["spectrum"].GetNumberOfRows() == len(evals[-1]["spectrum"][0])


def test_stop_ends_the_process_tree_and_leaves_a_usable_checkpoint(pretraining):
    stopped = pretraining["stopped"]
    assert stopped["state"] == STOPPED
    for pid in stopped["tree"]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    saved = stopped["saved"]
    # the engine saved at the step it had reached when asked to stop, not only at the periodic checkpoints
    assert saved["step"] == stopped["checkpoint_step"] == int(stopped["train_steps"][-1])
    assert 3 <= saved["step"] < STEPS
    from emim.config import ModelConfig
    from emim.pretrain.model import EMIMPretrainer

    config = json.loads((pretraining["run"] / "config.json").read_text())
    model = EMIMPretrainer(ModelConfig.from_dict(config["model"]), config["pbt_levels"], config["pbt_weight"],
                           config["pbt_off_diagonal"])
    model.load_state_dict(saved["model"])  # strict: every tensor present with its shape


def test_resume_continues_at_the_saved_step(pretraining):
    resumed, saved_step = pretraining["resumed"], pretraining["stopped"]["saved"]["step"]
    assert resumed.state == "succeeded", resumed.error
    assert resumed.resumed_step == saved_step
    steps = resumed.metrics.column("train", "step")
    assert steps == [float(s) for s in range(1, STEPS + 1)]  # rebuilt after the engine trimmed the file: no repeats
    from emim.train.checkpoint import load_checkpoint

    assert load_checkpoint(pretraining["run"] / "checkpoints" / "last.pt")["step"] == STEPS
    assert any(f"resumed at step {saved_step}" in line for line in pretraining["logs"])


def test_follower_reads_only_complete_new_lines_and_rebuilds_after_a_rewrite(slicer_app, pretraining, tmp_path):
    """The engine's own records, written the way the engine writes them: appended, half-written, then trimmed."""
    from EMIMTrainingLib.metrics_tables import MetricsFollower

    lines = (pretraining["run"] / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    steps = lambda chunk: [float(json.loads(line)["step"]) for line in chunk if b'"train"' in line]  # noqa: E731
    run = tmp_path / "watched"
    run.mkdir()
    metrics = run / "metrics.jsonl"
    follower = MetricsFollower(run)
    assert follower.poll() == 0 and follower.tables == {}
    metrics.write_bytes(b"".join(lines[:5]) + lines[5][:20])
    assert follower.poll() == 5
    with metrics.open("ab") as handle:
        handle.write(lines[5][20:] + lines[6])
    assert follower.poll() == 2 and follower.column("train", "step") == steps(lines[:7])
    metrics.write_bytes(b"".join(lines[:3]))  # what --resume does: drop the records after the checkpoint
    with metrics.open("ab") as handle:
        handle.write(b"".join(lines[3:]))
    follower.poll()
    assert follower.column("train", "step") == steps(lines)  # same bytes again: nothing doubled
    metrics.write_bytes(b"".join(lines[:3]) + lines[8])  # a shorter file with other content
    follower.poll()
    assert follower.column("train", "step") == steps(lines[:3] + [lines[8]])


def test_collapse_warnings_are_explained(pretraining):
    logged = [line for line in (pretraining["run"] / "train.log").read_text().splitlines() if "WARNING" in line]
    warnings = pretraining["logic"].runWarnings(pretraining["run"])
    assert len(warnings) == len(logged)
    for warning in warnings:
        assert warning.kind in ("complete-collapse", "dimensional-collapse") and warning.advice
        assert f"Step {warning.step}:" in warning.text()


def test_chart_picture_from_the_plot_nodes(pretraining, tmp_path):
    follower = pretraining["resumed"].metrics
    path = pretraining["logic"].renderCharts(follower, tmp_path / "charts.png")
    import vtk

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    width, height, _ = reader.GetOutput().GetDimensions()
    charts = len(follower.ordered_charts())
    assert (width, height) == (2 * 640, -(-charts // 2) * 400)
    low, high = reader.GetOutput().GetScalarRange()
    assert low < 100 and high == 255  # lines and text drawn on white


def test_a_broken_case_stops_the_start_naming_case_and_fix(slicer_app, brats_mini, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    cases = sorted(p for p in brats_mini.iterdir() if p.is_dir())
    for case in cases[:2]:
        (data / case.name).symlink_to(case, target_is_directory=True)
    broken = data / "BraTS-GLI-99999-000"
    broken.mkdir()
    for image in sorted(cases[2].glob("*.nii.gz")):
        if not image.name.endswith(("-t2f.nii.gz", "-seg.nii.gz")):
            os.symlink(image, broken / image.name.replace(cases[2].name, broken.name))
    logic = TrainingLogic()
    report = logic.checkData(data)
    assert not report.ok
    problem = next(p for c in report.cases if c["case_id"] == broken.name for p in c["problems"])
    run = tmp_path / "run"
    with pytest.raises(EMIMTrainingError) as raised:
        logic.start(_tiny_settings(data, run))
    message = str(raised.value)
    assert broken.name in message and problem["fix"] in message
    assert all(case.name not in message for case in cases[:2])
    assert not run.exists()
    table = logic.dataTable(report)
    rows = {table.GetCellText(r, 0): table.GetCellText(r, 1) for r in range(table.GetNumberOfRows())}
    assert rows[broken.name] == "cannot be used" and rows[cases[0].name] == "usable"


def test_the_check_step_reports_the_collapse_risk_per_mask_pattern(slicer_app, brats_mini):
    logic = TrainingLogic()
    rows = logic.collapseReport(brats_mini / sorted(p.name for p in brats_mini.iterdir() if p.is_dir())[0])
    assert [r["pattern"] for r in rows] == ["patch", "position", "modal"]
    table = logic.collapseTable(rows)
    assert table.GetNumberOfRows() == 3 and table.GetColumnName(6) == "Verdict"
    assert table.GetCellText(1, 0) == "position" and table.GetCellText(1, 6).startswith(("ok", "weak", "risk"))


def test_settings_refuse_an_existing_run_and_multi_gpu_uses_torchrun(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    settings = TrainingSettings(task=PRETRAIN, data=str(tmp_path), run=str(tmp_path / "run"))
    with pytest.raises(EMIMTrainingError, match="already holds a run"):
        settings.arguments()
    command = training_command("pretrain", ["DATA", "--run", "RUN"], gpus=4)
    assert command[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4", "-m"]
    # torchrun's own parser must hand the engine exactly its arguments (an unguarded `--run` is refused by it)
    from torch.distributed.run import get_args_parser

    parsed = get_args_parser().parse_args(command[3:])
    assert (parsed.nproc_per_node, parsed.module, parsed.training_script) == ("4", True, "emim")
    assert parsed.training_script_args == ["pretrain", "DATA", "--run", "RUN", "--progress", "json"]
    from emim.cli import build_parser

    engine = build_parser(only="pretrain").parse_args(parsed.training_script_args)
    assert (engine.command, engine.data, engine.run, engine.progress) == ("pretrain", "DATA", "RUN", "json")


def _cropped_cases(brats_mini: Path, out: Path, size=(64, 64, 48)) -> Path:
    """The real cases cut to a box around each tumour (nibabel keeps the affine right), so that fine-tuning's
    whole-case validation and the segmentation run in seconds on CPU."""
    import nibabel as nib
    import numpy as np

    for case in sorted(p for p in brats_mini.iterdir() if p.is_dir()):
        (out / case.name).mkdir(parents=True)
        label = nib.load(next(case.glob("*-seg.nii.gz")))
        centre = np.argwhere(np.asarray(label.dataobj) > 0).mean(axis=0).round().astype(int)
        start = [int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, size, label.shape)]
        box = tuple(slice(b, b + s) for b, s in zip(start, size))
        for image in case.glob("*.nii.gz"):
            nib.save(nib.load(image).slicer[box], out / case.name / image.name)
    return out


def test_finetuning_from_the_checkpoint_gives_a_model_that_segmentation_uses(slicer_app, pretraining, brats_mini,
                                                                             tmp_path):
    """Fine-tune from the stopped-and-resumed pretraining, export, hand off, segment a real case in MRML."""
    from emim.cli import COMMANDS

    if not {"finetune", "export", "segment"} <= set(COMMANDS):
        pytest.skip("emim finetune/export/segment are not registered yet")
    logic = pretraining["logic"]
    data = _cropped_cases(brats_mini, tmp_path / "cases")
    settings = TrainingSettings(task=FINETUNE, data=str(data), run=str(tmp_path / "finetune"), preset="tiny",
                                crop="32", batch_size=1, steps=2, device="cpu", log_every=1, eval_every=2,
                                checkpoint_every=2, start_from=START_PRETRAINING, pretrained=str(pretraining["run"]),
                                val_cases=1)
    job = logic.start(settings, waitForCompletion=True)
    assert job.state == "succeeded", job.error
    assert job.metrics.charts["validation"].GetNumberOfPlotSeriesNodes() >= 3  # TC, WT, ET (and the mean)
    assert len(job.metrics.column("eval", "val_dice_WT")) >= 1
    assert "pbt" not in job.metrics.charts  # a fine-tuning run shows no pretraining charts
    model = logic.exportModel(tmp_path / "finetune", tmp_path / "model")
    metadata = json.loads((model / "metadata.json").read_text())
    assert metadata["task"] == "segmentation" and metadata["provenance"]["pretrained"] == str(pretraining["run"])
    log = (tmp_path / "finetune" / "train.log").read_text().splitlines()
    loaded = [line for line in log if "encoder tensors" in line]
    assert loaded and "checkpoints/last.pt" in loaded[0]  # the encoder really came from the pretraining checkpoint
    segmentation_logic = logic.handOff(model, SegmentationLogic())
    case = sorted(p for p in data.iterdir() if p.is_dir())[0]
    inputs = segmentation_logic.loadCase(case, model)
    result = segmentation_logic.segment(inputs, model, device="cpu", waitForCompletion=True)
    segments = result.GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())] == \
        [label["name"] for label in metadata["labels"]]


def test_batch_script_follows_a_resumed_run_and_draws_its_charts(pretraining, tmp_path):
    """Plain Python on slicer-core runs the batch script; resuming a finished run ends at once with its charts."""
    import subprocess

    charts = tmp_path / "charts.png"
    result = subprocess.run([sys.executable, str(REPO / "EMIMTraining" / "EMIMTrainingBatch.py"), "--run",
                             str(pretraining["run"]), "--resume", "--device", "cpu", "--charts", str(charts)],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed at step {STEPS} of {STEPS}" in result.stdout
    assert charts.is_file() and charts.stat().st_size > 10_000


@pytest.mark.parametrize("task", [PRETRAIN, FINETUNE, FINETUNE_CLASSIFIER])
def test_each_task_with_default_settings_gives_a_command_line_the_engine_accepts(task, tmp_path):
    """The panel's defaults (validation cases left to the engine) must parse as the engine's own command line for
    every task: a fine-tuning once got the classifier's --labels and was refused."""
    from emim.cli import build_parser

    labels = tmp_path / "labels.csv" if task == FINETUNE_CLASSIFIER else ""  # the classifier's one required knob
    settings = TrainingSettings(task=task, data=str(tmp_path), run=str(tmp_path / "run"), labels_csv=str(labels))
    command = training_command(task, settings.arguments())
    parsed = build_parser(task).parse_args(command[3:])
    assert parsed.run == str(tmp_path / "run")
    # steps and intervals are left to the engine's recipe, so the panel and `emim TASK` start the same run
    assert not {"--steps", "--eval-every", "--checkpoint-every"} & set(command)
    required = ["--labels", str(labels)] if task == FINETUNE_CLASSIFIER else []
    engine = build_parser(task).parse_args([task, str(tmp_path), "--run", "r", *required])
    assert (parsed.steps, parsed.eval_every, parsed.checkpoint_every) == (
        engine.steps, engine.eval_every, engine.checkpoint_every)
    assert (task == FINETUNE) == hasattr(parsed, "val_cases") and getattr(parsed, "val_cases", None) is None


def test_modality_dropout_reaches_the_segmentation_fine_tuning_and_is_checked(tmp_path):
    """The panel's and batch script's modality dropout becomes the engine's --modality-dropout (#16)."""
    from emim.cli import build_parser

    settings = TrainingSettings(task=FINETUNE, data=str(tmp_path), run=str(tmp_path / "run"), modality_dropout=0.5)
    parsed = build_parser(FINETUNE).parse_args(training_command(FINETUNE, settings.arguments())[3:])
    assert parsed.modality_dropout == 0.5
    settings.modality_dropout = 1.5
    assert settings.problems() == ["Modality dropout is a probability between 0 and 1."]


@pytest.mark.parametrize("task, start_from, engine_start", [
    (PRETRAIN, START_NOTHING, []), (PRETRAIN, START_PRETRAINING, ["--init", STARTER_PRETRAINING]),
    (FINETUNE, START_NOTHING, []), (FINETUNE, START_MODEL, ["--init", "EMIM-starter-tiny-dropout"]),
    (FINETUNE_CLASSIFIER, START_NOTHING, [])])
def test_the_panels_defaults_start_the_run_the_engine_would(task, start_from, engine_start, tmp_path):
    """The panel's and batch script's default settings resolve to the same run configuration as `emim TASK` with
    only the data, the run folder and what it starts from: sizes, steps, intervals, masks, PBT, dropout, fractions.
    (Starting from a dropout model keeps its modality dropout; the size comes from the model.)"""
    from dataclasses import replace

    from EMIMCommonLib.sample_data import sample_case_folder
    from emim.cli import build_parser
    from emim.commands import finetune, finetune_classifier, pretrain

    data = str(sample_case_folder().parent)
    required = ["--labels", str(tmp_path / "labels.csv")] if task == FINETUNE_CLASSIFIER else []
    settings = replace(DEFAULTS, task=task, data=data, run=str(tmp_path / "run"), start_from=start_from,
                       pretrained=engine_start[1] if engine_start else "", labels_csv=" ".join(required[1:]))
    config_from_args = {PRETRAIN: pretrain, FINETUNE: finetune, FINETUNE_CLASSIFIER: finetune_classifier}[
        task].config_from_args
    parser = build_parser(task)
    panel = config_from_args(parser.parse_args(training_command(task, settings.arguments())[3:]))
    engine = config_from_args(parser.parse_args([task, data, "--run", str(tmp_path / "run"), *engine_start,
                                                 *required, "--device", DEFAULTS.device]))
    assert panel == engine
