"""An offscreen slice view (no OpenGL): background MRI plus the segmentation overlay, written to PNG."""

from __future__ import annotations

import os

import vtk
from vtk.util.numpy_support import vtk_to_numpy

from support.slicer_scene import REPO, render_slice_png, slicer_app, write_model_metadata  # noqa: F401  (fixture)

from EMIMSegmentationLib.logic import SegmentationLogic
from EMIMSegmentationLib.segmentation_import import import_label_file

CASE = "BraTS-GLI-00360-000"
SCREENSHOT = REPO / "Resources" / "Screenshots" / "EMIMSegmentation-1.png"


def test_slice_view_png_shows_mri_and_segment_colours(slicer_app, brats_mini, tmp_path):
    logic = SegmentationLogic()
    inputs = logic.loadCase(brats_mini / CASE)
    model = logic.readModel(write_model_metadata(tmp_path / "model"))
    segmentation = import_label_file(brats_mini / CASE / f"{CASE}-seg.nii.gz", inputs["t1c"], model.labels)
    # Set EMIM_WRITE_SCREENSHOT=1 to refresh the module screenshot in Resources/ after checking it by eye.
    path = SCREENSHOT if os.environ.get("EMIM_WRITE_SCREENSHOT") else tmp_path / "view.png"
    render_slice_png(slicer_app, inputs["t1c"], segmentation, path)

    reader = vtk.vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(*image.GetDimensions()[1::-1], -1)[..., :3]
    assert pixels.shape[:2] == (512, 512)
    grey = (pixels[..., 0] == pixels[..., 1]) & (pixels[..., 1] == pixels[..., 2])
    assert (grey & (pixels[..., 0] > 40)).mean() > 0.05  # brain tissue visible
    red = (pixels[..., 0] > pixels[..., 1] + 60) & (pixels[..., 0] > pixels[..., 2] + 60)
    green = (pixels[..., 1] > pixels[..., 0] + 40) & (pixels[..., 1] > pixels[..., 2] + 40)
    assert red.sum() > 50 and green.sum() > 50  # necrosis/enhancing and edema overlays blended on the MRI
