"""`emim finetune-classifier DATA --labels CSV --run RUN [options]`: case-level classification fine-tuning.

The labels CSV has a header and one line per case: `case_id,label` (labels may be words or integers). The E-MIM
encoder (from `--pretrained RUN_OR_CHECKPOINT_OR_MODEL`, or random) feeds a LayerNorm + Linear head on its mean
last-level tokens; validation ROC AUC and accuracy on held-out cases are logged each evaluation. `--export MODEL`
writes the model folder at the end; `--resume` continues a run. Multi-GPU: `torchrun ... -m emim finetune-classifier`.
"""

from __future__ import annotations

import argparse
import os

from emim.commands.arguments import int_triple
from emim.config import PRESETS
from emim.progress import PROGRESS_MODES, Progress
from emim.train.device import DEVICE_CHOICES


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="data set: folder of cases, one case folder, or datalist JSON")
    parser.add_argument("--labels", help="CSV with a header and one `case_id,label` line per case")
    parser.add_argument("--run-dir", "--run", dest="run", required=True,
                        help="run folder (config, metrics.jsonl, checkpoints); spell it --run-dir under torchrun")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    parser.add_argument("--pretrained", metavar="SOURCE",
                        help="initialise the encoder from a pretraining run folder, checkpoint or model folder")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                        help="model size (default tiny); the pretraining's when --pretrained is given")
    parser.add_argument("--modalities", help="comma-separated modality names in order (default: from the data)")
    parser.add_argument("--crop", type=int_triple, help="crop size, e.g. 96 or 128,128,96 (multiple of 16)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5%% of steps)")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--accumulate", type=int, default=1, help="gradient accumulation micro-batches per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of cases held out for validation AUC/accuracy, stratified by class "
                             "(0: validate on the training cases)")
    parser.add_argument("--normalization", default="zscore-nonzero",
                        choices=["zscore-nonzero", "zscore", "max", "none"])
    parser.add_argument("--resample", action="store_true",
                        help="resample modalities whose grid differs onto the first modality (physical space)")
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=50, help="validation every N steps")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--export", metavar="MODEL", help="write the trained model folder here when done")
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def config_from_args(args: argparse.Namespace):
    from emim.config import preset
    from emim.data.cases import dataset_spec
    from emim.finetune.classification import ClassifierConfig
    from emim.train.trainer import TrainSettings

    spec = dataset_spec(args.data)
    if args.modalities:
        spec = spec.select(args.modalities.split(","))
    warmup = args.warmup if args.warmup is not None else max(1, args.steps // 20)
    return ClassifierConfig(
        data=str(args.data), labels=str(args.labels),
        model=preset(args.preset, modalities=spec.names, crop_size=args.crop),
        train=TrainSettings(steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=warmup,
                            grad_clip=args.grad_clip, accumulate=args.accumulate, log_every=args.log_every,
                            eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed),
        pretrained=args.pretrained, batch_size=args.batch_size, val_fraction=args.val_fraction,
        normalization=args.normalization, resample=args.resample, device=args.device,
        modality_spec=spec.to_metadata())


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.export import export_model
    from emim.finetune.classification import resume_classifier_training, run_classifier_training

    progress = Progress(args.progress)
    if args.resume:
        resume_classifier_training(args.run, args.device, progress)
    elif args.data is None or args.labels is None:
        raise EmimError("give the data set and its labels CSV: emim finetune-classifier DATA --labels CSV --run RUN")
    else:
        run_classifier_training(config_from_args(args), args.run, progress=progress)
    if args.export and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 exports
        folder = export_model(args.run, args.export)
        progress.event("output", path=str(folder), kind="model")
    return 0
