"""One engine run from the Logic's point of view: events to callbacks, then importing results on the caller's thread.

`poll()` is called by the GUI timer (background mode) or by `wait()` (scripts, `waitForCompletion=True`). The
import step (`finish`) runs inside `poll()`, i.e. on the thread that owns the MRML scene.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import EMIMError
from .i18n import tr
from .process import EngineProcess

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"


class EngineJob:
    """Tracks one EngineProcess; `result` holds what `finish(outputs, done_event)` returned (`finish` may raise an
    EMIMError to fail the job with its message)."""

    def __init__(self, process: EngineProcess, workdir: Path | None, finish: Callable[[list[dict], dict], Any],
                 log: Callable[[str], None] | None = None, progress: Callable[[float], None] | None = None,
                 done: Callable[["EngineJob"], None] | None = None, keep_workdir: bool = False,
                 error_type: type[EMIMError] = EMIMError, ok_exit_codes: tuple[int, ...] = (0,)) -> None:
        self.process = process
        self.workdir = None if workdir is None else Path(workdir)  # removed at the end unless keep_workdir
        self._finish = finish
        self._log = log or (lambda text: None)
        self._progress = progress or (lambda percent: None)
        self._done = done
        self.keep_workdir = keep_workdir
        self.error_type = error_type  # what `wait()` raises: the calling module's own error class
        self.ok_exit_codes = ok_exit_codes  # check-data exits 1 after a complete report on broken cases
        self.state = RUNNING
        self.error: str | None = None
        self.warnings: list[str] = []
        self.outputs: list[dict] = []
        self.done_event: dict = {}
        self.result: Any = None

    def poll(self) -> bool:
        """Handle new events; when the child has ended, import its results. True once the job is over."""
        if self.state != RUNNING:
            return True
        for event in self.process.poll():
            self._handle(event)
        if not self.process.finished():
            return False
        for event in self.process.poll():
            self._handle(event)
        self._conclude()
        return True

    def wait(self, interval_s: float = 0.1) -> Any:
        """Block until the job ends; return its result or raise with the engine's message."""
        while not self.poll():
            time.sleep(interval_s)
        if self.state == FAILED:
            raise self.error_type(self.error or tr("The engine failed."))
        if self.state == CANCELLED:
            raise self.error_type(tr("Cancelled."))
        return self.result

    def cancel(self) -> None:
        """Kill the engine's process tree; the job ends as cancelled at the next poll."""
        if self.state == RUNNING:
            self._log(tr("Cancelling: stopping the engine and its worker processes."))
            self.process.cancel()

    def _handle(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress" and event.get("percent") is not None:
            self._progress(float(event["percent"]))
        elif kind == "warning":
            self.warnings.append(str(event.get("message", "")))
            self._log(tr("Warning: {message}").format(message=event.get("message", "")))
        elif kind == "error":
            self.error = str(event.get("message", ""))
            self._log(tr("Error: {message}").format(message=self.error))
        elif kind == "output":
            self.outputs.append(event)
            self._log(tr("Output: {path}").format(path=event.get("path", "")))
        elif kind == "done":
            self.done_event = event
        elif kind == "start":
            self._log(tr("Engine started ({details}).").format(
                details=", ".join(f"{k}={v}" for k, v in event.items() if k != "event")))
        elif kind == "log":
            self._log(str(event.get("message", "")))

    def _conclude(self) -> None:
        code = self.process.returncode
        if self.process.cancelled:
            self.state = CANCELLED
        elif code not in self.ok_exit_codes or self.error:
            self.state = FAILED
            self.error = self.error or tr("The engine stopped with exit code {code}; see the log above.").format(
                code=code)
        else:
            try:
                self.result = self._finish(self.outputs, self.done_event)
                self.state = SUCCEEDED
                self._progress(100.0)
            except EMIMError as error:
                self.state, self.error = FAILED, str(error)
                self._log(tr("Error: {message}").format(message=self.error))
        if self.workdir is not None and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self._done is not None:
            self._done(self)


def run_engine(command: Sequence[str], make_job: Callable[[EngineProcess], EngineJob], wait: bool,
               log: Callable[[str], None] | None = None) -> EngineJob:
    """Every engine run of the modules goes through here: the command is logged, started, and tracked as a job
    whose failure is the engine's own `error` event; with `wait`, block until it ends and raise the job's error
    class with that message."""
    (log or (lambda text: None))(tr("Running: {command}").format(command=" ".join(command)))
    job = make_job(EngineProcess(command))
    if wait:
        job.wait()
    return job
