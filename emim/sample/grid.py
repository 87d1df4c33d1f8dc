"""BraTS-like output geometry: the SRI24 grid BraTS 2023 ships (240x240x155 at 1 mm, LPS voxel axes).

The real cases carry the affine diag(-1, -1, 1) with origin (0, 239, 0) (checked with nibabel on the BraTS mini
cases), so `full` reproduces it exactly. `small` covers the same field of view with 2 mm voxels, so a model or a
test sees the same anatomy at an eighth of the voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# where the centre of the brain sits in the full BraTS grid, in voxels (measured on the real mini cases)
BRAIN_CENTRE_VOXEL = (119.5, 130.0, 75.0)


@dataclass(frozen=True)
class Grid:
    """Shape, voxel size (mm) and affine of one output size."""

    name: str
    shape: tuple[int, int, int]
    spacing: float

    @property
    def affine(self) -> np.ndarray:
        """Voxel centres of `small` sit at the centres of 2x2x2 blocks of the full grid, so both share one FOV."""
        half = (self.spacing - 1.0) / 2.0
        return np.array(
            [
                [-self.spacing, 0.0, 0.0, -half],
                [0.0, -self.spacing, 0.0, 239.0 - half],
                [0.0, 0.0, self.spacing, half],
                [0.0, 0.0, 0.0, 1.0],
            ]
        )

    def world(self, index: np.ndarray) -> np.ndarray:
        """World (RAS mm) positions of voxel indices given as (3, ...)."""
        affine = self.affine
        return np.tensordot(affine[:3, :3], index, axes=1) + affine[:3, 3].reshape((3,) + (1,) * (index.ndim - 1))

    def world_axes(self) -> list[np.ndarray]:
        """World coordinate of each voxel along x, y, z; the affine is diagonal, so these broadcast to the grid."""
        affine = self.affine
        return [
            (affine[axis, axis] * np.arange(n) + affine[axis, 3]).astype(np.float32)
            for axis, n in enumerate(self.shape)
        ]

    @property
    def brain_centre_world(self) -> np.ndarray:
        return GRIDS["full"].world(np.array(BRAIN_CENTRE_VOXEL))


GRIDS: dict[str, Grid] = {
    "full": Grid("full", (240, 240, 155), 1.0),
    "small": Grid("small", (120, 120, 78), 2.0),
}
