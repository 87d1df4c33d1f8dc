"""Segmentation fine-tuning: config, loss, validation Dice, pretrained-encoder loading, and the run itself.

The network predicts one sigmoid channel per region (BraTS: TC, WT, ET, which nest), trained with batch soft Dice
(smoothing 1, so a region absent from the crops asks only for low probabilities, not a 0/0 ratio) + binary
cross-entropy. Validation runs what `emim segment` runs on whole held-out cases: sliding-window inference, the
label map with the default post-processing, and Dice on the regions read back from that map, so its Dice is what
a user will get. Pretrained weights are loaded loudly: the number of encoder tensors
taken is logged and recorded, and a checkpoint made for other modalities or another width is refused, because a
silently random encoder would make a "pretrained vs scratch" comparison meaningless. A run may instead start the
whole network from a segmentation model (`init`, see `from_model`), at that model's voxel size (`spacing`: the
training cases are cached resampled to it, and validation runs there and back as `emim segment` does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from emim import __version__
from emim.config import PRESETS, ModelConfig, preset
from emim.contract import DEFAULT_NORMALIZATION, DEFAULT_PRESET
from emim.errors import EmimError
from emim.finetune.recipes import INIT_RECIPE, SCRATCH_RECIPE, Recipe  # noqa: F401 (the defaults, here too)
from emim.labels import BRATS_LABELS, BRATS_REGIONS, labels_to_regions, region_label_values
from emim.model.unetr import EMIMUNETR
from emim.progress import Progress
from emim.train.provenance import write_cases_file
from emim.train.runfolder import RunFolder
from emim.train.session import open_run, train_run
from emim.train.trainer import TrainSettings

PALETTE = [[220, 40, 40], [60, 200, 80], [250, 220, 30], [40, 110, 230], [230, 120, 30], [160, 60, 200],
           [30, 200, 200], [240, 100, 180]]


@dataclass(frozen=True)
class FinetuneConfig:
    data: str
    model: ModelConfig
    modalities: tuple[dict, ...]  # ModalitySpec.to_metadata() of the data: names and patterns, for the export
    labels: tuple[dict, ...]
    regions: tuple[dict, ...]
    train: TrainSettings = TrainSettings()
    feature_size: int = 16
    batch_size: int = 2
    pretrained: str | None = None
    freeze_encoder_steps: int = 0
    modality_dropout: float = 0.0  # per batch, the probability of dropping some modalities (see modality_dropout)
    val_cases: int | None = None  # None: `auto_val_cases`
    overlap: float = 0.5  # validation sliding window
    sw_batch_size: int = 2
    normalization: str = DEFAULT_NORMALIZATION
    resample: bool = False
    workers: int = 0
    device: str = "auto"
    cache: str | None = None  # preprocessing cache folder; None: `emim-cache` beside the run folder
    init: dict[str, Any] | None = None  # the segmentation model the whole network starts from (`from_model`)
    spacing: tuple[float, float, float] | None = None  # voxel size (mm, RAS) cases are resampled to; None: their own

    def to_dict(self) -> dict[str, Any]:
        return {"command": "finetune", "task": "segmentation", "engine_version": __version__, "data": self.data,
                "model": self.model.to_dict(), "modalities": list(self.modalities), "labels": list(self.labels),
                "regions": list(self.regions), "train": self.train.to_dict(), "feature_size": self.feature_size,
                "batch_size": self.batch_size, "pretrained": self.pretrained,
                "freeze_encoder_steps": self.freeze_encoder_steps, "modality_dropout": self.modality_dropout,
                "val_cases": self.val_cases,
                "overlap": self.overlap, "sw_batch_size": self.sw_batch_size, "normalization": self.normalization,
                "resample": self.resample, "workers": self.workers, "device": self.device,
                "cache": self.cache, "init": self.init,
                "spacing": None if self.spacing is None else [float(v) for v in self.spacing]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinetuneConfig":
        plain = {k: v for k, v in data.items() if k not in ("command", "task", "engine_version", "model", "train")}
        for key in ("modalities", "labels", "regions"):
            plain[key] = tuple(plain[key])
        if plain.get("spacing") is not None:
            plain["spacing"] = tuple(float(v) for v in plain["spacing"])
        return cls(model=ModelConfig.from_dict(data["model"]), train=TrainSettings(**data["train"]), **plain)


def label_set(data: str | Path, names: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """(labels, regions) of a data set: a datalist's `labels` (one sigmoid region per label), else BraTS."""
    from emim.data.cases import read_datalist
    from emim.data.modalities import BRATS

    path = Path(data)
    declared = read_datalist(path).get("labels") if path.suffix.lower() == ".json" and path.is_file() else None
    if declared:
        values = sorted((int(k), str(v)) for k, v in declared.items() if int(k) != 0)
        labels = [{"value": v, "name": n, "color": PALETTE[i % len(PALETTE)]} for i, (v, n) in enumerate(values)]
        return labels, [{"name": n, "labels": [v]} for v, n in values]
    if not set(names) <= set(BRATS.names):
        raise EmimError(f"{data}: modalities {list(names)} are not BraTS, so the label set is unknown; add a "
                        '"labels": {"1": "name", ...} entry to the datalist JSON.')
    return [dict(label) for label in BRATS_LABELS], [dict(region) for region in BRATS_REGIONS]


