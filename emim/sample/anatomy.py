"""Real anatomy for the sample cases: the MNI152 2009a T1 template and its grey/white-matter maps.

The nilearn wheel bundles these three 1 mm volumes, so they are read straight from its data folder with nibabel:
no network, and none of nilearn's heavier imports. Each case sees them through its own random affine and elastic
deformation, so no two cases share an anatomy.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from emim.errors import EmimError
from emim.sample.fields import smooth_noise
from emim.sample.grid import Grid

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
CHANNELS = ("gm", "wm", "mask")
DEPTH_STEP = 2  # depth maps only steer tumour placement, so 2 mm is plenty and 8x cheaper


@dataclass(frozen=True)
class Template:
    """Tissue maps and brain mask as float32 in [0, 1], stacked as CHANNELS, plus maps used to place tumours."""

    volumes: np.ndarray  # (3, X, Y, Z)
    affine: np.ndarray  # voxel -> MNI world (RAS mm)
    wm_depth: np.ndarray  # mm to the nearest non-white-matter voxel, on every DEPTH_STEP-th template voxel
    brain_depth: np.ndarray  # mm to the outside of the brain, on the same coarse grid
    brain_centre: np.ndarray  # MNI world centre of the brain's bounding box

    def depths_at(self, voxels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """White-matter and brain depth (mm) at template voxel coordinates (3, N), for placing tumours."""
        coarse = voxels / DEPTH_STEP
        return tuple(  # type: ignore[return-value]
            ndimage.map_coordinates(depth, coarse, order=1, mode="constant", cval=0.0, prefilter=False)
            for depth in (self.wm_depth, self.brain_depth)
        )


def nilearn_data_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise EmimError("sample data needs the MNI152 template bundled with nilearn: pip install 'emim[sample]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise EmimError(f"nilearn at {folder} lacks {', '.join(missing)}; reinstall it: pip install -U nilearn")
    return folder


@functools.lru_cache(maxsize=2)
def load_template(spacing: float = 1.0) -> Template:
    """Read the template once per process; for voxels coarser than 1 mm, blur it first so sampling does not alias."""
    import nibabel as nib

    folder = nilearn_data_dir()
    images = {key: nib.load(folder / name) for key, name in TEMPLATE_FILES.items()}
    t1 = np.asanyarray(images["t1"].dataobj)
    gm = np.asanyarray(images["gm"].dataobj).astype(np.float32) / 255.0
    wm = np.asanyarray(images["wm"].dataobj).astype(np.float32) / 255.0
    mask = t1 > 0  # the template is skull-stripped: zero outside the brain, no holes inside
    coarse = (slice(None, None, DEPTH_STEP),) * 3
    brain_depth = ndimage.distance_transform_edt(mask[coarse], sampling=DEPTH_STEP).astype(np.float32)
    wm_depth = ndimage.distance_transform_edt(wm[coarse] > 0.5, sampling=DEPTH_STEP).astype(np.float32)
    volumes = np.stack([gm, wm, mask.astype(np.float32)])
    if spacing > 1.0:
        sigma = np.sqrt(spacing**2 - 1.0) / 2.355
        volumes = np.stack([ndimage.gaussian_filter(v, sigma) for v in volumes])
    affine = images["t1"].affine
    index = np.argwhere(mask)
    centre_voxel = (index.min(axis=0) + index.max(axis=0)) / 2.0
    brain_centre = affine[:3, :3] @ centre_voxel + affine[:3, 3]
    return Template(volumes, affine, wm_depth, brain_depth, brain_centre)


@dataclass(frozen=True)
class Deformation:
    """Output world -> template world: elastic displacement (mm, on the output grid), then a random affine."""

    linear: np.ndarray  # 3x3: rotation and scaling
    output_centre: np.ndarray  # output world point mapped onto the template's brain centre (+ translation)
    template_centre: np.ndarray
    elastic: np.ndarray  # (3, *grid.shape) float32, mm

    def to_template_voxels(self, points: np.ndarray, template: Template) -> np.ndarray:
        """Template voxel coordinates (3, ...) of output world points (3, ...) that already carry the elastic shift."""
        shape = (3,) + (1,) * (points.ndim - 1)
        world = np.tensordot(self.linear, points - self.output_centre.reshape(shape), axes=1)
        world += self.template_centre.reshape(shape)
        inverse = np.linalg.inv(template.affine)
        return (np.tensordot(inverse[:3, :3], world, axes=1) + inverse[:3, 3].reshape(shape)).astype(np.float32)


def _rotation(angles: np.ndarray) -> np.ndarray:
    result = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = np.cos(angle), np.sin(angle)
        a, b = [i for i in range(3) if i != axis]
        rot = np.eye(3)
        rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
        result = rot @ result
    return result


def random_deformation(rng: np.random.Generator, grid: Grid, template: Template) -> Deformation:
    """Rotation up to 10 degrees per axis, scaling +-10 % per axis, a few mm of shift, and a smooth elastic warp."""
    angles = np.deg2rad(rng.uniform(-10, 10, 3))
    scales = rng.uniform(0.9, 1.1, 3)
    shift = rng.uniform(-4, 4, 3)
    amplitude_mm = rng.uniform(1.5, 3.5)
    elastic = np.stack([smooth_noise(rng, grid.shape, 30.0 / grid.spacing) for _ in range(3)]) * amplitude_mm
    return Deformation(
        linear=_rotation(angles) @ np.diag(scales),
        output_centre=grid.brain_centre_world + shift,
        template_centre=template.brain_centre,
        elastic=elastic.astype(np.float32),
    )


@dataclass
class Anatomy:
    """Tissue maps of one case on the output grid; fractions sum to at most 1 inside the brain."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray  # bool


def sample_anatomy(template: Template, voxels: np.ndarray) -> Anatomy:
    """Trilinear sampling of the template at template voxel coordinates (3, *grid.shape)."""
    flat = voxels.reshape(3, -1)
    sampled = [
        ndimage.map_coordinates(volume, flat, order=1, mode="constant", cval=0.0, prefilter=False)
        .astype(np.float32)
        .reshape(voxels.shape[1:])
        for volume in template.volumes
    ]
    gm, wm, soft_mask = sampled
    brain = soft_mask > 0.5
    total = gm + wm
    over = np.maximum(total, 1.0)
    gm, wm = gm / over, wm / over
    csf = np.clip(soft_mask - gm - wm, 0.0, 1.0)
    return Anatomy(gm=gm * brain, wm=wm * brain, csf=csf * brain, brain=brain)

