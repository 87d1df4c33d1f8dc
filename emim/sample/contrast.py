"""Per-modality appearance: tissue and tumour classes mixed into four unnormalised MRI contrasts.

Class means are ratios to white matter, after BrainWeb's T1/T2 tissue tables and the BraTS appearance rules
(enhancing tumour bright on t1c against both t1n and white matter, necrosis dark on t1c and bright on t2w, edema
bright on FLAIR, CSF dark on FLAIR). Each case jitters them (SynthSeg-style), and acquisition effects follow:
partial volume at label edges, optional thick-slice blur, a smooth bias field, an arbitrary global scale per
modality (BraTS is not normalised) and Rician noise. Outside the brain every voxel is exactly 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from emim.contract import BRATS_MODALITIES
from emim.sample.anatomy import Anatomy
from emim.sample.distractors import distractor_factors
from emim.sample.fields import smooth_noise
from emim.sample.grid import Grid
from emim.sample.tumour import ED, ET, NCR

MODALITIES = BRATS_MODALITIES  # the generated cases are BraTS-layout
CLASSES = ("wm", "gm", "csf", "ncr", "ed", "et")
# ratio of each class's mean to white matter
APPEARANCE: dict[str, tuple[float, ...]] = {
    "t1n": (1.0, 0.72, 0.32, 0.55, 0.80, 0.78),
    "t1c": (1.0, 0.74, 0.34, 0.50, 0.82, 1.65),
    "t2w": (1.0, 1.40, 3.30, 2.70, 1.80, 1.55),
    "t2f": (1.0, 1.25, 0.30, 1.60, 2.30, 1.55),
}
JITTER = 0.12  # +- relative change of each non-WM class mean per case
RANDOMISED_JITTER = 0.25  # the same for domain-randomised cases
WM_LEVEL = (120.0, 1500.0)  # white-matter intensity range, drawn log-uniformly per modality
EDEMA_WEIGHT = (0.8, 1.0)  # edema replaces this fraction of the tissue it infiltrates; the rest shows through
LESION_TEXTURE = 0.16  # relative std of the intensity inside the tumour (real lesions are heterogeneous)
THICK_SLICE_CHANCE = {"t1n": 0.15, "t1c": 0.15, "t2w": 0.35, "t2f": 0.35}


def _tumour_fractions(seg: np.ndarray, spacing: float) -> tuple[tuple[slice, ...], dict[int, np.ndarray]]:
    """Partial-volume fractions in a padded box around the tumour: label masks softened by a Gaussian.

    Edema gets a slightly wider blur (1 mm instead of 0.8 mm): its signal fades out rather than stopping at a wall,
    but its thin white-matter fingers must still look like edema.
    """
    index = np.argwhere(seg > 0)
    pad = 6
    box = tuple(
        slice(max(0, lo - pad), min(n, hi + pad + 1)) for lo, hi, n in zip(index.min(0), index.max(0), seg.shape)
    )
    local = seg[box]
    sigma_mm = {NCR: 0.8, ED: 1.0, ET: 0.8}
    return box, {
        label: ndimage.gaussian_filter((local == label).astype(np.float32), sigma_mm[label] / spacing)
        for label in (NCR, ED, ET)
    }


def _edema_strength(rng: np.random.Generator, seg_box: np.ndarray, spacing: float) -> np.ndarray:
    """How much of the infiltrated tissue edema replaces: most next to the core, less towards its outer edge."""
    core = np.isin(seg_box, (NCR, ET))
    distance = ndimage.distance_transform_edt(~core, sampling=spacing)
    grade = np.exp(-distance / rng.uniform(8.0, 20.0)).astype(np.float32)
    return np.float32(rng.uniform(*EDEMA_WEIGHT)) * (0.75 + 0.25 * grade)


def _class_means(rng: np.random.Generator, modality: str, jitter: float) -> np.ndarray:
    means = np.array(APPEARANCE[modality], dtype=np.float32)
    means[1:] *= rng.uniform(1 - jitter, 1 + jitter, len(means) - 1).astype(np.float32)
    return means


def _rician(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt(real * real + imaginary * imaginary)


def synthesize_modalities(
    rng: np.random.Generator, grid: Grid, anatomy: Anatomy, seg: np.ndarray, randomise: bool = False
) -> dict[str, np.ndarray]:
    """int16 images, one per modality, on the grid of `seg`; `randomise` widens the contrast jitter and adds the
    unlabelled look-alikes of `distractors`."""
    box, tumour = _tumour_fractions(seg, grid.spacing)
    box_shape = tuple(s.stop - s.start for s in box)
    edema = _edema_strength(rng, seg[box], grid.spacing) * tumour[ED]
    healthy = np.ones(grid.shape, dtype=np.float32)
    healthy[box] -= np.clip(tumour[NCR] + tumour[ET] + edema, 0.0, 1.0)
    tissue = [anatomy.wm * healthy, anatomy.gm * healthy, anatomy.csf * healthy]
    heterogeneity = 1.0 + 0.03 * smooth_noise(rng, grid.shape, 3.0 / grid.spacing)
    shared_texture = smooth_noise(rng, box_shape, 4.0 / grid.spacing)
    lesion = [tumour[NCR], edema, tumour[ET]]
    factors = distractor_factors(rng, grid, anatomy, seg, MODALITIES) if randomise else {}

    images: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        means = _class_means(rng, modality, RANDOMISED_JITTER if randomise else JITTER)
        image = sum(m * f for m, f in zip(means[:3], tissue))
        own_texture = smooth_noise(rng, box_shape, 3.0 / grid.spacing)
        texture = 1.0 + LESION_TEXTURE * (0.7 * shared_texture + 0.3 * own_texture)
        image[box] += sum(m * f for m, f in zip(means[3:], lesion)) * texture
        if randomise:
            image *= factors[modality]
        images[modality] = _acquire(rng, image * heterogeneity, grid, modality, anatomy.brain)
    return images


def _acquire(rng: np.random.Generator, image: np.ndarray, grid: Grid, modality: str, brain: np.ndarray) -> np.ndarray:
    """Scanner effects on a noiseless image (WM = 1): slice blur, bias, global scale, Rician noise, skull-strip."""
    if rng.random() < THICK_SLICE_CHANCE[modality]:
        thickness_mm = rng.uniform(3.0, 5.0)
        image = ndimage.gaussian_filter1d(image, thickness_mm / 2.355 / grid.spacing, axis=2)
    image *= np.exp(np.float32(rng.uniform(0.08, 0.18)) * smooth_noise(rng, grid.shape, 70.0 / grid.spacing))
    level = float(np.exp(rng.uniform(*np.log(WM_LEVEL))))
    image = _rician(rng, image * np.float32(level), level * rng.uniform(0.015, 0.04))
    out = np.zeros(grid.shape, dtype=np.int16)
    out[brain] = np.clip(np.rint(image[brain]), 1, np.iinfo(np.int16).max)  # 0 means "outside the brain"
    return out
