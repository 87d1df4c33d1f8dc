"""Smooth random fields (elastic displacements, bias fields, tumour bumps) made by separable B-spline upsampling.

A coarse grid of random control values is upsampled one axis at a time with cubic B-spline weight matrices. That is
a few matrix products instead of a 3D spline zoom or a wide Gaussian filter, which keeps a 240x240x155 field to a
fraction of a second on two cores.
"""

from __future__ import annotations

import numpy as np


def _cubic_bspline(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    return np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _upsample_matrix(n_out: int, n_coarse: int) -> np.ndarray:
    """(n_out, n_coarse) weights; the outer control points only shape the edges, so they are never extrapolated."""
    positions = np.linspace(1.0, n_coarse - 2.0, n_out)
    return _cubic_bspline(positions[:, None] - np.arange(n_coarse)[None, :]).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], length_vox: float) -> np.ndarray:
    """Zero-mean, unit-std random field over `shape` whose features are about `length_vox` voxels across."""
    coarse = tuple(max(4, int(np.ceil(n / max(length_vox, 1.0))) + 3) for n in shape)
    field = rng.standard_normal(coarse).astype(np.float32)
    for axis, n in enumerate(shape):
        matrix = _upsample_matrix(n, coarse[axis])
        field = np.moveaxis(np.tensordot(matrix, field, axes=([1], [axis])), 0, axis)
    field -= field.mean()
    std = float(field.std())
    return field / std if std > 0 else field
