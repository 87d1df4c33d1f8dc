"""Classification fine-tuning: run setup, the task the shared loop drives, and export to a model folder.

Case-level labels come from a CSV (see `class_labels`); some cases are held out (stratified by class, from the
seed) and scored each evaluation as whole cases (see `classifier`) for ROC AUC and accuracy. Training batches
are random crops of random training cases with their case's class. The run folder, checkpoints, `--resume`,
progress and torchrun behave as in pretraining because the same loop (`emim.train.trainer.train`) runs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emim import __version__
from emim.config import ModelConfig
from emim.contract import DEFAULT_NORMALIZATION, VAL_FRACTION
from emim.data.cache import CachedCase
from emim.errors import EmimError
from emim.finetune.class_metrics import accuracy, macro_auc
from emim.model.classifier import ClassifierNet, case_probabilities
from emim.progress import Progress
from emim.train.runfolder import RunFolder
from emim.train.trainer import TrainSettings

COMMAND = "finetune-classifier"


@dataclass(frozen=True)
class ClassifierConfig:
    data: str
    labels: str                        # the labels CSV
    model: ModelConfig
    train: TrainSettings = TrainSettings(steps=500, lr=1e-4, warmup_steps=25)
    pretrained: str | None = None      # pretraining run / checkpoint / model folder, None = random init
    batch_size: int = 2
    val_fraction: float = VAL_FRACTION  # 0: evaluate on the training cases (only to smoke-test tiny data sets)
    normalization: str = DEFAULT_NORMALIZATION
    resample: bool = False
    device: str = "auto"
    cache: str | None = None           # preprocessing cache folder; None: `emim-cache` beside the run folder
    modality_spec: list[dict[str, Any]] = field(default_factory=list)  # ModalitySpec.to_metadata() of the data
    classes: tuple[str, ...] = ()      # class index -> name, filled from the labels CSV when the run starts

    def to_dict(self) -> dict[str, Any]:
        return {"command": COMMAND, "engine_version": __version__, "data": self.data, "labels": self.labels,
                "model": self.model.to_dict(), "train": self.train.to_dict(), "pretrained": self.pretrained,
                "batch_size": self.batch_size, "val_fraction": self.val_fraction,
                "normalization": self.normalization, "resample": self.resample, "device": self.device,
                "cache": self.cache, "modality_spec": self.modality_spec, "classes": list(self.classes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClassifierConfig":
        if data.get("command") != COMMAND:
            raise EmimError(f"this run was made by `emim {data.get('command')}`, not `emim {COMMAND}`; resume or "
                            "export it with its own command")
        return cls(data=data["data"], labels=data["labels"], model=ModelConfig.from_dict(data["model"]),
                   train=TrainSettings(**data["train"]), pretrained=data["pretrained"],
                   batch_size=data["batch_size"], val_fraction=data["val_fraction"],
                   normalization=data["normalization"], resample=data["resample"], device=data["device"],
                   cache=data.get("cache"), modality_spec=data["modality_spec"], classes=tuple(data["classes"]))


def split_cases(targets: dict[str, int], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(training ids, validation ids): about `fraction` held out, drawn class by class in turn so the classes
    are spread over both sides, never taking a class's last training case. fraction 0: validate on training."""
    ids = sorted(targets)
    if fraction <= 0:
        return ids, ids
    rng = np.random.default_rng(seed)
    shuffled = [ids[i] for i in rng.permutation(len(ids))]
    pools = {k: [i for i in shuffled if targets[i] == k] for k in sorted(set(targets.values()))}
    wanted = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    validation: list[str] = []
    while len(validation) < wanted and any(len(pool) > 1 for pool in pools.values()):
        for pool in pools.values():
            if len(pool) > 1 and len(validation) < wanted:
                validation.append(pool.pop())
    if not validation:
        raise EmimError("too few cases to hold any out for validation (every class has a single case); add cases "
                        "or use --val-fraction 0 to evaluate on the training cases")
    return [i for i in ids if i not in validation], sorted(validation)


