"""Show a classification model's class probabilities as a table node (sortable, savable with the scene)."""

from __future__ import annotations

import vtk

from .errors import EMIMSegmentationError
from .i18n import tr


def probabilities_table(probabilities: dict[str, float], scene, table=None, name: str = "E-MIM classification"):
    """Fill `table` (or a new vtkMRMLTableNode) with one row per class, most likely first."""
    if not probabilities:
        raise EMIMSegmentationError(tr("The engine returned no class probabilities; see the log."))
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table.RemoveAllColumns()
    class_column = table.AddColumn()
    class_column.SetName(tr("Class"))
    probability_column = table.AddColumn(vtk.vtkDoubleArray())
    probability_column.SetName(tr("Probability"))
    for class_name, probability in sorted(probabilities.items(), key=lambda item: -item[1]):
        row = table.AddEmptyRow()
        table.SetCellText(row, 0, str(class_name))
        table.SetCellText(row, 1, f"{float(probability):.6g}")
    return table

