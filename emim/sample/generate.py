"""One semi-synthetic case from a seed, and a folder of them in the BraTS 2023 layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emim.errors import EmimError
from emim.sample.anatomy import Anatomy, load_template, random_deformation, sample_anatomy
from emim.sample.contrast import MODALITIES, synthesize_modalities
from emim.sample.distractors import cut_field_of_view
from emim.sample.grid import GRIDS, Grid
from emim.sample.tumour import Focus, PlacementError, choose_foci, mass_effect, tumour_labels
from emim.sample.writer import write_nifti_gz

MAX_FOCI = 3
ATTEMPTS = 8
SECOND_FOCUS_CHANCE = 0.2
RANDOMISED_FOCI = (0.6, 0.25, 0.15)  # chance of 1, 2 and 3 foci in a domain-randomised case


@dataclass
class SampleCase:
    """A generated case in memory; `anatomy` keeps the tissue maps the images were made from (tests use them)."""

    case_id: str
    grid: Grid
    images: dict[str, np.ndarray]  # int16, keyed by MODALITIES
    seg: np.ndarray  # uint8, BraTS 2023 labels
    anatomy: Anatomy
    foci: list[Focus]


def case_id(index: int) -> str:
    return f"BraTS-SYN-{index + 1:05d}-000"


def _check_request(size: str, foci: int | None) -> Grid:
    if size not in GRIDS:
        raise EmimError(f"unknown sample size {size!r}; use one of {', '.join(GRIDS)}")
    if foci is not None and not 1 <= foci <= MAX_FOCI:
        raise EmimError(f"--foci must be between 1 and {MAX_FOCI}, got {foci}")
    return GRIDS[size]


def synthesize_case(seed: int, index: int = 0, size: str = "small", foci: int | None = None,
                    randomise: bool = False) -> SampleCase:
    """Case `index` of the set made with `seed`: it depends on (seed, index) only, not on how many cases are made.

    `randomise` (domain randomisation, for training models meant for real scans): one to three foci, wider
    contrast jitter, unlabelled look-alikes and often an axial slab only (`distractors`)."""
    grid = _check_request(size, foci)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    template = load_template(grid.spacing)
    if foci is not None:
        count = foci
    elif randomise:
        count = 1 + int(rng.choice(len(RANDOMISED_FOCI), p=RANDOMISED_FOCI))
    else:
        count = 1 + int(rng.random() < SECOND_FOCUS_CHANCE)
    for attempt in range(ATTEMPTS):
        if foci is None and attempt >= ATTEMPTS // 2 and count > 1:
            count -= 1  # a drawn (not requested) count that keeps failing to fit: try one focus fewer
        deformation = random_deformation(rng, grid, template)
        try:
            chosen = choose_foci(rng, grid, template, deformation, count, randomise)
            points = np.stack(np.meshgrid(*grid.world_axes(), indexing="ij"))
            points = mass_effect(points, chosen) + deformation.elastic
            anatomy = sample_anatomy(template, deformation.to_template_voxels(points, template))
            del points
            seg = tumour_labels(rng, grid, anatomy, chosen)
        except PlacementError:
            continue
        images = synthesize_modalities(rng, grid, anatomy, seg, randomise)
        if randomise:
            cut_field_of_view(rng, grid, images, seg, anatomy.brain)
        return SampleCase(case_id(index), grid, images, seg, anatomy, chosen)
    raise EmimError(f"could not fit {count} separate tumour foci into case {case_id(index)} (seed {seed}); "
                    "ask for fewer foci")


def write_case(case: SampleCase, out_dir: Path) -> Path:
    folder = Path(out_dir) / case.case_id
    folder.mkdir(parents=True, exist_ok=True)
    affine = case.grid.affine
    for modality in MODALITIES:
        write_nifti_gz(case.images[modality], affine, folder / f"{case.case_id}-{modality}.nii.gz")
    write_nifti_gz(case.seg, affine, folder / f"{case.case_id}-seg.nii.gz")
    return folder


def make_sample_cases(
    out_dir: str | Path,
    cases: int,
    seed: int,
    size: str = "small",
    foci: int | None = None,
    on_case: Callable[[int, Path], None] | None = None,
    randomise: bool = False,
) -> list[Path]:
    """Write `cases` cases under `out_dir` (BraTS-SYN-xxxxx-000/...-{t1n,t1c,t2w,t2f,seg}.nii.gz); return their folders.

    `foci=None` gives one focus, sometimes two; `randomise`: see `synthesize_case`; `on_case(i, folder)` is called
    after each case (progress).
    """
    _check_request(size, foci)
    if cases < 1:
        raise EmimError(f"--cases must be at least 1, got {cases}")
    folders = []
    for index in range(cases):
        folder = write_case(synthesize_case(seed, index, size, foci, randomise), Path(out_dir))
        folders.append(folder)
        if on_case is not None:
            on_case(index, folder)
    return folders
