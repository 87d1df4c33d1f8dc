"""Do the input volumes share one voxel grid? If not, say how they differ and resample onto the reference.

Resampling happens here, in Slicer's process, in physical (RAS) space: each reference voxel looks up the moving
volume at the same millimetre position (vtkImageReslice driven by both IJK-to-RAS matrices, linear
interpolation, 0 outside). We do it here rather than with the engine's --resample so the user can see and keep
the resampled volumes, and so the engine always receives inputs that share exactly the reference grid.
Arrays are never resized to force a match.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from .errors import EMIMSegmentationError
from .i18n import tr

ORIGIN_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-5


def ijk_to_ras(node) -> np.ndarray:
    """The node's 4x4 voxel-index-to-RAS matrix as numpy."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def dimensions(node) -> tuple[int, int, int]:
    return tuple(node.GetImageData().GetDimensions())


def check_untransformed(node) -> None:
    """Refuse volumes under a transform: the files we hand to the engine carry only the node's own grid."""
    if node.GetParentTransformNode() is not None:
        raise EMIMSegmentationError(tr("Volume '{name}' is under a transform. Harden the transform (Data module, "
                                       "right-click > Harden transform) or remove it, then apply again.")
                                    .format(name=node.GetName()))


def geometry_differences(reference, other) -> list[str]:
    """Plain-language differences between two volumes' grids (empty when they share the grid)."""
    if reference.GetImageData() is None or other.GetImageData() is None:
        empty = reference if reference.GetImageData() is None else other
        return [tr("Volume '{name}' has no voxel data.").format(name=empty.GetName())]
    differences = []
    ref_dims, other_dims = dimensions(reference), dimensions(other)
    if ref_dims != other_dims:
        differences.append(tr("size {a} voxels instead of {b}").format(a="x".join(map(str, other_dims)),
                                                                      b="x".join(map(str, ref_dims))))
    ref, mov = ijk_to_ras(reference), ijk_to_ras(other)
    ref_spacing, mov_spacing = np.linalg.norm(ref[:3, :3], axis=0), np.linalg.norm(mov[:3, :3], axis=0)
    if not np.allclose(ref_spacing, mov_spacing, atol=1e-4):
        differences.append(tr("spacing {a} mm instead of {b} mm").format(a=_fmt(mov_spacing), b=_fmt(ref_spacing)))
    if not np.allclose(ref[:3, :3] / ref_spacing, mov[:3, :3] / mov_spacing, atol=DIRECTION_TOLERANCE):
        differences.append(tr("different orientation (axis directions)"))
    shift = float(np.linalg.norm(ref[:3, 3] - mov[:3, 3]))
    if shift > ORIGIN_TOLERANCE_MM:
        differences.append(tr("origin {d:.3g} mm away").format(d=shift))
    return differences


def mismatch_report(inputs: dict, titles: dict[str, str]) -> list[str]:
    """One sentence per input whose grid differs from the first (reference) input."""
    names = list(inputs)
    reference = inputs[names[0]]
    report = []
    for name in names[1:]:
        differences = geometry_differences(reference, inputs[name])
        if differences:
            report.append(tr("{title} ('{node}') differs from the reference {ref} ('{ref_node}'): {what}.").format(
                title=titles.get(name, name), node=inputs[name].GetName(), ref=titles.get(names[0], names[0]),
                ref_node=reference.GetName(), what="; ".join(differences)))
    return report


def resample_to_reference(node, reference, name: str | None = None):
    """A new scalar volume node holding `node` resampled onto `reference`'s grid in physical space.

    The input node is not modified; the new node is added to the same scene.
    """
    moving_ijk_from_ref_ijk = np.linalg.inv(ijk_to_ras(node)) @ ijk_to_ras(reference)
    transform = vtk.vtkTransform()
    transform.SetMatrix(slicer.util.vtkMatrixFromArray(moving_ijk_from_ref_ijk))
    reslice = vtk.vtkImageReslice()
    reslice.SetInputData(node.GetImageData())
    reslice.SetResliceTransform(transform)
    reslice.SetInterpolationModeToLinear()
    reslice.SetBackgroundLevel(0.0)
    dims = dimensions(reference)
    reslice.SetOutputExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    reslice.SetOutputSpacing(1.0, 1.0, 1.0)
    reslice.SetOutputOrigin(0.0, 0.0, 0.0)
    reslice.Update()
    scene = node.GetScene()
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode",
                                     name or scene.GenerateUniqueName(node.GetName() + " resampled"))
    output.SetAndObserveImageData(reslice.GetOutput())
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    output.SetIJKToRASMatrix(matrix)
    output.CreateDefaultDisplayNodes()
    return output


def _fmt(values) -> str:
    return "x".join(f"{v:.3g}" for v in values)
