"""Unlabelled look-alikes for domain-randomised sample cases (`make-sample --randomise`), in the spirit of SynthSeg.

A model trained on clean generated brains learns "bright on FLAIR = tumour" and "bright on t1c = enhancing", and
then paints every bright speck of a real scan: skull-strip remnants at the brain's edge, enhancing vessels and dura
on t1c, white-matter hyperintensities on FLAIR. These look-alikes are added here, never labelled, so the only way to
a low loss is to learn what a tumour looks like across all four sequences:

- an edge rim (1-4 mm inside the brain's boundary) brighter or darker per modality, patchily, and more often
  bright on t1c (dura, skull-strip remnants);
- thin enhancing tubes on t1c (vessels, dural sinuses) in CSF and near the surface, dark on t2w (flow voids);
- enhancing choroid plexus: blobs in the ventricles, bright on t1c;
- small white-matter hyperintensities, bright on t2w and FLAIR, a little dark on t1n and t1c.
Each is a multiplicative factor on the noiseless image (white matter = 1), kept clear of the tumour (4 mm, less a
sub-voxel blur); outside the brain the image is zero whatever the factor. Last, `cut_field_of_view` often keeps
only an axial slab around the tumour, as in clinical scans and the real BraTS mini cases (70-98 of 155 slices), so
the model meets brain tissue that ends at the volume's edge.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from emim.sample.anatomy import Anatomy
from emim.sample.fields import smooth_noise
from emim.sample.grid import Grid

RIM_CHANCE, VESSEL_CHANCE, PLEXUS_CHANCE, WMH_CHANCE, CUT_CHANCE = 0.8, 0.7, 0.6, 0.6, 0.6
SLAB_MM = (60.0, 120.0)  # axial extent kept by a field-of-view cut
# per modality: (low, high) of the factor a white-matter hyperintensity multiplies the image by
WMH_CONTRAST = {"t1n": (0.8, 0.95), "t1c": (0.8, 0.95), "t2w": (1.3, 1.8), "t2f": (1.5, 2.3)}
VESSEL_CONTRAST = {"t1n": (0.95, 1.1), "t1c": (1.4, 2.3), "t2w": (0.5, 0.8), "t2f": (0.8, 1.2)}
PLEXUS_CONTRAST = {"t1n": (1.0, 1.6), "t1c": (2.0, 4.0), "t2w": (0.4, 0.8), "t2f": (2.0, 4.0)}  # CSF is ~0.3


def _rim(rng: np.random.Generator, grid: Grid, depth: np.ndarray, clear: np.ndarray,
         modalities: tuple[str, ...]) -> dict[str, np.ndarray]:
    width = rng.uniform(1.0, 4.0)
    patch = np.clip(0.5 + 0.5 * smooth_noise(rng, grid.shape, 15.0 / grid.spacing), 0.0, 1.0)
    # the distance map gives the outermost brain voxel one voxel of depth, so the rim is measured from there
    weight = (np.clip(1.0 - (depth - grid.spacing) / width, 0.0, 1.0) * patch * clear).astype(np.float32)
    return {m: np.float32(np.exp(rng.normal(0.3 if m == "t1c" else 0.0, 0.35)) - 1.0) * weight for m in modalities}


def _vessels(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, depth: np.ndarray,
             clear: np.ndarray) -> np.ndarray:
    width = rng.uniform(0.08, 0.2)  # where two independent fields are both near zero: lines, not sheets
    tubes = (np.abs(smooth_noise(rng, grid.shape, 6.0 / grid.spacing)) < width) & \
        (np.abs(smooth_noise(rng, grid.shape, 6.0 / grid.spacing)) < width)
    where = (anatomy.csf > 0.3) | (depth < 6.0)
    return ndimage.gaussian_filter((tubes & where & clear).astype(np.float32), 0.5)


def _blobs(rng: np.random.Generator, grid: Grid, where: np.ndarray, count: int, radius_mm: tuple[float, float]
           ) -> np.ndarray:
    """`count` soft balls (peak 1) centred in `where`, kept inside `where`."""
    candidates = np.argwhere(where)
    blobs = np.zeros(grid.shape, dtype=np.float32)
    if candidates.size == 0:
        return blobs
    for _ in range(count):
        centre = candidates[rng.integers(len(candidates))]
        radius = rng.uniform(*radius_mm) / grid.spacing
        half = int(np.ceil(2 * radius))
        box = tuple(slice(max(c - half, 0), min(c + half + 1, n)) for c, n in zip(centre, grid.shape))
        offsets = np.meshgrid(*[np.arange(s.start, s.stop) - c for s, c in zip(box, centre)], indexing="ij")
        blob = np.exp(-sum(o.astype(np.float32) ** 2 for o in offsets) / (2 * radius**2))
        blobs[box] = np.maximum(blobs[box], blob * (blob > 0.3))
    return blobs * where


def distractor_factors(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, seg: np.ndarray,
                       modalities: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per modality (keys of WMH_CONTRAST), a float32 factor (1 = unchanged) for the noiseless image: the module
    docstring's look-alikes."""
    clear = ndimage.distance_transform_edt(seg == 0, sampling=grid.spacing) > 4.0
    depth = ndimage.distance_transform_edt(anatomy.brain, sampling=grid.spacing).astype(np.float32)
    factors = {m: np.ones(grid.shape, dtype=np.float32) for m in modalities}
    if rng.random() < RIM_CHANCE:
        for m, change in _rim(rng, grid, depth, clear, modalities).items():
            factors[m] += change
    if rng.random() < VESSEL_CHANCE:
        vessels = _vessels(rng, grid, anatomy, depth, clear)
        for m in modalities:
            factors[m] += np.float32(rng.uniform(*VESSEL_CONTRAST[m]) - 1.0) * vessels
    if rng.random() < PLEXUS_CHANCE:
        ventricles = (anatomy.csf > 0.8) & (depth > 25.0) & clear
        plexus = _blobs(rng, grid, ventricles, 2 + rng.poisson(2), (2.0, 5.0))
        for m in modalities:
            factors[m] += np.float32(rng.uniform(*PLEXUS_CONTRAST[m]) - 1.0) * plexus
    if rng.random() < WMH_CHANCE:
        blobs = _blobs(rng, grid, (anatomy.wm > 0.7) & clear, 1 + rng.poisson(3), (1.5, 5.0))
        for m in modalities:
            factors[m] += np.float32(rng.uniform(*WMH_CONTRAST[m]) - 1.0) * blobs
    return {m: np.clip(f, 0.2, None) for m, f in factors.items()}


def cut_field_of_view(rng: np.random.Generator, grid: Grid, images: dict[str, np.ndarray], seg: np.ndarray,
                      brain: np.ndarray) -> None:
    """Often (CUT_CHANCE) zero every image outside an axial slab of SLAB_MM that holds the whole tumour, in place;
    `brain` (the case's anatomy mask) is cut with them, so "non-zero = brain" stays true."""
    if rng.random() >= CUT_CHANCE:
        return
    slices = np.flatnonzero(seg.any(axis=(0, 1)))
    margin = int(np.ceil(8.0 / grid.spacing))
    low, high = max(int(slices[0]) - margin, 0), min(int(slices[-1]) + margin + 1, grid.shape[2])
    extent = max(int(rng.uniform(*SLAB_MM) / grid.spacing), high - low)
    start = int(rng.integers(max(high - extent, 0), min(low, grid.shape[2] - extent) + 1)) \
        if extent < grid.shape[2] else 0
    outside = np.ones(grid.shape[2], bool)
    outside[start:start + extent] = False
    for image in images.values():
        image[:, :, outside] = 0
    brain[:, :, outside] = False
