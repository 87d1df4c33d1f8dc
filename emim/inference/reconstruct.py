"""Masked reconstruction of a whole case by a pretraining: what the Slicer module shows to judge a pretraining.

The volume (canonical RAS voxel order, normalised as in the pretraining) is zero-padded at its high ends up to a
multiple of the model's crop size and cut into crops without overlap, starting at voxel 0. For each crop, in
x-then-y-then-z order, a mask is drawn from one generator seeded with `seed`, so the same seed gives the same
masks and, the network being deterministic in eval mode, the same files. A `modal` mask hides the same modality
in every crop (chosen from the seed, or by `hide`), so a whole sequence is synthesised from the others; `patch`,
`position` and `hybrid` masks are drawn per crop as in pretraining. Crops of pure air (no non-zero voxel in any
modality) are masked too but not run through the network: their hidden voxels stay at the background value 0.

Outputs per modality, all in the pretraining's normalised units (z-scores over the brain for zscore-nonzero) on
the input's exact grid: `<modality>_masked` (hidden patches set to 0, the background value after normalisation),
`<modality>_reconstruction` (the input with hidden patches replaced by the prediction, so visible voxels are the
normalised input exactly) and `<modality>_mask` (uint8, 1 = hidden). One mask file per modality, rather than one
label map, because a position or patch mask hides the same voxel in several modalities; each file is a Slicer
label overlay for its modality.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emim.contract import MASK_OUTPUT, METADATA_FILE, RECONSTRUCTION_OUTPUTS, REPORT_OUTPUT
from emim.data.cases import Case
from emim.data.loading import load_case
from emim.errors import EmimError
from emim.pretrained import PretrainedWeights, load_into, read_pretrained
from emim.report import REPORT, RunReport
from emim.model.tokens import unpatchify
from emim.pretrain.masks import MaskConfig, modal_mask, sample_mask
from emim.pretrain.model import EMIMPretrainer
from emim.progress import Progress
from emim.device import autocast, resolve_device


@dataclass
class Reconstructor:
    network: EMIMPretrainer
    weights: PretrainedWeights
    device: torch.device

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.network.config.modalities

    def description(self) -> dict[str, Any]:
        """Name, task and SHA-256 of what the weights came from, for run reports (a model folder's recorded
        checksum, else the checkpoint file's)."""
        from emim.report import file_sha256

        source = self.weights.source
        metadata = source / METADATA_FILE
        digest = json.loads(metadata.read_text())["sha256"] if metadata.is_file() else \
            file_sha256(source) if source.is_file() else None
        return {"name": source.name, "task": "pretraining", "sha256": digest, "step": self.weights.step}


def load_reconstructor(source: str | Path, device: str = "auto",
                       warn: Callable[[str], None] | None = None) -> Reconstructor:
    """Encoder + MIM decoder of a pretraining run, checkpoint or exported pretraining model."""
    weights = read_pretrained(source)
    network = EMIMPretrainer(weights.config, pbt_levels=0)
    load_into(network.encoder, weights, "encoder.")
    load_into(network.decoder, weights, "decoder.")
    resolved = resolve_device(device, warn)
    return Reconstructor(network.to(resolved).eval(), weights, resolved)


def mask_config(weights: PretrainedWeights, pattern: str, patch_ratio: float | None = None,
                position_ratio: float | None = None) -> MaskConfig:
    """The pretraining's mask ratios (defaults where unknown) with the requested pattern and overrides."""
    saved = dict(weights.mask or {})
    base = MaskConfig(**{k: tuple(v) if k == "hybrid_probs" else v for k, v in saved.items()}) if saved \
        else MaskConfig()
    overrides = {"patch_ratio": patch_ratio, "position_ratio": position_ratio}
    return replace(base, pattern=pattern, **{k: v for k, v in overrides.items() if v is not None})


def window_masks(windows: int, modalities: int, positions: int, config: MaskConfig, seed: int,
                 hide: Sequence[int] | None = None) -> torch.Tensor:
    """(W, M, N) boolean masks (True = hidden), one per window, reproducible from `seed`; a modal mask hides the
    modalities `hide` (default: one drawn from the seed)."""
    generator = torch.Generator().manual_seed(seed)
    if config.pattern == "modal":
        if modalities < 2:
            raise EmimError("a modal mask hides one whole modality and needs a model with at least two")
        if hide is None:
            mask = modal_mask(modalities, positions, generator)
        else:
            mask = torch.zeros(modalities, positions, dtype=torch.bool)
            mask[list(hide)] = True
        return mask.expand(windows, modalities, positions).clone()
    return torch.stack([sample_mask(modalities, positions, config, generator)[0] for _ in range(windows)])


def _voxel_mask(masks: torch.Tensor, grid: tuple[int, int, int], patch: int) -> torch.Tensor:
    """(B, M, N) token masks -> (B, M, X, Y, Z) voxel masks of a crop."""
    b, m = masks.shape[:2]
    voxels = masks.reshape(b, m, *grid)
    for axis in (2, 3, 4):
        voxels = voxels.repeat_interleave(patch, dim=axis)
    return voxels


@torch.no_grad()
def reconstruct_volume(model: Reconstructor, image: np.ndarray, config: MaskConfig, seed: int,
                       hide: Sequence[int] | None = None, batch_size: int = 2,
                       on_batch: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """(M, X, Y, Z) normalised image -> {"masked", "reconstruction": float32, "mask": bool}, each (M, X, Y, Z).

    Crops without any non-zero voxel (air around the head) get masks like every crop but skip the network:
    their hidden voxels stay 0, the background value, instead of whatever a brain-trained decoder invents there.
    """
    crop = model.network.config.crop_size
    patch = model.network.config.patch_size
    grid = model.network.config.grid
    shape = image.shape[1:]
    padded_shape = [-(-s // c) * c for s, c in zip(shape, crop)]
    padded = np.zeros((image.shape[0], *padded_shape), dtype=np.float32)
    padded[:, : shape[0], : shape[1], : shape[2]] = image
    windows = [(slice(None), slice(a, a + crop[0]), slice(b, b + crop[1]), slice(c, c + crop[2]))
               for a, b, c in itertools.product(*(range(0, p, c) for p, c in zip(padded_shape, crop)))]
    masks = window_masks(len(windows), image.shape[0], grid[0] * grid[1] * grid[2], config, seed, hide)
    hidden = np.zeros(padded.shape, dtype=bool)
    for window, voxels in zip(windows, _voxel_mask(masks, grid, patch).numpy()):
        hidden[window] = voxels
    reconstruction = padded.copy()
    busy = [i for i, window in enumerate(windows) if padded[window].any()]
    for first in range(0, len(busy), batch_size):
        chunk = busy[first:first + batch_size]
        x = torch.from_numpy(np.stack([padded[windows[i]] for i in chunk])).to(model.device)
        with autocast(model.device):
            prediction, _, _, _ = model.network.reconstruct(x, masks[chunk].to(model.device))
        predicted = unpatchify(prediction.float(), x.shape[1], grid, patch).cpu().numpy()
        for i, values in zip(chunk, predicted):
            reconstruction[windows[i]] = np.where(hidden[windows[i]], values, padded[windows[i]])
        if on_batch is not None:
            on_batch(first + len(chunk), len(busy))
    inside = (slice(None), slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    hidden = hidden[inside]
    return {"masked": np.where(hidden, np.float32(0), image).astype(np.float32),
            "reconstruction": reconstruction[inside], "mask": hidden}


def reconstruct_case(model: Reconstructor, case: Case, output: str | Path, pattern: str = "hybrid", seed: int = 0,
                     hide: str | None = None, patch_ratio: float | None = None,
                     position_ratio: float | None = None, resample: bool = False, batch_size: int = 2,
                     progress: Progress | None = None,
                     on_batch: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Reconstruct one case into the folder `output`; returns the output records {path, kind, modality, case}."""
    from emim.inference.case_io import check_case_outputs, check_modalities, write_case_outputs

    progress = progress or Progress("none")
    names = model.modalities
    if hide is not None and hide not in names:
        raise EmimError(f"--hide {hide}: the pretraining has no modality {hide}; it has {', '.join(names)}")
    if hide is not None and pattern != "modal":
        raise EmimError("--hide names the modality a modal mask hides; use it with --mask modal")
    config = mask_config(model.weights, pattern, patch_ratio, position_ratio)
    check_modalities(case, model.weights.spec)
    folder = Path(output)
    paths = {(modality, kind): folder / f"{modality}_{kind}.nii.gz"
             for modality in names for kind in RECONSTRUCTION_OUTPUTS}
    report_path = folder / f"{case.case_id}{REPORT}"
    check_case_outputs([*paths.values(), report_path], folder, case)  # before the inference
    report = RunReport("reconstruct", model.description(), model.weights.source, str(model.device))
    with report.stage("load"):
        loaded = load_case(case, names, model.weights.normalization, resample, with_label=False)
    with report.stage("inference"):
        try:
            result = reconstruct_volume(model, loaded.image, config, seed,
                                        None if hide is None else [names.index(hide)], batch_size, on_batch)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise EmimError(f"case {case.case_id}: the GPU ran out of memory with --batch-size {batch_size}; use "
                            "--batch-size 1, close other GPU programs, or run with --device cpu.") from None
    files: dict[Path, Any] = {}
    records = []
    for index, modality in enumerate(names):
        for kind in RECONSTRUCTION_OUTPUTS:
            path = paths[(modality, kind)]
            dtype = np.uint8 if kind == MASK_OUTPUT else np.float32
            files[path] = (loaded, result[kind][index].astype(dtype), dtype)
            records.append({"path": str(path), "kind": kind, "modality": modality, "case": case.case_id})
    files[report_path] = report.text(case.case_id, {m: case.images[m] for m in names}, {
        "mask": config.to_dict(), "seed": seed, "hide": hide, "batch_size": batch_size, "resample": resample,
        "normalization": model.weights.normalization}, list(files), case.dicom)
    records.append({"path": str(report_path), "kind": REPORT_OUTPUT, "modality": None, "case": case.case_id})
    write_case_outputs(files, folder, case)
    for record in records:
        progress.event("output", **record)
    return records

