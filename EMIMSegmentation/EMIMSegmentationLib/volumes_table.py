"""Tumour volumes beside a segmentation: the engine's CASE.volumes.csv as a table node (mL and lesions per region
and label), referenced from the segmentation node and filed in the same study."""

from __future__ import annotations

import csv
from pathlib import Path

import vtk

from .i18n import tr
from .volumes_io import place_beside

VOLUMES_REFERENCE = "EMIMVolumes"  # node reference role: segmentation -> its volume table


def volumes_table(path: Path, segmentation, scene):
    """A table node (one row per structure) from the engine's volumes CSV, replacing the segmentation's earlier
    one; returns it."""
    table = segmentation.GetNodeReference(VOLUMES_REFERENCE)
    if table is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(
            f"{segmentation.GetName()} {tr('volumes')}"))
        segmentation.SetNodeReferenceID(VOLUMES_REFERENCE, table.GetID())
    table.RemoveAllColumns()
    titles = (("structure", tr("Structure"), None), ("kind", tr("Kind"), None), ("labels", tr("Labels"), None),
              ("volume_ml", tr("Volume (mL)"), vtk.vtkDoubleArray), ("lesions", tr("Lesions"), vtk.vtkIntArray),
              ("voxels", tr("Voxels"), vtk.vtkIntArray))
    for _, title, array in titles:
        column = table.AddColumn(array() if array else None)
        column.SetName(title)
    with path.open(encoding="utf-8") as handle:
        for values in csv.DictReader(handle):
            row = table.AddEmptyRow()
            for index, (key, _, _) in enumerate(titles):
                table.SetCellText(row, index, values[key])
    place_beside(table, segmentation)
    return table
