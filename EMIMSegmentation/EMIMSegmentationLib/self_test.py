"""The checks of the module's Slicer self-test, as plain functions on MRML.

EMIMSegmentationTest (run by `Slicer --testing`) only loads the sample case through Slicer's Sample Data module
and calls these; the pytest suite calls the same functions on slicer-core, so the self-test's substance runs in
CI even though the Slicer application cannot run there.
"""

from __future__ import annotations

import os
from pathlib import Path

import slicer
import vtk

from emim.contract import STARTER_MODEL

TEST_MODEL_VARIABLE = "EMIM_TEST_MODEL"


def self_test_model() -> str | Path:
    """The model named by $EMIM_TEST_MODEL (e.g. the one `make demo` exports), else the shipped starter model."""
    named = os.environ.get(TEST_MODEL_VARIABLE)
    return Path(named) if named else STARTER_MODEL


def reference_geometry(volume) -> str:
    """A volume's grid serialised the way segmentations store their reference image geometry."""
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(volume.GetImageData())
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return slicer.vtkSegmentationConverter.SerializeImageGeometry(image)


def segmentation_problems(logic, nodes: list, model: str | Path) -> list[str]:
    """Segment the loaded sample volumes end to end; every way the result is wrong, in words (empty: passed)."""
    inputs = logic.autoAssignInputs(model, nodes)
    problems = logic.inputProblems(inputs, model)
    if problems:
        return problems
    before = {name: slicer.util.arrayFromVolume(node).copy() for name, node in inputs.items()}
    segmentation = logic.segment(inputs, model, device="cpu", waitForCompletion=True)
    info = logic.readModel(model)
    segments = segmentation.GetSegmentation()
    names = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
    expected = [label.name for label in info.labels]
    if names != expected:
        problems.append(f"segment names {names} differ from the model's labels {expected}")
    reference = inputs[info.modalities[0].name]
    if segments.GetConversionParameter("Reference image geometry") != reference_geometry(reference):
        problems.append("the segmentation's reference geometry is not the input's grid")
    for name, node in inputs.items():
        if not (slicer.util.arrayFromVolume(node) == before[name]).all():
            problems.append(f"input volume {node.GetName()} ({name}) was modified")
    return problems
