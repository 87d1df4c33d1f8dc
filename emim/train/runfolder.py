"""A run folder: the resolved config, metrics as JSON lines, a text log and checkpoints.

    RUN/config.json          everything needed to reproduce or resume the run
    RUN/metrics.jsonl        one JSON object per logged step (read live by the Slicer training module)
    RUN/train.log            human-readable log
    RUN/checkpoints/last.pt  latest checkpoint (atomic), RUN/checkpoints/step-XXXXXX.pt kept at milestones
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from emim.atomic_write import write_file
from emim.contract import CHECKPOINT_FOLDER, CONFIG_FILE, LAST_CHECKPOINT, LOG_FILE, METRICS_FILE
from emim.errors import EmimError
from emim.progress import json_safe


class RunFolder:
    def __init__(self, path: str | Path, write: bool = True) -> None:
        self.path = Path(path)
        self.write = write  # only rank 0 writes under torchrun
        if write:
            (self.path / CHECKPOINT_FOLDER).mkdir(parents=True, exist_ok=True)
            self._lock = self._hold_lock()
            # the lock makes this the only writer: temporaries left are from a process killed mid-save
            for stale in (self.path / CHECKPOINT_FOLDER).glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    def _hold_lock(self):
        """Two processes training into one folder would interleave metrics and overwrite each other's
        checkpoints (a double click on Start, a resume while the run is alive): the writer holds an exclusive
        lock on RUN/.lock for as long as it lives; the operating system releases it when the process ends."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; the GUI prevents double starts there
            return None
        handle = (self.path / ".lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise EmimError(f"another process is already training into {self.path}; wait for it or stop it "
                            "before resuming, or choose another run folder") from None
        return handle

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def last_checkpoint(self) -> Path:
        return self.path / LAST_CHECKPOINT

    def read_config(self, command: str | None = None) -> dict[str, Any]:
        """The run's config.json; with `command`, refuse a run that another command started (resuming a
        fine-tuning with `pretrain --resume` would otherwise fail on a missing key)."""
        if not self.config_path.is_file():
            raise EmimError(f"{self.path} is not a run folder (no config.json); start a new run instead of --resume")
        try:
            config = json.loads(self.config_path.read_text())
        except json.JSONDecodeError as error:
            raise EmimError(f"{self.config_path} is not valid JSON ({error}); it was changed or cut off. Start a "
                            "new run folder.") from None
        if command is not None and config.get("command") != command:
            raise EmimError(f"{self.path} holds a run of `emim {config.get('command')}`, not of `emim {command}`; "
                            f"resume it with `emim {config.get('command')} --resume --run-dir {self.path}`.")
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        if self.write:
            write_file(self.config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")

    def append_metrics(self, record: dict[str, Any]) -> None:
        if self.write:
            with self.metrics_path.open("a") as handle:
                handle.write(json.dumps(json_safe(record)) + "\n")

    def truncate_metrics_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint so curves have no duplicate steps."""
        if not (self.write and self.metrics_path.is_file()):
            return
        kept = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        write_file(self.metrics_path, "".join(line + "\n" for line in kept))

    def log(self, message: str) -> None:
        if self.write:
            with (self.path / LOG_FILE).open("a") as handle:
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a metrics.jsonl (a line being written is skipped), for plots and the Slicer module."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
