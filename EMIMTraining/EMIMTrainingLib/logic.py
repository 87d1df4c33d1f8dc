"""The module's public Python API: check a data set, start / watch / stop / resume training, export and hand off.

Works on MRML only (no Qt), so it runs the same in Slicer's Python console, in batch scripts and in tests on
slicer-core. The engine runs as a child process (`python -m emim ...`, or torchrun for several GPUs); this process
never imports torch.

Python console session (inside Slicer)::

    logic = slicer.util.getModuleLogic("EMIMTraining")
    settings = TrainingSettings(task="pretrain", data="/data/brats", run="/runs/emim-1", preset="tiny", steps=200)
    job = logic.start(settings)                      # checks the data set first; returns at once
    job.poll(); job.progress_text()                  # 'Step 40 of 200 (20%), about 3 min left'; tables fill
    job.metrics.charts["loss"]                       # vtkMRMLPlotChartNode, show it in a plot view
    logic.stop(job)                                  # the engine saves a checkpoint at the current step
    job = logic.resume("/runs/emim-1")               # continues at the saved step
    model = logic.exportModel("/runs/emim-1", "/models/emim-1")
    logic.handOff(model)                             # EMIMSegmentation now uses this model

(`from EMIMTrainingLib.settings import TrainingSettings`.) In scripts, `logic.start(settings,
waitForCompletion=True)` blocks until the run ends and returns the finished job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from EMIMCommonLib.headless import running_in_slicer
from EMIMCommonLib.job import EngineJob, run_engine
from EMIMCommonLib.process import engine_command
from emim.contract import CONFIG_FILE, DEFAULT_PRESET, DEVICE_CHOICES, LAST_CHECKPOINT, METADATA_FILE, MODEL_OUTPUT

from .chart_render import render_charts_png
from .collapse_warnings import RunWarning, read_warnings
from .data_check import DataReport, check_data, collapse_report, collapse_table, report_table
from .errors import EMIMTrainingError
from .i18n import tr
from .metrics_tables import MetricsFollower
from .settings import TrainingSettings, training_command
from .training_job import TrainingJob

Log = Callable[[str], None]
Progress = Callable[[float], None]


class TrainingLogic:
    """Everything the GUI does, as plain methods; `slicer.mrmlScene` is the scene the tables and charts go to."""

    def checkData(self, data: str | Path, modalities: Sequence[str] = (), resample: bool = False,
                  logCallback: Log | None = None) -> DataReport:
        """The engine's per-case check of a data set folder or datalist JSON (blocks for a few seconds)."""
        return check_data(data, modalities, resample, logCallback)

    def dataTable(self, report: DataReport, table=None):
        """The check as a table node: one row per case, with its problems and their fixes."""
        return report_table(report, table)

    def collapseReport(self, data: str | Path, modalities: Sequence[str] = (), preset: str = DEFAULT_PRESET,
                       logCallback: Log | None = None) -> list[dict]:
        """Per mask pattern, whether a constant output would beat pretraining on this data (no training)."""
        return collapse_report(data, modalities, preset, logCallback)

    def collapseTable(self, rows: Sequence[dict], table=None):
        """The collapse report as a table node, one row per mask pattern with its verdict."""
        return collapse_table(rows, table)

    def start(self, settings: TrainingSettings, report: DataReport | None = None, waitForCompletion: bool = False,
              logCallback: Log | None = None, progressCallback: Progress | None = None,
              finishCallback: Callable[[TrainingJob], None] | None = None) -> TrainingJob:
        """Check the data set (unless a passing `report` of it is given), then start the run in the background.

        Refuses, naming each broken case and its fix, when any case cannot be used.
        """
        arguments = settings.arguments()
        if report is None or Path(report.path) != Path(settings.data):
            report = self.checkData(settings.data, settings.modalities, logCallback=logCallback)
        report.require_ok()
        command = training_command(settings.task, arguments, settings.gpus)
        return self._launch(command, Path(settings.run), waitForCompletion, logCallback, progressCallback,
                            finishCallback)

    def resume(self, run: str | Path, device: str = "auto", gpus: int = 1, waitForCompletion: bool = False,
               logCallback: Log | None = None, progressCallback: Progress | None = None,
               finishCallback: Callable[[TrainingJob], None] | None = None) -> TrainingJob:
        """Continue a stopped or crashed run from its last checkpoint with the settings it was started with."""
        if device not in DEVICE_CHOICES:
            raise EMIMTrainingError(tr("Device must be one of {choices}.").format(choices=", ".join(DEVICE_CHOICES)))
        config = self.runConfig(run)
        if not (Path(run) / LAST_CHECKPOINT).is_file():
            raise EMIMTrainingError(tr("The run {run} has no checkpoint yet, so there is nothing to resume; start it "
                                       "again as a new run.").format(run=run))
        command = training_command(config["command"], ["--run", str(run), "--resume", "--device", device], gpus)
        return self._launch(command, Path(run), waitForCompletion, logCallback, progressCallback, finishCallback)

    def stop(self, job: TrainingJob, grace_s: float = 120.0, wait: bool = True) -> None:
        """Ask the run to save a checkpoint at its current step and exit (kill after `grace_s`)."""
        job.stop(grace_s=grace_s, wait=wait)

    def follow(self, run: str | Path) -> MetricsFollower:
        """Tables and charts of any run folder (also one started elsewhere); call `.poll()` to refresh them."""
        follower = MetricsFollower(run)
        follower.poll()
        return follower

    def runConfig(self, run: str | Path) -> dict:
        """The run's config.json (what it was started with; `command` says which engine command made it)."""
        path = Path(run) / CONFIG_FILE
        if not path.is_file():
            raise EMIMTrainingError(tr("{run} is not a training run folder (it has no config.json); choose the "
                                       "folder given as the run's output.").format(run=run))
        return json.loads(path.read_text(encoding="utf-8"))

    def runWarnings(self, run: str | Path) -> list[RunWarning]:
        """Collapse and other warnings of the run, in plain language with what to change."""
        return read_warnings(run)

    def renderCharts(self, follower: MetricsFollower, path: str | Path, columns: int = 2) -> Path:
        """A PNG of the run's charts, drawn offscreen from the plot chart and table nodes."""
        return render_charts_png(follower.ordered_charts(), path, columns)

    def exportModel(self, run: str | Path, output: str | Path, waitForCompletion: bool = True,
                    logCallback: Log | None = None, progressCallback: Progress | None = None,
                    finishCallback=None):
        """`emim export RUN --out MODEL`: the model folder EMIMSegmentation reads (or an EngineJob)."""
        self.runConfig(run)
        output = Path(output)

        def finish(outputs: list[dict], done: dict) -> Path:
            models = [o for o in outputs if o.get("kind") == MODEL_OUTPUT]
            folder = Path(models[-1]["path"]) if models else output
            if not (folder / METADATA_FILE).is_file():
                raise EMIMTrainingError(tr("The export finished but {folder} holds no metadata.json; see the log.")
                                        .format(folder=folder))
            return folder

        job = run_engine(engine_command("export", [str(run), "--out", str(output)]), lambda process: EngineJob(
            process, output, finish, log=logCallback, progress=progressCallback, done=finishCallback,
            keep_workdir=True, error_type=EMIMTrainingError), waitForCompletion, logCallback)
        return job.result if waitForCompletion else job

    def handOff(self, model: str | Path, segmentationLogic=None):
        """Make EMIMSegmentation use `model`; returns its Logic (in Slicer, its panel shows the model).

        Outside Slicer (slicer-core, batch) pass the EMIMSegmentation Logic to use: this module does not import
        the other module's code, Slicer's module registry connects them."""
        if segmentationLogic is not None:
            return segmentationLogic
        if not running_in_slicer():
            raise EMIMTrainingError(tr("Outside 3D Slicer give handOff the EMIMSegmentation Logic to use "
                                       "(segmentationLogic=SegmentationLogic())."))
        import slicer

        logic = slicer.util.getModuleLogic("EMIMSegmentation")
        logic.getParameterNode().model = str(model)
        return logic

    def reconstructCase(self, model: str | Path, case: str | Path, mask: str = "hybrid", seed: int = 0,
                        device: str = "auto", logCallback: Log | None = None, segmentationLogic=None) -> dict:
        """For a pretraining model: load a case into the scene and show what the model rebuilds from a masked copy.

        Returns {"inputs": {modality: node}, "masked": {...}, "reconstruction": {...}, "mask": node}.
        """
        segmentation = self.handOff(model, segmentationLogic)
        inputs = segmentation.loadCase(case, model)
        result = segmentation.reconstruct(inputs, model, mask=mask, seed=seed, device=device,
                                          waitForCompletion=True, logCallback=logCallback)
        return {"inputs": inputs, **result}

    def _launch(self, command: list[str], run: Path, waitForCompletion: bool, logCallback, progressCallback,
                finishCallback) -> TrainingJob:
        return run_engine(command, lambda process: TrainingJob(
            process, run, metrics=MetricsFollower(run), log=logCallback, progress=progressCallback,
            done=finishCallback), waitForCompletion, logCallback)
