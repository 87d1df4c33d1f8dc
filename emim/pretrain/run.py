"""Set up and run one pretraining: resolve the config, load data, build the model, hand over to the loop."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from emim import __version__
from emim.config import PRESETS, ModelConfig, preset, preset_of
from emim.contract import DEFAULT_NORMALIZATION, DEFAULT_PRESET, PBT_LEVELS, PBT_WEIGHT
from emim.errors import EmimError
from emim.progress import Progress
from emim.pretrain.masks import MaskConfig
from emim.pretrain.model import EMIMPretrainer
from emim.pretrain.task import PretrainTask
from emim.train.batches import crop_batches
from emim.train.runfolder import RunFolder
from emim.train.session import open_run, train_run
from emim.pretrain.recipes import HELDOUT_CROPS, INIT_LR_SHARE  # noqa: F401 (defined once there)
from emim.train.trainer import TrainSettings

HELDOUT_CROP_SEED = 20240716


@dataclass(frozen=True)
class PretrainConfig:
    data: str
    model: ModelConfig
    mask: MaskConfig = MaskConfig()
    train: TrainSettings = TrainSettings()
    batch_size: int = 2
    pbt_levels: int = PBT_LEVELS
    pbt_weight: float = PBT_WEIGHT
    pbt_off_diagonal: float = 0.0051
    normalization: str = DEFAULT_NORMALIZATION
    resample: bool = False
    heldout_cases: int = 0  # cases kept out of training for diagnostics; 0 = fixed crops of training cases
    heldout_crops: int = HELDOUT_CROPS
    workers: int = 0
    device: str = "auto"
    cache: str | None = None  # preprocessing cache folder; None: `emim-cache` beside the run folder
    extra: dict[str, Any] = field(default_factory=dict)
    init: dict[str, Any] | None = None  # the pretraining the whole network starts from (`init_config`)
    spacing: tuple[float, float, float] | None = None  # voxel size (mm, RAS) cases are resampled to; None: their own

    def to_dict(self) -> dict[str, Any]:
        return {"command": "pretrain", "engine_version": __version__, "data": self.data,
                "model": self.model.to_dict(), "mask": self.mask.to_dict(), "train": self.train.to_dict(),
                "batch_size": self.batch_size, "pbt_levels": self.pbt_levels, "pbt_weight": self.pbt_weight,
                "pbt_off_diagonal": self.pbt_off_diagonal, "normalization": self.normalization,
                "resample": self.resample, "heldout_cases": self.heldout_cases,
                "heldout_crops": self.heldout_crops, "workers": self.workers,
                "device": self.device, "cache": self.cache, "init": self.init,
                "spacing": None if self.spacing is None else [float(v) for v in self.spacing]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PretrainConfig":
        mask = dict(data["mask"])
        mask["hybrid_probs"] = tuple(mask["hybrid_probs"])
        return cls(data=data["data"], model=ModelConfig.from_dict(data["model"]), mask=MaskConfig(**mask),
                   train=TrainSettings(**data["train"]), batch_size=data["batch_size"],
                   pbt_levels=data["pbt_levels"], pbt_weight=data["pbt_weight"],
                   pbt_off_diagonal=data["pbt_off_diagonal"], normalization=data["normalization"],
                   resample=data["resample"], heldout_cases=data["heldout_cases"],
                   heldout_crops=data.get("heldout_crops", HELDOUT_CROPS), workers=data["workers"],
                   device=data["device"], cache=data.get("cache"), init=data.get("init"),
                   spacing=tuple(float(v) for v in data["spacing"]) if data.get("spacing") else None)


def default_config(data: str, preset_name: str = DEFAULT_PRESET, modalities: Sequence[str] | None = None,
                   **model_overrides: Any) -> PretrainConfig:
    """A config from a preset, with the modality list taken from the data set when not given."""
    from emim.data.cases import dataset_spec

    names = tuple(modalities) if modalities else dataset_spec(data).names
    model = preset(preset_name, modalities=names, **model_overrides)
    recipe = PRESETS[preset_name]
    return PretrainConfig(data=str(data), model=model, train=TrainSettings(lr=recipe.pretrain_lr),
                          batch_size=recipe.pretrain_batch)


def init_config(data: str, source: str, modalities: Sequence[str] | None = None,
                crop_size: Sequence[int] | None = None) -> PretrainConfig:
    """The config of continuing the pretraining `source` (a shipped pretraining's name, a pretraining model folder,
    run folder or checkpoint) on `data`: its model config (encoder and decoder), normalisation and recorded voxel size,
    the preset's batch at `INIT_LR_SHARE` of its learning rate, and `init` recording what it starts from (with the
    SHA-256 of its weights file). Refuses a source that is not a pretraining, or data with other modalities."""
    from emim.data.cases import dataset_spec
    from emim.pretrained import read_pretrained
    from emim.train.init import check_modalities, described

    weights = read_pretrained(source)
    folder, what = weights.source, described(source, weights.source)
    if weights.task != "pretraining":
        hint = (f" To fine-tune this segmentation model, use `emim finetune DATA --init {source}`."
                if weights.task in ("segmentation", "finetune") else "")
        raise EmimError(f"{what} is a {weights.task} model, not an E-MIM pretraining: pretrain --init continues a "
                        "pretraining (encoder and reconstruction decoder), a shipped one "
                        f"(EMIM-starter-tiny-pretraining), a pretraining run folder or its model folder.{hint}")
    names = list(modalities) if modalities else list(dataset_spec(data).names)
    check_modalities(names, weights.config.modalities, f"the pretraining {what}")
    model = weights.config
    if crop_size:
        try:
            model = replace(model, crop_size=tuple(crop_size))
        except ValueError as error:
            raise EmimError(f"--crop: {error}") from None
    recipe = PRESETS[preset_of(model)]
    return PretrainConfig(data=str(data), model=model,
                          train=TrainSettings(lr=recipe.pretrain_lr * INIT_LR_SHARE), batch_size=recipe.pretrain_batch,
                          normalization=weights.normalization, spacing=weights.spacing,
                          init={"model": str(source), "source": str(folder), "step": weights.step,
                                "sha256": _weights_sha256(folder)})


def _weights_sha256(source: Path) -> str:
    """The SHA-256 of a model folder's weights (as its metadata records) or of a checkpoint file."""
    from emim.contract import WEIGHTS_FILE
    from emim.report import file_sha256
    from emim.modelfile import load_metadata

    source = Path(source)
    if source.is_file() and source.suffix != ".json" and source.name != WEIGHTS_FILE:
        return file_sha256(source)
    return load_metadata(source)["sha256"]


