"""The data set check that must pass before a run starts: `emim check-data PATH --json`, as a report and a table.

The engine does the checking (files, dimensions, values, grids per case); this file only runs it, keeps its JSON
report, and says the blocking problems in sentences that name the case and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import slicer
import vtk

from EMIMCommonLib.job import EngineJob, run_engine
from EMIMCommonLib.process import engine_command
from emim.contract import DEFAULT_PRESET

from .errors import EMIMTrainingError
from .i18n import tr

TABLE_COLUMNS = ("Case", "Status", "Modalities", "Size", "Spacing (mm)", "Label", "Problems and fixes")


@dataclass
class DataReport:
    """check-data's `done` event: `path`, `modalities`, `ok`, `summary`, `cases` (each with `problems`)."""

    data: dict

    @property
    def ok(self) -> bool:
        return bool(self.data.get("ok"))

    @property
    def path(self) -> str:
        return str(self.data.get("path", ""))

    @property
    def modalities(self) -> list[str]:
        return list(self.data.get("modalities", []))

    @property
    def cases(self) -> list[dict]:
        return list(self.data.get("cases", []))

    def blocking_problems(self) -> list[str]:
        """One sentence per error that stops a run: the case, the file, what is wrong, and the fix."""
        sentences = []
        for case in self.cases:
            for problem in case.get("problems", []):
                if problem.get("severity") == "error":
                    sentences.append(tr("Case {case}: {message} Fix: {fix}").format(
                        case=case.get("case_id"), message=_sentence(problem.get("message", "")),
                        fix=problem.get("fix", "")))
        return sentences

    def summary_text(self) -> str:
        summary = self.data.get("summary", {})
        return tr("{cases} cases found, {usable} usable, {errors} with errors, {warnings} with warnings; "
                  "modalities {modalities}.").format(cases=summary.get("cases", 0), usable=summary.get("usable", 0),
                                                     errors=summary.get("with_errors", 0),
                                                     warnings=summary.get("with_warnings", 0),
                                                     modalities=", ".join(self.modalities))

    def require_ok(self) -> None:
        """Raise with every blocking problem when the data set cannot be trained on as it is."""
        if not self.cases:
            raise EMIMTrainingError(tr("No cases were found in {path}; point to a folder of case folders (BraTS "
                                       "layout) or a datalist JSON.").format(path=self.path))
        problems = self.blocking_problems()
        if problems:
            raise EMIMTrainingError(tr("The data set {path} cannot be used as it is:").format(path=self.path)
                                    + "\n" + "\n".join(problems))


def check_data(path: str | Path, modalities: Sequence[str] = (), resample: bool = False,
               log: Callable[[str], None] | None = None) -> DataReport:
    """Run the engine's check (about 0.2 s per case plus 1-2 s start-up) and return its report."""
    options = (["--modalities", ",".join(modalities)] if modalities else []) + (["--resample"] if resample else [])
    command = engine_command("check-data", [str(path), *options], machine_output=("--json",))
    # check-data exits 1 with a report when cases are broken; without one the set is unreadable
    return DataReport(_done_event(command, path, log))


def collapse_report(path: str | Path, modalities: Sequence[str] = (), preset: str = DEFAULT_PRESET,
                    log: Callable[[str], None] | None = None) -> list[dict]:
    """`emim collapse-report`: per mask pattern the collapsed loss of the data and a verdict (a few seconds per
    case: every case is read once)."""
    command = engine_command("collapse-report", [str(path), "--preset", preset]
                             + (["--modalities", ",".join(modalities)] if modalities else []))
    return list(_done_event(command, path, log).get("patterns", []))


def _done_event(command: list[str], path: str | Path, log: Callable[[str], None] | None) -> dict:
    """Run an engine command and return its `done` event (without the `event` key), or raise with its errors.
    Exit status 1 with a `done` event is a complete report on broken cases, not a failure."""
    def finish(outputs: list[dict], done: dict) -> dict:
        if not done:
            raise EMIMTrainingError(tr("Checking {path} gave no report; see the log.").format(path=path))
        return {k: v for k, v in done.items() if k != "event"}

    return run_engine(command, lambda process: EngineJob(process, None, finish, log=log,
                                                         error_type=EMIMTrainingError, ok_exit_codes=(0, 1)),
                      wait=True, log=log).result


COLLAPSE_COLUMNS = ("Mask pattern", "Share of masks", "Collapsed loss", "Per-patch collapsed loss",
                    "Explained by patch means", "Healthy run reaches", "Verdict")


def collapse_table(rows: Sequence[dict], table=None):
    """The collapse report as a vtkMRMLTableNode, one row per mask pattern."""
    values = [(row["pattern"], f"{row['probability']:.2f}", f"{row['collapsed_loss_view']:.3f}",
               f"{row['collapsed_loss_patch']:.3f}", f"{row['headroom']:.0%}", f"{row['healthy_loss']:.3f}",
               row["verdict"]) for row in rows]
    return _string_table(table, tr("EMIM collapse report"), COLLAPSE_COLUMNS, values)


def report_table(report: DataReport, table=None):
    """The per-case table (one row per case) as a vtkMRMLTableNode, replacing the contents of `table` if given."""
    values = []
    for case in report.cases:
        problems = case.get("problems", [])
        status = tr("usable") if case.get("usable") else tr("cannot be used")
        if case.get("usable") and problems:
            status = tr("usable, with warnings")
        values.append((case.get("case_id", ""), status, ", ".join(case.get("modalities", {})),
                       "x".join(str(v) for v in case.get("shape") or ()),
                       " x ".join(f"{v:g}" for v in case.get("spacing") or ()),
                       tr("yes") if case.get("has_label") else tr("no"),
                       " | ".join(f"{_sentence(p.get('message', ''))} {tr('Fix:')} {p.get('fix', '')}"
                                  for p in problems)))
    return _string_table(table, tr("EMIM data check"), TABLE_COLUMNS, values)


def _string_table(table, name: str, titles: Sequence[str], rows: Sequence[Sequence[object]]):
    """`table` (a new node called `name` if None) holding text columns `titles` and `rows`, its old content gone."""
    if table is None:
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", slicer.mrmlScene.GenerateUniqueName(name))
    modifying = table.StartModify()
    table.RemoveAllColumns()
    columns = []
    for title in titles:
        column = vtk.vtkStringArray()
        column.SetName(title)
        columns.append(table.AddColumn(column))
    for values in rows:
        index = table.AddEmptyRow()
        for column, value in zip(columns, values):
            column.SetValue(index, str(value))
    table.EndModify(modifying)
    return table


def _sentence(text: str) -> str:
    text = str(text).strip()
    return text if text.endswith((".", "!", "?")) else text + "."
