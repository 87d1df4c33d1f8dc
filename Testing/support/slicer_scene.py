"""Headless Slicer for tests: a real MRML scene with the module logics, from the PyPI package slicer-core.

`slicer_app` (a pytest fixture) gives each test a fresh scene published as `slicer.mrmlScene` plus the
`slicer.modules.<name>.logic()` shim, exactly what the EMIMSegmentation Logic uses inside Slicer.
The bootstrap itself lives in EMIMCommonLib.headless because the batch scripts need it too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "EMIMSegmentation"
for folder in (MODULE_DIR, REPO):  # the module's Lib, and EMIMCommonLib (installed beside it, here one folder up)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

slicer = pytest.importorskip("slicer", reason="slicer-core is not installed (pip install -e .[slicer-test])")

from EMIMCommonLib.headless import HeadlessSlicer, bootstrap  # noqa: E402

import emim.labels as emim_labels  # noqa: E402
from emim.data.modalities import BRATS  # noqa: E402

# The label table and modality set exactly as the engine's export writes them.
BRATS_LABELS = emim_labels.BRATS_LABELS
BRATS_MODALITIES = BRATS.to_metadata()


def write_model_metadata(folder: Path, task: str = "segmentation", **extra) -> Path:
    """A model folder's metadata.json with what the schema asks of the task (no weights: the Logic never reads
    them, and `sha256` names none)."""
    from emim import __version__
    from emim.model_metadata import FORMAT, FORMAT_VERSION

    folder.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, "engine_version": __version__, "task": task,
            "name": f"test {task} model", "description": "metadata written by the test",
            "modalities": BRATS_MODALITIES, "model_config": {}, "sha256": "0" * 64,
            **({"labels": BRATS_LABELS, "regions": emim_labels.BRATS_REGIONS} if task == "segmentation" else {}),
            **extra}
    (folder / "metadata.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def segment_command_available() -> bool:
    """True once the engine registers `emim segment` (written concurrently by other engineers)."""
    from emim.cli import COMMANDS

    return "segment" in COMMANDS


@pytest.fixture
def slicer_app():
    """A fresh headless Slicer per test; the scene is emptied afterwards."""
    app: HeadlessSlicer = bootstrap()
    yield app
    app.close()


def render_slice_png(app: HeadlessSlicer, background, segmentation, path: Path, size: int = 512,
                     orientation: str = "Axial") -> Path:
    """Offscreen slice view without OpenGL: the slice logic blends the background MRI with a label layer.

    Segmentations are not a slice-logic layer, so the visible segments are exported to a label map whose colour
    table carries the segment colours.
    """
    import vtk

    scene = app.scene
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "overlay")
    slicer.modules.segmentations.logic().ExportVisibleSegmentsToLabelmapNode(segmentation, labelmap, background)
    colors = scene.AddNewNodeByClass("vtkMRMLColorTableNode", "overlay colors")
    colors.SetTypeToUser()
    segments = segmentation.GetSegmentation()
    colors.SetNumberOfColors(segments.GetNumberOfSegments() + 1)
    colors.SetColor(0, "background", 0, 0, 0, 0)
    for index in range(segments.GetNumberOfSegments()):
        segment = segments.GetNthSegment(index)
        colors.SetColor(index + 1, segment.GetName(), *segment.GetColor(), 1.0)
    labelmap.GetDisplayNode().SetAndObserveColorNodeID(colors.GetID())

    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(app.app)
    logic.SetMRMLScene(scene)
    slice_node = logic.AddSliceNode("Red")
    slice_node.SetOrientation(orientation)
    composite = logic.GetSliceCompositeNode()
    composite.SetBackgroundVolumeID(background.GetID())
    composite.SetLabelVolumeID(labelmap.GetID())
    composite.SetLabelOpacity(0.5)
    logic.ResizeSliceNode(size, size)
    logic.FitSliceToBackground(size, size)
    # Centre the view on the segmentation so the picture shows the tumour.
    bounds = [0.0] * 6
    labelmap.GetRASBounds(bounds)
    slice_node.JumpSlice((bounds[0] + bounds[1]) / 2, (bounds[2] + bounds[3]) / 2, (bounds[4] + bounds[5]) / 2)
    logic.SnapSliceOffsetToIJK()
    connection = logic.GetImageDataConnection()
    connection.GetProducer().Update()
    image = connection.GetProducer().GetOutputDataObject(connection.GetIndex())
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return path
