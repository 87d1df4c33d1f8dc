"""Run a model at the voxel size it was trained on, and bring its output back onto the case's own grid.

A network's filters are tuned to the voxel size of its training data: a 1 mm BraTS model sees a 2 mm case as a
brain of half the size. So when a case's spacing differs from the model's recorded training spacing by more than
`TOLERANCE` on an axis, the canonical (RAS voxel order) image is resampled to the model's spacing, the model runs
there, and its probabilities are resampled back to the case's grid before labels are painted. Along an axis that
gets coarser the input is first smoothed to the new voxel size (Gaussian of FWHM the new voxel: sigma =
sqrt(factor^2 - 1) / 2.355 source voxels, as the sample generator blurs its template), so thin bright structures
do not alias into specks the network reads as lesions.

Both grids share the first voxel centre and the axes (canonical arrays are axis-aligned), so output voxel i along
an axis sits at i * new / old input voxels: a pure per-axis scaling, trilinear. Label maps are never interpolated,
only probabilities, so the written label map stays on the input's exact grid with the model's label values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOLERANCE = 0.2  # relative spacing difference on any axis above which the case is resampled
MAX_SPACING_MM = 20.0  # coarser than any MRI a tumour can be seen in
# Voxels per channel of a resampled grid (about 400^3; a BraTS case at 0.5 mm has 31 M): a model recorded as trained
# at 0.1 mm would otherwise make a 240 mm case a 20 GiB array before anything is said.
MAX_RESAMPLED_VOXELS = 2**26


def needs_resampling(spacing: Sequence[float], trained: Sequence[float] | None) -> bool:
    """True when the model records its training spacing and the case differs from it by more than TOLERANCE."""
    return bool(trained) and any(abs(have - want) > TOLERANCE * want for have, want in zip(spacing, trained))


def scaled_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """Voxels per axis at `target` spacing that stay inside the field of view of `shape` at `spacing`; refused past
    MAX_RESAMPLED_VOXELS."""
    scaled = tuple(int(np.floor((n - 1) * s / t + 1e-6)) + 1 for n, s, t in zip(shape, spacing, target))
    if np.prod(scaled, dtype=np.float64) > MAX_RESAMPLED_VOXELS:
        from emim.errors import EmimError

        raise EmimError(f"resampling a {'x'.join(map(str, shape))} grid of {mm_text(spacing)} voxels to "
                        f"{mm_text(target)} would make {'x'.join(map(str, scaled))} voxels, more than "
                        f"{MAX_RESAMPLED_VOXELS:,}; give a coarser --spacing (or --native-spacing), or use a model "
                        "trained at a coarser spacing")
    return scaled


def spacing_problem(values: object) -> str | None:
    """Why `values` is not a voxel size in mm (three finite numbers above 0 and at most MAX_SPACING_MM), or None."""
    if not (isinstance(values, (list, tuple)) and len(values) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            and all(np.isfinite(v) and 0 < v <= MAX_SPACING_MM for v in values)):
        return f"must be three voxel sizes in mm above 0 and at most {MAX_SPACING_MM:g}, got {values!r}"
    return None


def mm_text(spacing: Sequence[float]) -> str:
    """A voxel size as people write it: `1 x 1 x 2.5 mm`."""
    return " x ".join(f"{v:g}" for v in spacing) + " mm"


def rescale(channels: np.ndarray, spacing: Sequence[float], target: Sequence[float],
            shape: Sequence[int] | None = None) -> np.ndarray:
    """(C, X, Y, Z) at `spacing` -> (C, *shape) at `target` (default: `scaled_shape`), trilinear, float32.

    Positions past the last source voxel centre (less than one voxel, from rounding the shape) take the edge
    value rather than zero, so the back-resampled probabilities have no dark rim.
    """
    from scipy import ndimage

    shape = tuple(shape) if shape is not None else scaled_shape(channels.shape[1:], spacing, target)
    matrix = [t / s for s, t in zip(spacing, target)]
    sigma = [np.sqrt(max(factor**2 - 1.0, 0.0)) / 2.355 for factor in matrix]
    smoothed = (ndimage.gaussian_filter(np.asarray(c, np.float32), sigma, mode="nearest") if any(sigma) else c
                for c in channels)
    return np.stack([ndimage.affine_transform(np.asarray(channel, np.float32), matrix, output_shape=shape, order=1,
                                              mode="nearest") for channel in smoothed])


def differs(spacing: Sequence[float], target: Sequence[float] | None, rtol: float = 1e-3) -> bool:
    """True when `target` is set and `spacing` is not that spacing (beyond rounding): training at a model's spacing
    resamples every case that is not already on it, not only those `needs_resampling` would (inference tolerates
    20%; training data are prepared once, so they may as well be exact)."""
    return target is not None and any(abs(have - want) > rtol * want for have, want in zip(spacing, target))


def rescale_labels(label: np.ndarray, spacing: Sequence[float], target: Sequence[float],
                   shape: Sequence[int] | None = None) -> np.ndarray:
    """An (X, Y, Z) label map (or mask) at `spacing` -> at `target` on the grid `rescale` makes: nearest neighbour,
    never smoothed, so every voxel keeps one of the values the map holds."""
    from scipy import ndimage

    shape = tuple(shape) if shape is not None else scaled_shape(label.shape, spacing, target)
    matrix = [t / s for s, t in zip(spacing, target)]
    return ndimage.affine_transform(np.asarray(label), matrix, output_shape=shape, order=0, mode="nearest")


def parse_spacing(text: str) -> tuple[float, float, float]:
    """`2` or `1,1,2.5` (or `1x1x2.5`) -> a voxel size in mm per axis (RAS order), each in (0, MAX_SPACING_MM]."""
    try:
        values = [float(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 3) or spacing_problem(values * 3 if len(values) == 1 else values):
        raise ValueError(f"give a voxel size in mm, one value or three (X,Y,Z) above 0, e.g. 2 or 1,1,2.5; got "
                         f"{text!r}")
    return tuple(values * 3 if len(values) == 1 else values)  # type: ignore[return-value]
