"""Offscreen pictures of plot chart nodes, drawn with VTK's charts from the nodes' own tables and settings.

Slicer's plot views are Qt widgets; without them (batch, tests, a report of a run on a server) we draw the same
chart nodes with vtkChartXY in an offscreen render window (EGL or OSMesa; no display needed) and tile them into
one PNG. Titles, axis titles, series colours, line/marker styles and log axes come from the MRML nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support


def render_chart(chart_node, width: int = 640, height: int = 400) -> np.ndarray:
    """One chart node as an RGB array (height, width, 3), top row first."""
    view = vtk.vtkContextView()
    window = view.GetRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(width, height)
    view.GetRenderer().SetBackground(1.0, 1.0, 1.0)
    chart = vtk.vtkChartXY()
    view.GetScene().AddItem(chart)
    chart.SetTitle(chart_node.GetTitle() or chart_node.GetName())
    chart.GetTitleProperties().SetFontSize(15)
    chart.GetAxis(vtk.vtkAxis.BOTTOM).SetTitle(chart_node.GetXAxisTitle())
    left = chart.GetAxis(vtk.vtkAxis.LEFT)
    left.SetTitle(chart_node.GetYAxisTitle())
    left.SetLogScale(bool(chart_node.GetYAxisLogScale()))
    chart.SetShowLegend(True)
    chart.GetLegend().SetInline(True)
    chart.GetLegend().SetHorizontalAlignment(vtk.vtkChartLegend.RIGHT)
    chart.GetLegend().SetVerticalAlignment(vtk.vtkChartLegend.TOP)
    values = []
    for index in range(chart_node.GetNumberOfPlotSeriesNodes()):
        series = chart_node.GetNthPlotSeriesNode(index)
        table_node = series.GetTableNode()
        if table_node is None or table_node.GetNumberOfRows() == 0:
            continue
        column = table_node.GetTable().GetColumnByName(series.GetYColumnName())
        values += [column.GetValue(i) for i in range(column.GetNumberOfTuples())]
        plot = chart.AddPlot(vtk.vtkChart.LINE)
        plot.SetInputData(table_node.GetTable(), series.GetXColumnName(), series.GetYColumnName())
        plot.SetColorF(*series.GetColor())
        plot.SetWidth(2.0)
        plot.SetLabel(series.GetYColumnName())
        if series.GetMarkerStyle() != slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone:
            plot.SetMarkerStyle(vtk.vtkPlotPoints.CIRCLE)
            plot.SetMarkerSize(7.0)
        else:
            plot.SetMarkerStyle(vtk.vtkPlotPoints.NONE)
    _leave_room_for_legend(left, values)
    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    rows, cols = image.GetDimensions()[1], image.GetDimensions()[0]
    rgb = pixels.reshape(rows, cols, -1)[::-1, :, :3].copy()
    window.Finalize()
    return rgb


def _leave_room_for_legend(axis, values: list[float]) -> None:
    """On linear axes, fix the range with a third more room on top, where the inline legend sits."""
    finite = [v for v in values if np.isfinite(v)]
    if axis.GetLogScale() or not finite:
        return
    low, high = min(finite), max(finite)
    span = (high - low) or abs(high) or 1.0
    axis.SetBehavior(vtk.vtkAxis.FIXED)
    axis.SetRange(low - 0.05 * span, high + 0.35 * span)


def render_charts_png(chart_nodes: Sequence, path: str | Path, columns: int = 2, width: int = 640,
                      height: int = 400) -> Path:
    """Tile the charts (row by row) into one PNG; empty cells stay white."""
    if not chart_nodes:
        raise ValueError("no chart nodes to render")
    rows = -(-len(chart_nodes) // columns)
    canvas = np.full((rows * height, columns * width, 3), 255, dtype=np.uint8)
    for index, node in enumerate(chart_nodes):
        row, col = divmod(index, columns)
        canvas[row * height:(row + 1) * height, col * width:(col + 1) * width] = render_chart(node, width, height)
    image = vtk.vtkImageData()
    image.SetDimensions(canvas.shape[1], canvas.shape[0], 1)
    flat = np.ascontiguousarray(canvas[::-1]).reshape(-1, 3)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(flat, deep=True,
                                                               array_type=vtk.VTK_UNSIGNED_CHAR))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return Path(path)
