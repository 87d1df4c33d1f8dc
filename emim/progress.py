"""Progress reporting for long commands: a bar for people, one JSON object per line for programs.

With `--progress json` every event is one line on stdout, e.g.
`{"event": "progress", "step": 10, "total": 50, "percent": 20.0, "eta_s": 41.2, "loss": 0.8}`.
The Slicer modules parse these lines; anything else the engine prints goes to stderr so stdout stays parseable.
Events: `start`, `progress`, `metrics`, `warning`, `checkpoint`, `output`, `done`, `error`, and `cache` (the
preprocessing cache: `done`/`total` while it is built, then a summary).
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

from emim.contract import PROGRESS_MODES


def json_safe(value: Any) -> Any:
    """Make values JSON-safe (NaN/Inf become null) so every line parses with a strict reader."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


BAR_EVENTS = ("output", "done", "start", "checkpoint", "cache")  # printed as text lines in bar mode
ALWAYS_SAID = ("warning", "error")  # printed on stderr in every mode, `none` included: no failure goes unsaid


class Progress:
    """Reports events of one job; `enabled=False` silences non-zero ranks under torchrun."""

    def __init__(self, mode: str = "bar", enabled: bool = True, stream: TextIO | None = None) -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress mode must be one of {PROGRESS_MODES}, got {mode!r}")
        self.mode = mode if enabled else "none"
        self.enabled = enabled  # False: a non-zero torchrun rank, whose failures rank 0 reports
        self.stream = stream
        self._start = time.monotonic()
        self._first_step: tuple[int, float] | None = None

    def _out(self) -> TextIO:
        return self.stream or (sys.stdout if self.mode == "json" else sys.stderr)

    def event(self, event: str, **fields: Any) -> None:
        """Report a named event; in bar mode warnings, errors and outputs are printed as text lines."""
        if self.mode == "json":
            print(json.dumps(json_safe({"event": event, **fields})), file=self._out(), flush=True)
        elif (event in ALWAYS_SAID and self.enabled) or (self.mode == "bar" and event in BAR_EVENTS):
            text = fields.get("message") or " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"\r[{event}] {text}", file=self._out(), flush=True)

    def step(self, step: int, total: int, **fields: Any) -> None:
        """Report that `step` of `total` units are done; ETA from the rate since the first reported step."""
        now = time.monotonic()
        if self._first_step is None:
            self._first_step = (step, now)
        first_step, first_time = self._first_step
        rate_steps = step - first_step
        eta = (now - first_time) / rate_steps * (total - step) if rate_steps > 0 else None
        percent = 100.0 * step / max(total, 1)
        if self.mode == "json":
            self.event("progress", step=step, total=total, percent=round(percent, 2),
                       eta_s=None if eta is None else round(eta, 1), elapsed_s=round(now - self._start, 1), **fields)
        elif self.mode == "bar":
            width = 30
            filled = int(width * step / max(total, 1))
            extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            eta_text = "" if eta is None else f" eta {eta:5.0f}s"
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{total}{eta_text} {extra}",
                  end="" if step < total else "\n", file=self._out(), flush=True)

    def count(self, event: str, done: int, total: int, **fields: Any) -> None:
        """Report `done` of `total` items of a preparation stage (not training steps): a counter in bar mode."""
        if self.mode == "json":
            self.event(event, done=done, total=total, **fields)
        elif self.mode == "bar":
            print(f"\r[{event}] {done}/{total}", end="" if done < total else "\n", file=self._out(), flush=True)
