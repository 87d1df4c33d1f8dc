"""Voxel grids in physical space: canonical reorientation, grid comparison and physical-space resampling.

Every volume is brought to the closest canonical (RAS+) voxel order by flips and axis swaps only (no
interpolation), so models always see the same anatomical axis order while the original grid can be restored
exactly. Grids are compared in that canonical form, so two files that store the same grid in different voxel
orders count as the same grid. Affines are nibabel's (RAS world, mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations

CANONICAL = orientations.axcodes2ornt("RAS")


@dataclass(frozen=True)
class Grid:
    """A voxel grid in canonical order: size, spacing (mm), origin (mm, RAS) and axis directions (columns)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    @property
    def affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = self.direction * np.asarray(self.spacing)
        affine[:3, 3] = self.origin
        return affine

    @classmethod
    def from_affine(cls, affine: np.ndarray, shape: tuple[int, ...]) -> "Grid":
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        return cls(tuple(int(s) for s in shape[:3]), tuple(float(s) for s in spacing),
                   tuple(float(o) for o in affine[:3, 3]), affine[:3, :3] / spacing)


def orientation(affine: np.ndarray) -> np.ndarray:
    """The flips/axis swaps that take a volume with this affine to canonical RAS voxel order."""
    return orientations.io_orientation(affine)


def canonical_grid(affine: np.ndarray, shape: tuple[int, ...]) -> Grid:
    """The grid of a volume after `to_canonical`: same voxels in space, canonical voxel order."""
    ornt = orientation(affine)
    canonical_affine = affine @ orientations.inv_ornt_aff(ornt, shape[:3])
    canonical_shape = tuple(int(shape[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    return Grid.from_affine(canonical_affine, canonical_shape)


def _reorient(array: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Apply `ornt` to the last three axes of `array` (leading axes, e.g. channels, are kept)."""
    spatial_first = np.moveaxis(array, (-3, -2, -1), (0, 1, 2))
    return np.moveaxis(orientations.apply_orientation(spatial_first, ornt), (0, 1, 2), (-3, -2, -1))


def to_canonical(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """(..., X, Y, Z) in the file's voxel order -> canonical RAS voxel order."""
    return _reorient(array, orientation(affine))


def from_canonical(array: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Inverse of `to_canonical`: back to the voxel order of the file with this affine."""
    return _reorient(array, orientations.ornt_transform(CANONICAL, orientation(affine)))


def grid_differences(grid: Grid, reference: Grid, tolerance: float = 1e-3) -> list[str]:
    """What differs between two grids, in words; empty when they match.

    `tolerance` is relative to the reference spacing for spacing and origin (1e-3 of a 1 mm voxel = 1 micron,
    well above float32 header rounding) and absolute for the direction cosines.
    """
    differences = []
    if grid.shape != reference.shape:
        differences.append(f"size {_fmt(grid.shape)} vs {_fmt(reference.shape)}")
    ref_spacing = np.asarray(reference.spacing)
    if np.any(np.abs(np.asarray(grid.spacing) - ref_spacing) > tolerance * ref_spacing):
        differences.append(f"spacing {_fmt(grid.spacing)} vs {_fmt(reference.spacing)} mm")
    offset = np.abs(np.asarray(grid.origin) - np.asarray(reference.origin))
    if np.any(offset > tolerance * ref_spacing):
        differences.append(f"origin {_fmt(grid.origin)} vs {_fmt(reference.origin)} mm")
    if np.any(np.abs(grid.direction - reference.direction) > tolerance):
        differences.append("axis directions differ (rotated or oblique)")
    return differences


def _fmt(values) -> str:
    return "x".join(f"{v:g}" for v in values)


def _to_sitk(array: np.ndarray, grid: Grid):
    """A SimpleITK image of a canonical (X, Y, Z) array; ITK's world is LPS, so x and y are negated."""
    import SimpleITK as sitk

    lps = np.diag([-1.0, -1.0, 1.0])
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(grid.spacing)
    image.SetOrigin(tuple(float(v) for v in lps @ np.asarray(grid.origin)))
    image.SetDirection(tuple(float(v) for v in (lps @ grid.direction).ravel()))
    return image


def resample(array: np.ndarray, grid: Grid, target: Grid, nearest: bool = False) -> np.ndarray:
    """Resample a canonical (X, Y, Z) array on `grid` onto `target` in physical space (SimpleITK).

    Linear interpolation for images, nearest neighbour for labels; points outside the source become 0. The
    array's values are never resized or stretched to fit: each target voxel takes the value at its own position.
    """
    import SimpleITK as sitk

    source = _to_sitk(array.astype(np.float32, copy=False), grid)
    reference = _to_sitk(np.zeros((1, 1, 1), np.float32), target)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in target.shape])
    resampler.SetOutputSpacing(reference.GetSpacing())
    resampler.SetOutputOrigin(reference.GetOrigin())
    resampler.SetOutputDirection(reference.GetDirection())
    resampler.SetInterpolator(sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear)
    resampler.SetDefaultPixelValue(0.0)
    resampler.SetOutputPixelType(sitk.sitkFloat32)
    return sitk.GetArrayFromImage(resampler.Execute(source)).transpose(2, 1, 0)
