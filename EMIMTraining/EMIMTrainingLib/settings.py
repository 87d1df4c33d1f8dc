"""What a training run is started with, and the engine command line it becomes.

One dataclass for the three tasks: the fields a task does not use are left out of its command line, so the
module's panel and the batch script can keep every knob in one place (and the parameter node can save them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from EMIMCommonLib.process import engine_command

from emim.contract import (DEFAULT_PRESET, DEVICE_CHOICES, FINETUNE, FINETUNE_CLASSIFIER, HYBRID, LAST_CHECKPOINT,
                           LOG_EVERY, MASK_CHOICES, PATCH_RATIO, PBT_LEVELS, PBT_WEIGHT, POSITION_RATIO, PRESET_NAMES,
                           PRETRAIN, STARTER_MODEL, STARTER_PRETRAINING, TRAINING_COMMANDS, VAL_FRACTION)

from .errors import EMIMTrainingError
from .i18n import tr

# What a run starts from: a pretraining (fine-tuning: its encoder, --pretrained; pretraining: the whole network,
# --init), a segmentation model (segmentation fine-tuning only: the whole network, --init), or random weights.
START_PRETRAINING, START_MODEL, START_NOTHING = "pretraining", "model", "nothing"
START_FROM = (START_PRETRAINING, START_MODEL, START_NOTHING)

TASK_TITLES = {PRETRAIN: "E-MIM pretraining", FINETUNE: "Segmentation fine-tuning",
               FINETUNE_CLASSIFIER: "Classification fine-tuning"}


@dataclass
class TrainingSettings:
    """Knobs of one run. `crop` is one edge or "X,Y,Z"; empty strings and None mean the engine's default."""

    task: str
    data: str
    run: str
    preset: str = DEFAULT_PRESET
    modalities: Sequence[str] = ()
    crop: str = ""
    batch_size: int | None = None  # None = the preset's default
    # None: the engine's recipe for the task and its start (e.g. fine-tuning a whole model takes fewer steps), so
    # the panel and `emim TASK` start the same run unless a number is given
    steps: int | None = None
    learning_rate: float | None = None
    device: str = DEVICE_CHOICES[0]
    gpus: int = 1
    log_every: int = LOG_EVERY
    eval_every: int | None = None
    checkpoint_every: int | None = None
    # pretraining
    mask: str = HYBRID
    patch_ratio: float = PATCH_RATIO
    position_ratio: float = POSITION_RATIO
    pbt_levels: int = PBT_LEVELS
    pbt_weight: float = PBT_WEIGHT
    start_from: str = START_NOTHING  # one of START_FROM
    pretrained: str = ""  # what to start from: a run folder, checkpoint, model folder or shipped name; empty = the
    # shipped pretraining or starter model that `start_from` names
    val_cases: int | None = None  # segmentation: whole cases held out for validation Dice; None = the engine's
    # choice (a fifth of the cases, 1 to 4)
    modality_dropout: float = 0.0  # segmentation: per batch, the chance of training without some sequences, so
    # that the model also segments cases that lack one (docs/missing-modalities.md); 0 when starting from a model:
    # the model's own
    labels_csv: str = ""  # classification: `case_id,label` lines
    val_fraction: float = VAL_FRACTION  # classification
    extra: Sequence[str] = field(default_factory=tuple)  # further engine options, passed as they are

    def problems(self) -> list[str]:
        """Why the run cannot start as set (said in words); empty when it can."""
        found = []
        if self.task not in TRAINING_COMMANDS:
            found.append(tr("Choose a task: {choices}.").format(choices=", ".join(TRAINING_COMMANDS)))
        if not self.data:
            found.append(tr("Choose the data set (a folder of cases or a datalist JSON)."))
        if not self.run:
            found.append(tr("Choose an output run folder."))
        if self.preset not in PRESET_NAMES:
            found.append(tr("Preset must be one of {choices}.").format(choices=", ".join(PRESET_NAMES)))
        if self.task == PRETRAIN and self.mask not in MASK_CHOICES:
            found.append(tr("Mask pattern must be one of {choices}.").format(choices=", ".join(MASK_CHOICES)))
        if self.task == FINETUNE_CLASSIFIER and not self.labels_csv:
            found.append(tr("Classification fine-tuning needs a labels CSV (one `case_id,label` line per case)."))
        if self.start_from not in START_FROM:
            found.append(tr("Start from must be one of {choices}.").format(choices=", ".join(START_FROM)))
        if self.start_from == START_NOTHING and self.pretrained:
            found.append(tr("A pretraining or model to start from is given, but Start from is 'nothing'."))
        if self.start_from == START_MODEL and self.task != FINETUNE:
            found.append(tr("Starting from a segmentation model is for segmentation fine-tuning; start from a "
                            "pretraining or from nothing."))
        if self.task == FINETUNE and not 0 <= self.modality_dropout <= 1:
            found.append(tr("Modality dropout is a probability between 0 and 1."))
        if self.gpus < 1:
            found.append(tr("The number of GPUs must be at least 1."))
        if self.gpus > 1 and self.device == "cpu":
            found.append(tr("Several GPUs were asked for with device CPU; choose device auto or cuda."))
        if self.run and (Path(self.run) / LAST_CHECKPOINT).exists():
            found.append(tr("The run folder {run} already holds a run: resume it or choose a new folder.")
                         .format(run=self.run))
        return found

    def arguments(self) -> list[str]:
        """The engine options of this task (without the interpreter, the subcommand and --progress)."""
        problems = self.problems()
        if problems:
            raise EMIMTrainingError(" ".join(problems))
        args = [str(self.data), "--run", str(self.run), "--device", self.device, "--log-every", str(self.log_every)]
        if not self.starts_whole():  # a whole network started from has its own size
            args += ["--preset", self.preset]
        for option, value in (("--steps", self.steps), ("--eval-every", self.eval_every),
                              ("--checkpoint-every", self.checkpoint_every)):
            if value is not None:
                args += [option, str(value)]
        if self.modalities:
            args += ["--modalities", ",".join(self.modalities)]
        if self.crop:
            args += ["--crop", str(self.crop).replace(" ", "")]
        if self.batch_size is not None:
            args += ["--batch-size", str(self.batch_size)]
        if self.learning_rate is not None:
            args += ["--lr", repr(float(self.learning_rate))]
        args += self.start_arguments()
        if self.task == PRETRAIN:
            args += ["--mask", self.mask, "--patch-ratio", str(self.patch_ratio), "--position-ratio",
                     str(self.position_ratio), "--pbt-levels", str(self.pbt_levels), "--pbt-weight",
                     str(self.pbt_weight)]
        else:
            if self.task == FINETUNE:
                if self.val_cases is not None:  # None: the engine's choice
                    args += ["--val-cases", str(self.val_cases)]
                if self.modality_dropout or not self.starts_whole():  # 0 with --init: the model's own
                    args += ["--modality-dropout", str(self.modality_dropout)]
            else:
                args += ["--labels", str(self.labels_csv), "--val-fraction", str(self.val_fraction)]
        return args + [str(a) for a in self.extra]

    def starts_whole(self) -> bool:
        """True when the run starts the whole network from a model or pretraining (`--init`), not the encoder."""
        return self.start_from != START_NOTHING and (self.start_from == START_MODEL or self.task == PRETRAIN)

    def start_arguments(self) -> list[str]:
        """`--init` (the whole network) or `--pretrained` (the encoder) for what the run starts from."""
        if self.start_from == START_NOTHING:
            return []
        source = self.pretrained or (STARTER_MODEL if self.start_from == START_MODEL else STARTER_PRETRAINING)
        return ["--init" if self.starts_whole() else "--pretrained", str(source)]