def load_init_weights(model: EMIMPretrainer, init: dict[str, Any]) -> tuple[int, str]:
    """Load the encoder and MIM decoder of the pretraining recorded in `init` into `model` after checking that it is
    the one the run was configured with and that every tensor fits; the Barlow Twins projectors too when the source
    holds them (a run's checkpoint; a model folder does not). Returns (tensors loaded, description)."""
    from emim.pretrained import read_pretrained
    from emim.train.init import check_tensors, described

    weights = read_pretrained(init["source"])
    what = described(init["model"], weights.source)
    if _weights_sha256(weights.source) != init["sha256"]:
        raise EmimError(f"the pretraining {what} changed since this run was configured (SHA-256 of its weights); "
                        "start a new run from it.")
    own = {k: v for k, v in model.state_dict().items() if k.startswith(("encoder.", "decoder."))}
    projectors = {k: v for k, v in model.state_dict().items() if k.startswith("pbt.")}
    theirs = {k: v for k, v in weights.state.items() if k.startswith(("encoder.", "decoder."))}
    check_tensors(own, theirs, f"the pretraining {what}",
                  "Continue a pretraining on the modalities and model size it was made with.")
    their_projectors = {k: v for k, v in weights.state.items() if k.startswith("pbt.")}
    if their_projectors and {k: tuple(v.shape) for k, v in their_projectors.items()} == \
            {k: tuple(v.shape) for k, v in projectors.items()}:
        theirs.update(their_projectors)
    model.load_state_dict(theirs, strict=False)
    step = f", step {weights.step}" if weights.step is not None else ""
    fresh = "" if len(theirs) > len(own) else "; the Barlow Twins projectors start fresh"
    return len(theirs), f"{what} ({len(theirs)} tensors{step}{fresh})"


