"""Tumour geometry: where the foci go, how they push the anatomy, and which voxels get which BraTS label.

Each focus is a bumpy ellipsoidal core in deep white matter. A "ring" core has a necrotic centre (label 1) inside
an enhancing rim (3); a "solid" core enhances throughout; a "low-grade" core does not enhance (all 1). Edema (2)
is a bumpy margin around the core plus fingers that follow white matter, never entering CSF. Every focus is one
face-connected region and foci stay at least two voxels apart, so the number of whole-tumour components always
equals the number of foci asked for, whatever connectivity a metric uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from emim.sample.anatomy import Anatomy, Deformation, Template
from emim.sample.fields import smooth_noise
from emim.sample.grid import Grid

NCR, ED, ET = 1, 2, 3
KINDS = ("ring", "solid", "low-grade")
KIND_WEIGHTS = (0.7, 0.1, 0.2)
RANDOMISED_KIND_WEIGHTS = (0.5, 0.3, 0.2)  # domain-randomised cases: more solidly enhancing cores
# core radius range (mm) for one focus and for each of several; domain-randomised cases reach large gliomas
RADIUS_MM = {False: ((10.0, 22.0), (7.0, 14.0)), True: ((8.0, 32.0), (6.0, 18.0))}
FACE = ndimage.generate_binary_structure(3, 1)
FULL = ndimage.generate_binary_structure(3, 3)


class PlacementError(RuntimeError):
    """No room for the requested foci in this anatomy; the generator draws again."""


@dataclass(frozen=True)
class Focus:
    """One tumour focus in output world coordinates (mm)."""

    centre: np.ndarray
    radius_mm: float
    shape: np.ndarray  # 3x3: rotation times axis lengths (about 1), so the core is an ellipsoid
    kind: str
    necrosis_fraction: float  # NCR radius as a fraction of the core radius ("ring" only)
    margin_mm: float  # edema all around the core
    spread_mm: float  # edema reach along white matter beyond the margin
    push: float  # mass effect: fraction of the core radius by which the surroundings are displaced

    @property
    def reach_mm(self) -> float:
        return self.radius_mm * 1.6 + self.margin_mm * 1.5 + self.spread_mm + 4.0


def _random_focus(rng: np.random.Generator, centre: np.ndarray, radius: float, randomise: bool) -> Focus:
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return Focus(
        centre=centre,
        radius_mm=radius,
        shape=q @ np.diag(rng.uniform(0.8, 1.25, 3)),
        kind=str(rng.choice(KINDS, p=RANDOMISED_KIND_WEIGHTS if randomise else KIND_WEIGHTS)),
        necrosis_fraction=float(rng.uniform(0.55, 0.85)),
        margin_mm=float(rng.uniform(4.0, 10.0)),
        spread_mm=float(rng.uniform(6.0, 22.0)),
        push=float(rng.uniform(0.25, 0.55)),
    )


def choose_foci(
    rng: np.random.Generator, grid: Grid, template: Template, deformation: Deformation, count: int,
    randomise: bool = False,
) -> list[Focus]:
    """Centres in deep white matter of this case's (unpushed) anatomy, away from the brain's edge and each other
    (`randomise`: larger cores, allowed nearer the edge, where the brain cuts them)."""
    step = max(1, round(4.0 / grid.spacing))
    index = np.stack(np.meshgrid(*[np.arange(0, n, step) for n in grid.shape], indexing="ij")).reshape(3, -1)
    world = grid.world(index.astype(np.float64))
    moved = world + deformation.elastic[:, index[0], index[1], index[2]]
    voxels = deformation.to_template_voxels(moved, template)
    wm_depth, brain_depth = template.depths_at(voxels)
    foci: list[Focus] = []
    for _ in range(count):
        radius = float(rng.uniform(*RADIUS_MM[randomise][0 if count == 1 else 1]))
        ok = (wm_depth >= 3.0) & (brain_depth >= (radius * 0.8 + 6.0 if randomise else radius * 1.3 + 8.0))
        for other in foci:
            distance = np.linalg.norm(world - other.centre[:, None], axis=0)
            ok &= distance >= 1.6 * (radius + other.radius_mm) + 20.0
        candidates = np.flatnonzero(ok)
        if candidates.size == 0:
            raise PlacementError(f"no room for tumour focus {len(foci) + 1} of {count}")
        # pick the axial level first: deep white matter is most plentiful high up (centrum semiovale), but gliomas
        # are not, so every level with room is equally likely
        level = rng.choice(np.unique(index[2, candidates]))
        chosen = rng.choice(candidates[index[2, candidates] == level])
        centre = world[:, chosen] + rng.uniform(-step, step, 3) * grid.spacing / 2
        foci.append(_random_focus(rng, centre, radius, randomise))
    return foci


def mass_effect(points: np.ndarray, foci: list[Focus]) -> np.ndarray:
    """Backward map of a radial push (TumorSim-like): tissue near a core moves out by u(r) = push * R^3 / r^2.

    Inside the core radius u grows linearly (that tissue is replaced by tumour anyway); the map stays monotone
    in r because push < 1, so the anatomy folds nowhere.
    """
    result = points.copy()
    for focus in foci:
        offset = points - focus.centre.reshape((3,) + (1,) * (points.ndim - 1)).astype(np.float32)
        r = np.sqrt(np.sum(offset * offset, axis=0))
        radius = np.float32(focus.radius_mm)
        push = np.float32(focus.push)
        result -= offset * np.where(r < radius, push, push * radius**3 / np.maximum(r, 1e-3) ** 3)
    return result


def _component_containing(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(mask, structure=FACE)
    keep = np.unique(labels[seed & mask])
    return np.isin(labels, keep[keep > 0])


def _focus_box(grid: Grid, focus: Focus) -> tuple[slice, ...]:
    centre = np.linalg.solve(grid.affine[:3, :3], focus.centre - grid.affine[:3, 3])
    half = int(np.ceil(focus.reach_mm / grid.spacing))
    return tuple(
        slice(max(0, int(round(c)) - half), min(n, int(round(c)) + half + 1)) for c, n in zip(centre, grid.shape)
    )


def _paint_focus(
    rng: np.random.Generator, grid: Grid, anatomy: Anatomy, focus: Focus, seg: np.ndarray
) -> None:
    """Label one focus into `seg` (in place), keeping clear of foci already painted."""
    box = _focus_box(grid, focus)
    shape = tuple(s.stop - s.start for s in box)
    axes = [a[s] - c for a, s, c in zip(grid.world_axes(), box, focus.centre)]
    offset = np.stack(np.meshgrid(*axes, indexing="ij"))
    local = np.tensordot(np.linalg.inv(focus.shape), offset, axes=1)
    rho = np.sqrt(np.sum(local * local, axis=0)) / focus.radius_mm
    noise = [smooth_noise(rng, shape, length / grid.spacing) for length in (12.0, 8.0, 14.0, 10.0)]
    bumpy = rho / np.clip(1.0 + 0.16 * noise[0], 0.5, None)

    brain = anatomy.brain[box]
    taken = ndimage.binary_dilation(seg[box] > 0, structure=FULL, iterations=2)
    allowed = brain & ~taken
    core = _component_containing((bumpy < 1.0) & allowed, bumpy == bumpy.min())
    if not core.any():
        raise PlacementError("tumour core fell outside the brain")

    inner = ndimage.binary_erosion(core, structure=FULL)
    if focus.kind == "ring":
        ncr = (bumpy < focus.necrosis_fraction * (1.0 + 0.2 * noise[1])) & inner
    elif focus.kind == "low-grade":
        ncr = core
    else:
        ncr = np.zeros_like(core)
    et = core & ~ncr

    watery = allowed & (anatomy.csf[box] < 0.5)
    outside = ndimage.distance_transform_edt(~core, sampling=grid.spacing)
    near = (outside < focus.margin_mm * np.clip(1.0 + 0.45 * noise[2], 0.2, None)) & watery
    paths = watery & (anatomy.wm[box] + 0.2 * noise[3] > 0.55)
    steps = max(1, int(round(focus.spread_mm / grid.spacing)))
    grown = ndimage.binary_dilation(core | near, structure=FACE, iterations=steps, mask=paths)
    whole = _component_containing(core | near | grown, core)

    target = seg[box]
    target[whole & ~core] = ED
    target[ncr] = NCR
    target[et] = ET


def tumour_labels(rng: np.random.Generator, grid: Grid, anatomy: Anatomy, foci: list[Focus]) -> np.ndarray:
    """uint8 BraTS 2023 labels on the output grid: 1 necrotic/non-enhancing core, 2 edema, 3 enhancing tumour."""
    seg = np.zeros(grid.shape, dtype=np.uint8)
    for focus in foci:
        _paint_focus(rng, grid, anatomy, focus, seg)
    components = ndimage.label(seg > 0, structure=FULL)[1]
    if components != len(foci):
        raise PlacementError(f"{components} tumour components instead of {len(foci)}")
    return seg