def training_command(subcommand: str, arguments: Sequence[str], gpus: int = 1) -> list[str]:
    """`python -m emim SUB ... --progress json`; with several GPUs the same under torchrun (one process per GPU).

    `--standalone` picks a free rendezvous port on this machine, so two runs do not clash. The `--` ends torchrun's
    own options: without it torchrun's parser reads the engine's `--run` as an ambiguous abbreviation of its
    `--run-path` and refuses to start (pytorch/pytorch#120601); torchrun drops the `--` before calling the engine.
    """
    command = engine_command(subcommand, arguments)
    if gpus > 1:  # [python, -m, emim, ...] -> [python, -m, torch.distributed.run, ..., -m, emim, --, ...]
        return [command[0], "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(gpus),
                "-m", "emim", "--", *command[3:]]
    return command


DEFAULTS = TrainingSettings(task=PRETRAIN, data="", run="")  # the one place a knob's default is written
AUTO_VAL_CASES = -1  # the parameter node's valCases for "the engine's choice" (0 is a real choice: no validation)
RECIPE = 0  # the parameter node's steps, evalEvery, checkpointEvery for "the engine's recipe" (None here)


def settings_from_parameters(p) -> TrainingSettings:
    """The module's parameter node (EMIMTraining.py; its defaults are DEFAULTS') as the Logic's settings."""
    return TrainingSettings(
        task=p.task, data=_text(p.dataPath), run=_text(p.runFolder), preset=p.preset,
        modalities=tuple(m.strip() for m in p.modalities.split(",") if m.strip()), crop=p.cropSize,
        batch_size=p.batchSize or None, steps=p.steps or None, learning_rate=p.learningRate or None,
        device=p.device, gpus=p.gpus, eval_every=p.evalEvery or None, checkpoint_every=p.checkpointEvery or None,
        log_every=min(DEFAULTS.log_every, p.evalEvery or DEFAULTS.log_every),
        mask=p.maskPattern, patch_ratio=p.patchRatio, position_ratio=p.positionRatio, pbt_levels=p.pbtLevels,
        pbt_weight=p.pbtWeight, start_from=p.startFrom, pretrained=_text(p.pretrained),
        val_cases=None if p.valCases == AUTO_VAL_CASES else p.valCases, modality_dropout=p.modalityDropout,
        labels_csv=_text(p.labelsCsv), val_fraction=p.valFraction)


def _text(path: Path | None) -> str:
    """An optional path parameter (None until chosen) as the settings hold it ("" = not chosen)."""
    return "" if path is None else str(path)