def heldout_crops(boxes: Sequence[np.ndarray], crop_size: Sequence[int], count: int,
                  seed: int = HELDOUT_CROP_SEED) -> torch.Tensor:
    """`count` fixed crops (count, M, *crop) at seeded uniform positions inside brain boxes (each (M, X, Y, Z),
    e.g. memory-mapped cache entries), taken from the boxes in turn; zero-padded where a box is smaller.

    Several crops per case, not one centred crop, so the diagnostics see brain edge and interior alike; a fixed
    number, read from the first `count` boxes only, so evaluation costs the same whatever the size of the data set.
    """
    from emim.data.crops import read_crop, uniform_start

    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        box = boxes[i % len(boxes)]
        crops.append(read_crop(box, uniform_start(rng, box.shape[1:], crop_size), crop_size))
    return torch.as_tensor(np.stack(crops)).float()


def resume_pretraining(run_dir: str | Path, device: str = "auto", workers: int = 0,
                       progress: Progress | None = None, cache: str | None = None) -> Path:
    """Continue a run from its last checkpoint with the config it was started with (device, workers and the cache
    folder may change)."""
    saved = PretrainConfig.from_dict(RunFolder(run_dir, write=False).read_config("pretrain"))
    changed = replace(saved, device=device, workers=workers, cache=cache or saved.cache)
    return run_pretraining(changed, run_dir, resume=True, progress=progress)


def run_pretraining(config: PretrainConfig, run_dir: str | Path, resume: bool = False,
                    progress: Progress | None = None) -> Path:
    """Run (or resume) pretraining into `run_dir`; returns the path of the last checkpoint."""
    from emim.data.cache import CacheSettings, cache_folder, cached_cases
    from emim.data.cases import find_cases

    session = open_run(run_dir, config.device, config.train.seed, resume, progress)
    dist, run, device, progress = session.dist, session.run, session.device, session.progress
    model = EMIMPretrainer(config.model, config.pbt_levels, config.pbt_weight, config.pbt_off_diagonal)
    source = None
    if config.init and not resume:  # every tensor checked before any is loaded (on resume the checkpoint holds them)
        source = load_init_weights(model, config.init)[1]
    run.write_config(config.to_dict())
    if source:
        run.log(f"continuing the pretraining {source}")
    cases = find_cases(config.data)
    if not cases:
        raise EmimError(f"no cases found in {config.data}; run `emim check-data {config.data}`")
    progress.event("start", command="pretrain", run_dir=str(run.path), total=config.train.steps,
                   device=str(device), cases=len(cases), world_size=dist.world_size, init=source,
                   spacing=None if config.spacing is None else list(config.spacing))
    heldout_count = max(min(config.heldout_cases, len(cases) - 1), 0)
    train_cases = cases[: len(cases) - heldout_count]
    settings = CacheSettings(config.model.modalities, config.normalization, config.resample, with_label=False,
                             spacing=config.spacing)
    folder = cache_folder(config.cache, run.path)
    def prepare() -> tuple[list, torch.Tensor]:
        shard = cached_cases(session.shard(train_cases), settings, folder, progress)
        if not dist.is_main:
            return shard, torch.empty(0)
        pool = cases[len(train_cases):] or train_cases  # only the main rank evaluates: the held-out pool's first
        boxes = [entry.array("image") for entry in cached_cases(pool[: config.heldout_crops], settings, folder)]
        return shard, heldout_crops(boxes, config.model.crop_size, config.heldout_crops)

    shard, heldout = session.prepare(prepare)
    at = (f"resampled to {' x '.join(f'{v:g}' for v in config.spacing)} mm" if config.spacing is not None else
          "at their own spacing")
    run.log(f"pretraining on {len(train_cases)} cases ({len(shard)} on this rank) {at}, diagnostics on "
            f"{len(heldout)} fixed crops, cache {folder}, device {device}")
    task = PretrainTask(model, config.mask, heldout, seed=config.train.seed, rank=dist.rank,
                        log_every=config.train.log_every, warmup_steps=config.train.warmup_steps,
                        total_steps=config.train.steps)

    def batches(start_step: int):
        return crop_batches(shard, config.model.crop_size, config.batch_size, with_label=False,
                            seed=session.batch_seed(config.train.seed, start_step), device=device,
                            workers=config.workers)

    return train_run(session, task, batches, config.train, resume)
