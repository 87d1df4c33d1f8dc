"""A run's `metrics.jsonl` followed live into MRML table nodes, with plot chart nodes over their columns.

Only new complete lines are read at each poll (the engine may be half-way through writing the last one). On
resume the engine rewrites the file without the records after its checkpoint; the follower notices that the text
it already read has changed and rebuilds the tables from the start, so curves never hold duplicate steps.

Tables: "train" (one row per logged step), "eval" (one row per diagnostics/validation pass; list values such as
`effective_rank` become one column per pyramid level) and "spectrum" (the latest normalised singular values per
level). Charts appear when their first column does, so a fine-tuning run shows no empty pretraining charts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import slicer
import vtk
from emim.contract import EVAL_RECORD, METRICS_FILE, TRAIN_RECORD

from .i18n import tr

TRAIN, EVAL, SPECTRUM = TRAIN_RECORD, EVAL_RECORD, "spectrum"  # table names


@dataclass(frozen=True)
class ChartSpec:
    """A chart over columns of one table: the listed names, in that order, then any starting with `prefix`."""

    key: str
    title: str
    table: str
    names: tuple[str, ...] = ()
    prefix: str = ""
    y_title: str = "loss"
    x_column: str = "step"
    log_y: bool = False

    def matches(self, column: str) -> bool:
        return column in self.names or bool(self.prefix and column.startswith(self.prefix))


CHARTS = (
    ChartSpec("loss", "Training loss", TRAIN, names=("loss", "rec_loss", "pbt_loss", "dice_loss", "bce_loss", "ce")),
    ChartSpec("pbt", "Pyramid Barlow Twins loss per level", TRAIN, prefix="pbt_level"),
    ChartSpec("validation", "Validation", EVAL, prefix="val_", y_title="score"),
    ChartSpec("collapse", "Collapse check: held-out reconstruction loss vs collapsed loss", EVAL,
              names=("heldout_rec_loss", "heldout_collapsed_loss_sample", "heldout_collapsed_loss_patch")),
    ChartSpec("patterns", "Collapse check per mask pattern: held-out loss / collapsed loss (1 = a constant)", EVAL,
              names=("heldout_patch_loss_ratio", "heldout_position_loss_ratio", "heldout_modal_loss_ratio"),
              y_title="ratio"),
    ChartSpec("rank", "Effective rank per pyramid level", EVAL, prefix="effective_rank_level", y_title="rank"),
    ChartSpec("spectrum", "Singular value spectrum (latest evaluation)", SPECTRUM, prefix="level",
              y_title="normalised singular value", x_column="index", log_y=True),
)
COLORS = ((0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.4, 0.74),
          (0.55, 0.34, 0.29))


def flatten(record: dict) -> dict[str, float]:
    """Numeric values of one record; a list of numbers becomes `<key>_level1`, `<key>_level2`, ..."""
    values: dict[str, float] = {}
    for key, value in record.items():
        if key == "kind":
            continue
        if value is None:
            values[key] = math.nan
        elif isinstance(value, bool):
            values[key] = float(value)
        elif isinstance(value, (int, float)):
            values[key] = float(value)
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            values.update({f"{key}_level{i + 1}": float(v) for i, v in enumerate(value)})
    return values


class MetricsFollower:
    """Follows RUN/metrics.jsonl; `poll()` adds the new records to the tables and returns how many it added."""

    def __init__(self, run_dir: str | Path, name: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.name = name or self.run_dir.name
        self.tables: dict[str, object] = {}
        self.charts: dict[str, object] = {}
        self.records_read = 0
        self.last_step: int | None = None
        self._offset = 0
        self._tail = b""  # the last complete line read, to notice a rewritten file

    @property
    def path(self) -> Path:
        return self.run_dir / METRICS_FILE

    def poll(self) -> int:
        if not self.path.is_file():
            return 0
        with self.path.open("rb") as handle:
            if self._offset and not self._unchanged(handle):
                self.reset()
            handle.seek(self._offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return 0
        lines = chunk[: end + 1].splitlines(keepends=True)
        self._offset += end + 1
        self._tail = lines[-1]
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        for record in records:
            self._add(record)
        self.records_read += len(records)
        if records:
            for table in self.tables.values():
                table.Modified()
        return len(records)

    def reset(self) -> None:
        """Forget what was read: empty the tables (nodes and charts stay, so views keep showing them)."""
        for table in self.tables.values():
            table.GetTable().SetNumberOfRows(0)
            table.Modified()
        self._offset, self._tail, self.records_read, self.last_step = 0, b"", 0, None

    def ordered_charts(self) -> list:
        """The chart nodes in the fixed CHARTS order (losses first, collapse panel last)."""
        return [self.charts[spec.key] for spec in CHARTS if spec.key in self.charts]

    def column(self, table: str, name: str) -> list[float]:
        """Values of one column (NaN where a record did not have it); [] when there is no such column yet."""
        node = self.tables.get(table)
        array = node.GetTable().GetColumnByName(name) if node is not None else None
        return [] if array is None else [array.GetValue(i) for i in range(array.GetNumberOfTuples())]

    def _unchanged(self, handle) -> bool:
        size = handle.seek(0, 2)
        if size < self._offset:
            return False
        handle.seek(self._offset - len(self._tail))
        return handle.read(len(self._tail)) == self._tail

    def _add(self, record: dict) -> None:
        kind = EVAL if record.get("kind") == EVAL_RECORD else TRAIN
        values = flatten({k: v for k, v in record.items() if k != "spectrum"})
        if "step" in values:
            self.last_step = int(values["step"])
        self._append_row(kind, values)
        spectrum = record.get("spectrum")
        if isinstance(spectrum, list) and spectrum and all(isinstance(level, list) for level in spectrum):
            self._replace_spectrum(spectrum)

    def _table(self, kind: str):
        if kind not in self.tables:
            titles = {TRAIN: tr("training metrics"), EVAL: tr("evaluation metrics"),
                      SPECTRUM: tr("singular value spectrum")}
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.name} {titles[kind]}")
            node.SetAttribute("EMIM.run", str(self.run_dir))
            node.SetAttribute("EMIM.table", kind)
            self.tables[kind] = node
        return self.tables[kind]

    def _append_row(self, kind: str, values: dict[str, float]) -> None:
        table = self._table(kind).GetTable()
        rows = table.GetNumberOfRows()
        for name in values:
            if table.GetColumnByName(name) is None:
                self._add_column(kind, name, rows)
        table.InsertNextBlankRow(math.nan)
        for name, value in values.items():
            table.GetColumnByName(name).SetValue(rows, value)

    def _add_column(self, kind: str, name: str, rows: int) -> None:
        array = vtk.vtkDoubleArray()
        array.SetName(name)
        array.SetNumberOfTuples(rows)
        array.Fill(math.nan)
        node = self._table(kind)
        node.GetTable().AddColumn(array)
        x_column = "index" if kind == SPECTRUM else "step"
        if name == x_column:
            return
        for spec in CHARTS:
            if spec.table == kind and spec.matches(name):
                self._add_series(spec, node, name)

    def _replace_spectrum(self, spectrum: list[list[float]]) -> None:
        table = self._table(SPECTRUM).GetTable()
        table.SetNumberOfRows(0)
        length = max(len(level) for level in spectrum)
        for index in range(length):
            self._append_row(SPECTRUM, {"index": float(index + 1), **{
                f"level{i + 1}": (float(level[index]) if index < len(level) else math.nan)
                for i, level in enumerate(spectrum)}})

    def _add_series(self, spec: ChartSpec, table_node, column: str) -> None:
        scene = slicer.mrmlScene
        chart = self.charts.get(spec.key)
        if chart is None:
            chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{self.name} {tr(spec.title)}")
            chart.SetTitle(tr(spec.title))
            chart.SetXAxisTitle(tr(spec.x_column))
            chart.SetYAxisTitle(tr(spec.y_title))
            chart.SetYAxisLogScale(spec.log_y)
            chart.SetAttribute("EMIM.chart", spec.key)
            self.charts[spec.key] = chart
        series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{self.name} {column}")
        series.SetAndObserveTableNodeID(table_node.GetID())
        series.SetXColumnName(spec.x_column)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleSolid)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle if spec.table == EVAL
                              else slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetColor(*COLORS[chart.GetNumberOfPlotSeriesNodes() % len(COLORS)])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