def crop_stream(cases: Sequence[CachedCase], targets: Sequence[int], crop_size: Sequence[int], batch_size: int,
                seed: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches {'image': (B, M, *crop), 'target': (B,)} of random crops (with flips) of random cases."""
    from emim.train.batches import read_sample

    rng = np.random.default_rng(seed)
    while True:
        chosen = rng.integers(len(cases), size=batch_size)
        crops = [read_sample(cases[i], crop_size, False, rng)["image"] for i in chosen]
        yield {"image": torch.stack(crops).to(device),
               "target": torch.as_tensor([targets[i] for i in chosen], dtype=torch.long, device=device)}


class ClassificationTask:
    def __init__(self, model: ClassifierNet, validation: list[tuple[str, CachedCase, int]]) -> None:
        self.model = model
        self.validation = validation  # (case id, cache entry, class index); one image in memory at a time
        self.warned = False

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        logits = model(batch["image"]).float()
        loss = F.cross_entropy(logits, batch["target"])
        hits = (logits.argmax(dim=1) == batch["target"]).float().mean()
        return loss, {"ce": float(loss.detach()), "train_accuracy": float(hits)}

    def evaluate(self, step: int) -> dict[str, Any]:
        device = next(self.model.parameters()).device
        probabilities = np.stack([case_probabilities(self.model, np.asarray(entry.array("image"), np.float32), device)
                                  for _, entry, _ in self.validation])
        targets = np.array([target for _, _, target in self.validation])
        picked = probabilities[np.arange(len(targets)), targets]
        record: dict[str, Any] = {"val_auc": macro_auc(probabilities, targets),
                                  "val_accuracy": accuracy(probabilities, targets),
                                  "val_loss": float(-np.log(np.clip(picked, 1e-12, None)).mean()),
                                  "val_cases": len(targets), "warnings": []}
        if record["val_auc"] is None and not self.warned:
            self.warned = True
            record["warnings"].append("validation AUC is undefined: the validation cases hold a single class; "
                                      "raise --val-fraction or add cases of the other classes")
        return record

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def run_classifier_training(config: ClassifierConfig, run_dir: str | Path, resume: bool = False,
                            progress: Progress | None = None) -> Path:
    """Run (or resume) classification fine-tuning into `run_dir`; returns the path of the last checkpoint."""
    from emim.data.cache import CacheSettings, cache_folder, cached_cases
    from emim.data.cases import find_cases
    from emim.train.provenance import write_cases_file
    from emim.finetune.class_labels import read_class_labels
    from emim.pretrained import load_pretrained_encoder
    from emim.train.session import open_run, train_run

    cases = find_cases(config.data)
    labels = read_class_labels(config.labels, [case.case_id for case in cases])  # before any file is written
    session = open_run(run_dir, config.device, config.train.seed, resume, progress)
    dist, run, device, progress = session.dist, session.run, session.device, session.progress
    if resume and config.classes != labels.names:
        raise EmimError(f"{config.labels} now gives the classes {', '.join(labels.names)} but the run was started "
                        f"with {', '.join(config.classes)}; restore the labels CSV the run was started with")
    config = replace(config, classes=labels.names)
    run.write_config(config.to_dict())
    train_ids, val_ids = split_cases(labels.targets, config.val_fraction, config.train.seed)
    model = ClassifierNet(config.model, len(labels.names))
    loaded_tensors = 0
    if config.pretrained and not resume:
        loaded_tensors, what = load_pretrained_encoder(model.encoder, config.model, config.pretrained)
        run.log(f"encoder initialised from {what} ({loaded_tensors} tensors)")
    progress.event("start", command=COMMAND, run_dir=str(run.path), total=config.train.steps, device=str(device),
                   cases=len(cases), classes=list(labels.names), training_cases=len(train_ids),
                   validation_cases=len(val_ids), pretrained=config.pretrained,
                   pretrained_tensors=loaded_tensors, world_size=dist.world_size)
    by_id = {case.case_id: case for case in cases}
    settings = CacheSettings(config.model.modalities, config.normalization, config.resample, with_label=False)
    folder = cache_folder(config.cache, run.path)
    shard_ids = session.shard(train_ids)
    shard, validation = session.prepare(lambda: (
        cached_cases([by_id[i] for i in shard_ids], settings, folder, progress),
        cached_cases([by_id[i] for i in val_ids], settings, folder) if dist.is_main else []))
    if dist.is_main:  # the median spacing of the main rank's training cases (under torchrun: its shard)
        write_cases_file(run, train_ids, val_ids, [entry.spacing for entry in shard])
    run.log(f"classes {list(labels.names)}; training on {len(train_ids)} cases ({len(shard)} on this rank), "
            f"validating on {len(val_ids)}; cache {folder}, device {device}")
    task = ClassificationTask(model, [(i, entry, labels.targets[i]) for i, entry in zip(val_ids, validation)])

    def batches(start_step: int):
        return crop_stream(shard, [labels.targets[i] for i in shard_ids],
                           config.model.crop_size, config.batch_size,
                           seed=session.batch_seed(config.train.seed, start_step), device=device)

    return train_run(session, task, batches, config.train, resume)


def resume_classifier_training(run_dir: str | Path, device: str = "auto", progress: Progress | None = None,
                               cache: str | None = None) -> Path:
    """Continue a classification run from its last checkpoint with the config it was started with (device and the
    cache folder may change)."""
    saved = ClassifierConfig.from_dict(RunFolder(run_dir, write=False).read_config(COMMAND))
    changed = replace(saved, device=device, cache=cache or saved.cache)
    return run_classifier_training(changed, run_dir, resume=True, progress=progress)


def classification_export(run: RunFolder, config: dict[str, Any], state: dict[str, Any]) -> tuple[dict, dict]:
    """(weights, metadata) of a classification run's checkpoint, in the shape `emim.export` builds models from.

    Provenance adds to the common run provenance the labels CSV, the pretraining and the last validation
    record (AUC, accuracy, loss, number of cases, step).
    """
    from emim.data.cases import dataset_spec
    from emim.train.provenance import last_eval, run_provenance, training_spacing

    settings = ClassifierConfig.from_dict(config)
    validation = last_eval(run, "val_")
    spec = settings.modality_spec or dataset_spec(settings.data).select(settings.model.modalities).to_metadata()
    metadata = {
        "task": "classification",
        "description": f"E-MIM encoder + pooled-feature head, classes {', '.join(settings.classes)}, fine-tuned on "
                       f"{settings.data}",
        "modalities": spec,
        "model_config": settings.model.to_dict(),
        "network": {"architecture": "E-MIM encoder, mean over all last-level tokens, LayerNorm, Linear",
                    "num_classes": len(settings.classes)},
        "preprocessing": {"normalization": settings.normalization, "orientation": "RAS",
                          "spacing": training_spacing(run)},
        "inference": {"pooling": "mean tile feature over the brain bounding box (tiles of crop_size)",
                      "sw_batch_size": 4},
        "classes": [{"value": i, "name": n} for i, n in enumerate(settings.classes)],
        "provenance": {**run_provenance(run, config, int(state["step"])), "labels": settings.labels,
                       "pretrained": settings.pretrained, "validation_auc": validation.get("val_auc"),
                       "validation_accuracy": validation.get("val_accuracy"), "validation": validation},
    }
    return state["model"], metadata
