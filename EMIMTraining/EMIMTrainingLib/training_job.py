"""A running training: the shared EngineJob plus step/ETA, checkpoints, live metrics and a graceful stop.

Stop sends SIGTERM to the engine's root process only: the training loop catches it, writes a checkpoint at the
step it reached and exits (torchrun forwards the signal to its workers). Signalling the data-loader workers too
would make the loop fail before it saves. If the engine has not ended after `grace_s`, the whole tree is killed
(the last periodic checkpoint is then what is left). On Windows SIGTERM cannot be caught, so there stop always
falls back to the last periodic checkpoint.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from EMIMCommonLib.job import CANCELLED, FAILED, SUCCEEDED, EngineJob
from EMIMCommonLib.process import EngineProcess

from .errors import EMIMTrainingError
from .i18n import tr

STOPPED = "stopped"


class TrainingJob(EngineJob):
    """`poll()` from the caller's thread (GUI timer or script loop) also refreshes the metrics tables."""

    def __init__(self, process: EngineProcess, run_dir: Path, metrics=None, log: Callable[[str], None] | None = None,
                 progress: Callable[[float], None] | None = None, done: Callable[["TrainingJob"], None] | None = None,
                 finish: Callable[[list[dict], dict], object] | None = None) -> None:
        super().__init__(process, Path(run_dir), finish or (lambda outputs, done_event: Path(run_dir)), log=log,
                         progress=progress, done=done, keep_workdir=True, error_type=EMIMTrainingError)
        self.run_dir = Path(run_dir)
        self.metrics = metrics  # a MetricsFollower, or None
        self.step: int | None = None
        self.total: int | None = None
        self.eta_s: float | None = None
        self.elapsed_s: float | None = None
        self.resumed_step: int | None = None
        self.prepared: tuple[int, int] | None = None  # (cases, of total) in the preprocessing cache so far
        self.checkpoint_step: int | None = None
        self.stop_requested = False
        self._kill_at: float | None = None

    def poll(self) -> bool:
        if self._kill_at is not None and time.monotonic() > self._kill_at and not self.process.finished():
            self._log(tr("The engine did not stop in time; killing it. The last periodic checkpoint is kept."))
            self._kill_at = None
            self.process.cancel()
        over = super().poll()
        if self.metrics is not None:
            self.metrics.poll()
        return over

    def stop(self, grace_s: float = 120.0, wait: bool = True, interval_s: float = 0.2) -> None:
        """Ask the engine to save a checkpoint and exit; with `wait`, block (polling) until it has."""
        if self.state != "running" or self.stop_requested:
            return
        self.stop_requested = True
        self._log(tr("Stopping: the engine saves a checkpoint at the current step, then exits."))
        self.process.terminate()
        self._kill_at = time.monotonic() + grace_s
        while wait and not self.poll():
            time.sleep(interval_s)

    def progress_text(self) -> str:
        """"Step 40 of 1000 (4%), about 12 min left" from the latest progress event."""
        if (self.step is None or not self.total) and self.prepared is not None:
            return tr("Preparing the data: case {done} of {total}").format(done=self.prepared[0],
                                                                          total=self.prepared[1])
        if self.step is None or not self.total:
            return tr("Starting (loading the data and building the model)...")
        text = tr("Step {step} of {total} ({percent:.0f}%)").format(step=self.step, total=self.total,
                                                                   percent=100.0 * self.step / self.total)
        if self.eta_s is not None and self.step < self.total:
            text += ", " + tr("about {time} left").format(time=format_duration(self.eta_s))
        return text

    def _handle(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.step, self.total = event.get("step"), event.get("total")
            self.eta_s, self.elapsed_s = event.get("eta_s"), event.get("elapsed_s")
        elif kind == "cache" and event.get("total"):
            self.prepared = (int(event.get("done", 0)), int(event["total"]))
        elif kind == "checkpoint":
            self.checkpoint_step = event.get("step")
            self._log(tr("Checkpoint saved at step {step}.").format(step=self.checkpoint_step))
        elif kind == "start":
            if event.get("command") == "resume":
                self.resumed_step = event.get("step")
                self.step = event.get("step")
            elif event.get("total") is not None:
                self.total = event.get("total")
        super()._handle(event)

    def _conclude(self) -> None:
        done, self._done = self._done, None
        super()._conclude()
        if self.stop_requested and self.state in (SUCCEEDED, CANCELLED, FAILED):
            self.state, self.error = STOPPED, None
            self._log(tr("Stopped; resume the run to continue from its last checkpoint."))
        self._done = done
        if done is not None:
            done(self)


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return tr("{n} s").format(n=seconds)
    if seconds < 90 * 60:
        return tr("{n} min").format(n=round(seconds / 60))
    return tr("{h} h {m} min").format(h=seconds // 3600, m=(seconds % 3600) // 60)