def default_config(data: str, preset_name: str = DEFAULT_PRESET, modalities: Sequence[str] | None = None,
                   **model_overrides: Any) -> FinetuneConfig:
    """A config from a preset, with modalities and the label set taken from the data set."""
    from emim.data.cases import dataset_spec

    spec = dataset_spec(data)
    spec = spec.select(modalities) if modalities else spec
    labels, regions = label_set(data, spec.names)
    return FinetuneConfig(data=str(data), model=preset(preset_name, modalities=spec.names, **model_overrides),
                          modalities=tuple(spec.to_metadata()), labels=tuple(labels), regions=tuple(regions),
                          feature_size=PRESETS[preset_name].feature_size)


def region_targets(label: torch.Tensor, regions: Sequence[dict]) -> torch.Tensor:
    """(B, 1, X, Y, Z) label map -> (B, C, X, Y, Z) float region masks."""
    return torch.cat([torch.isin(label, torch.tensor(r["labels"], device=label.device, dtype=label.dtype))
                      for r in regions], dim=1).float()


class SegmentationTask:
    """Soft Dice + BCE on sigmoid region channels; per-region Dice on whole held-out cases at each evaluation."""

    def __init__(self, model: EMIMUNETR, regions: Sequence[dict], validation: Sequence, freeze_encoder_steps: int,
                 overlap: float, sw_batch_size: int, modality_dropout: float = 0.0, seed: int = 0,
                 rank: int = 0, spacing: Sequence[float] | None = None) -> None:
        from monai.losses import DiceLoss

        self.model = model
        self.regions = list(regions)
        self.validation = list(validation)  # LoadedCase with labels
        self.freeze_encoder_steps = freeze_encoder_steps
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.modality_dropout, self.seed, self.rank = modality_dropout, seed, rank
        self.spacing = spacing  # the training spacing: validation runs there as `emim segment` would
        self.dice_loss = DiceLoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
        self.bce = nn.BCEWithLogitsLoss()

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        from emim.finetune.modality_dropout import draw_present, zero_absent

        target = region_targets(batch["label"], self.regions)
        present = draw_present(batch["image"].shape[1], self.modality_dropout, self.seed, self.rank, step)
        logits = model(zero_absent(batch["image"], present), freeze_encoder=step < self.freeze_encoder_steps,
                       present=present).float()
        dice, bce = self.dice_loss(logits, target), self.bce(logits, target)
        return dice + bce, {"dice_loss": float(dice.detach()), "bce_loss": float(bce.detach())}

    def evaluate(self, step: int) -> dict[str, Any]:
        from emim.inference.postprocess import DEFAULT, label_map
        from emim.inference.prediction import predict_probabilities
        from emim.data.spacing import needs_resampling, rescale
        from emim.metrics import dice

        if not self.validation:
            return {}
        device = next(self.model.parameters()).device
        scores = np.zeros((len(self.validation), len(self.regions)))
        for i, case in enumerate(self.validation):
            rescaled = needs_resampling(case.spacing, self.spacing)  # at the training spacing and back, as segment
            image = rescale(case.image, case.spacing, self.spacing) if rescaled else case.image
            probs = predict_probabilities(self.model, image, self.model.config.crop_size, self.overlap,
                                          self.sw_batch_size, device)
            if rescaled:
                probs = rescale(probs, self.spacing, case.spacing, shape=case.image.shape[1:])
            labels = label_map(probs, case.inside, case.spacing, self.regions, DEFAULT)
            predicted, truth = labels_to_regions(labels, self.regions), labels_to_regions(case.label, self.regions)
            scores[i] = [dice(predicted[c], truth[c]) for c in range(len(self.regions))]
        record = {f"val_dice_{r['name']}": float(scores[:, c].mean()) for c, r in enumerate(self.regions)}
        record["val_dice_mean"] = float(scores.mean())
        return record

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def auto_val_cases(cases: int) -> int:
    """Validation cases when none are asked for: a fifth of the data, at least 1 and at most 4 (each costs a
    whole-case sliding window per evaluation), and 0 for a single case."""
    return 0 if cases < 2 else min(max(cases // 5, 1), 4)


def _require_labels(cases: list) -> None:
    for case in cases:
        if case.label is None:
            raise EmimError(f"case {case.case_id} has no label file; fine-tuning needs one per case (e.g. "
                            f"{case.case_id}-seg.nii.gz). Remove the case or add its segmentation.")


def _check_label_values(case, values: Sequence[int], config: FinetuneConfig) -> None:
    """Refuse label values no region covers (they would be silently ignored)."""
    extra = sorted(set(int(v) for v in values) - region_label_values(config.regions) - {0})
    if extra:
        raise EmimError(f"case {case.case_id}: label file {case.label} has values {extra} that no output "
                        f"region uses (regions: {[r['name'] + str(r['labels']) for r in config.regions]}). "
                        "Relabel the file, or declare the labels in a datalist JSON.")


def _load_validation(cases: list, config: FinetuneConfig) -> list:
    """Validation cases in memory, whole (they are few: `auto_val_cases` is at most 4)."""
    from emim.data.loading import load_case

    loaded = []
    for case in cases:
        item = load_case(case, config.model.modalities, config.normalization, config.resample, with_label=True)
        _check_label_values(case, np.unique(item.label).tolist(), config)
        loaded.append(item)
    return loaded


def _cached_training(cases: list, config: FinetuneConfig, folder: Path, progress: Progress) -> list:
    """This rank's training cases from the preprocessing cache, label values checked."""
    from emim.data.cache import CacheSettings, cached_cases

    settings = CacheSettings(config.model.modalities, config.normalization, config.resample, with_label=True,
                             spacing=config.spacing)
    entries = cached_cases(cases, settings, folder, progress)
    for case, entry in zip(cases, entries):
        _check_label_values(case, entry.label_values, config)
    return entries


def resume_finetuning(run_dir: str | Path, device: str = "auto", workers: int = 0,
                      progress: Progress | None = None, cache: str | None = None) -> Path:
    """Continue a run from its last checkpoint with the config it was started with (device, workers and the cache
    folder may change)."""
    saved = FinetuneConfig.from_dict(RunFolder(run_dir, write=False).read_config("finetune"))
    changed = replace(saved, device=device, workers=workers, cache=cache or saved.cache)
    return run_finetuning(changed, run_dir, resume=True, progress=progress)


def _starting_weights(model: EMIMUNETR, config: FinetuneConfig, resume: bool, run: RunFolder
                      ) -> tuple[int, str | None]:
    """Load what the run starts from (the whole network with --init, the encoder with --pretrained; on resume the
    checkpoint holds both) around writing the run config; returns how many tensors were loaded, and from where."""
    loaded_tensors, source = 0, None
    if config.init and not resume:  # every tensor checked before any is loaded, before the run config is written
        from emim.train.init import load_init_model

        loaded_tensors, source = load_init_model(model, config.init)
    run.write_config(config.to_dict())
    if source:
        run.log(f"loaded all {loaded_tensors} tensors (encoder, decoder, head) from {source}")
    if config.pretrained and not resume:
        from emim.pretrained import load_pretrained_encoder

        loaded_tensors, source = load_pretrained_encoder(model.encoder, config.model, config.pretrained)
        run.log(f"loaded {loaded_tensors} encoder tensors from {source}")
    return loaded_tensors, source


def run_finetuning(config: FinetuneConfig, run_dir: str | Path, resume: bool = False,
                   progress: Progress | None = None) -> Path:
    """Run (or resume) segmentation fine-tuning into `run_dir`; returns the path of the last checkpoint."""
    from emim.data.cache import cache_folder
    from emim.data.cases import find_cases
    from emim.train.batches import crop_batches

    if config.init and config.pretrained:
        raise EmimError("--init starts the whole network from a segmentation model and --pretrained only its encoder "
                        "from a pretraining; give one of them")
    cases = find_cases(config.data)
    if config.val_cases is None:
        config = replace(config, val_cases=auto_val_cases(len(cases)))
    session = open_run(run_dir, config.device, config.train.seed, resume, progress)
    dist, run, device, progress = session.dist, session.run, session.device, session.progress
    model = EMIMUNETR(config.model, len(config.regions), config.feature_size)
    loaded_tensors, source = _starting_weights(model, config, resume, run)
    if len(cases) <= config.val_cases:
        raise EmimError(f"{config.data} has {len(cases)} case(s); with --val-cases {config.val_cases} none is left "
                        "to train on. Use fewer validation cases or add cases.")
    progress.event("start", command="finetune", run_dir=str(run.path), total=config.train.steps,
                   device=str(device), cases=len(cases), val_cases=config.val_cases, world_size=dist.world_size,
                   pretrained=source, pretrained_tensors=loaded_tensors, init=bool(config.init),
                   spacing=None if config.spacing is None else list(config.spacing))
    split = len(cases) - config.val_cases
    _require_labels(cases)
    folder = cache_folder(config.cache, run.path)
    shard, validation = session.prepare(lambda: (
        _cached_training(session.shard(cases[:split]), config, folder, progress),
        _load_validation(cases[split:], config) if dist.is_main else []))
    if dist.is_main:  # the median spacing of the main rank's training cases (under torchrun: its shard)
        write_cases_file(run, [c.case_id for c in cases[:split]], [c.case_id for c in cases[split:]],
                         [entry.spacing for entry in shard])
    at = (f"resampled to {' x '.join(f'{v:g}' for v in config.spacing)} mm" if config.spacing is not None else
          "at their own spacing")
    run.log(f"fine-tuning on {split} cases ({len(shard)} on this rank) {at}, validating on "
            f"{[c.case_id for c in cases[split:]]}, cache {folder}, device {device}")
    task = SegmentationTask(model, config.regions, validation, config.freeze_encoder_steps, config.overlap,
                            config.sw_batch_size, config.modality_dropout, config.train.seed, dist.rank,
                            spacing=config.spacing)

    def batches(start_step: int):
        return crop_batches(shard, config.model.crop_size, config.batch_size, with_label=True,
                            seed=session.batch_seed(config.train.seed, start_step), device=device,
                            workers=config.workers)

    return train_run(session, task, batches, config.train, resume)
