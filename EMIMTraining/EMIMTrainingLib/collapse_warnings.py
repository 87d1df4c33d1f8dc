"""Collapse warnings of a run in plain language, with what to change.

The engine decides when a run is collapsing (emim/pretrain/diagnostics.py) and logs each warning in RUN/train.log
as `WARNING step N: ...`; reading the log (not only the live events) shows them for any run folder, also one
started by the batch script or on another machine, and across resumes. Here they get a headline a non-specialist
understands and the settings to change in this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from emim.contract import LOG_FILE, RUN_WARNING

from .i18n import tr

LINE = re.compile(re.escape(RUN_WARNING).replace(r"\{step\}", r"(\d+)").replace(r"\{message\}", "(.*)") + "$")


@dataclass(frozen=True)
class RunWarning:
    step: int
    kind: str  # "complete-collapse", "dimensional-collapse" or "other"
    headline: str
    advice: str
    detail: str  # the engine's own message

    def text(self) -> str:
        return tr("Step {step}: {headline} {advice}").format(step=self.step, headline=self.headline,
                                                             advice=self.advice).strip()


def explain(step: int, message: str) -> RunWarning:
    """A plain-language warning for one engine message."""
    lowered = message.lower()
    if "complete collapse" in lowered:
        return RunWarning(step, "complete-collapse",
                          tr("The model predicts almost the same value everywhere: its reconstruction error is no "
                             "better than guessing the average intensity (complete collapse)."),
                          tr("The engine says so only after the first fifth of a run, when a healthy run has left "
                             "that state. Use the hybrid mask pattern and the default decoder fill (local), keep the "
                             "preset's learning rate and batch size, or give the mask patterns that still learn "
                             "more weight (the per-pattern chart shows which)."), message)
    if "dimensional collapse" in lowered:
        level = re.search(r"level (\d+)", lowered)
        return RunWarning(step, "dimensional-collapse",
                          tr("The features of pyramid level {level} are squeezing into a few directions (dimensional "
                             "collapse): the encoder is losing information.").format(
                              level=level.group(1) if level else "?"),
                          tr("Use 4 pyramid Barlow Twins levels and raise the PBT weight (e.g. from 0.1 to 0.3)."),
                          message)
    return RunWarning(step, "other", message, "", message)


def read_warnings(run_dir: str | Path) -> list[RunWarning]:
    """Every warning in RUN/train.log, oldest first; [] when there is no log yet."""
    log = Path(run_dir) / LOG_FILE
    if not log.is_file():
        return []
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = LINE.search(line)
        if match:
            found.append(explain(int(match.group(1)), match.group(2)))
    return found
