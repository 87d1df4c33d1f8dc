"""`emim finetune DATA --run RUN_DIR [--pretrained RUN_OR_CKPT_OR_MODEL] [options]`: UNETR segmentation fine-tuning.

Without --pretrained the encoder starts random (the from-scratch baseline). `--resume` continues a run with its
saved config. Multi-GPU: `torchrun --nproc_per_node N -m emim finetune ...`. Export the result with `emim export`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from emim.commands.arguments import int_triple
from emim.config import PRESETS
from emim.progress import PROGRESS_MODES, Progress
from emim.train.device import DEVICE_CHOICES


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="labelled data set: folder of cases or datalist JSON")
    parser.add_argument("--run-dir", "--run", dest="run", required=True,
                        help="run folder (config, metrics.jsonl, checkpoints); spell it --run-dir under torchrun")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    parser.add_argument("--pretrained", help="E-MIM pretraining run folder, checkpoint (.pt) or model folder whose "
                                             "encoder weights to start from (default: random encoder)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size (default tiny)")
    parser.add_argument("--modalities", help="comma-separated modality names in order (default: from the data)")
    parser.add_argument("--crop", type=int_triple, help="crop (window) size, e.g. 96 or 128,128,96 (multiple of 16)")
    parser.add_argument("--feature-size", type=int, help="UNETR decoder width (default 8 for tiny, else 16)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5%% of steps)")
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--accumulate", type=int, default=1, help="gradient accumulation micro-batches per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--freeze-encoder-steps", type=int, default=0,
                        help="train only the decoder for the first N steps (lets it adapt to the pretrained encoder)")
    parser.add_argument("--val-cases", type=int, default=1, help="last K cases held out for validation Dice")
    parser.add_argument("--val-overlap", type=float, default=0.5, help="sliding-window overlap in validation")
    parser.add_argument("--sw-batch-size", type=int, default=2, help="windows per forward pass in validation")
    parser.add_argument("--normalization", default="zscore-nonzero",
                        choices=["zscore-nonzero", "zscore", "max", "none"])
    parser.add_argument("--resample", action="store_true",
                        help="resample modalities whose grid differs onto the first modality (physical space)")
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=100, help="validation Dice every N steps")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def config_from_args(args: argparse.Namespace):
    from emim.finetune.segmentation import default_config
    from emim.train.trainer import TrainSettings

    modalities = args.modalities.split(",") if args.modalities else None
    base = default_config(args.data, args.preset, modalities, crop_size=args.crop)
    warmup = args.warmup if args.warmup is not None else max(1, args.steps // 20)
    return replace(
        base,
        train=TrainSettings(steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=warmup,
                            grad_clip=args.grad_clip, accumulate=args.accumulate, log_every=args.log_every,
                            eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed),
        feature_size=args.feature_size or base.feature_size, batch_size=args.batch_size, pretrained=args.pretrained,
        freeze_encoder_steps=args.freeze_encoder_steps, val_cases=args.val_cases, overlap=args.val_overlap,
        sw_batch_size=args.sw_batch_size, normalization=args.normalization, resample=args.resample,
        workers=args.workers, device=args.device)


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.finetune.segmentation import resume_finetuning, run_finetuning

    progress = Progress(args.progress)
    if args.resume:
        resume_finetuning(args.run, args.device, args.workers, progress)
    elif args.data is None:
        raise EmimError("give the labelled data set to fine-tune on (a folder of cases or a datalist JSON)")
    else:
        run_finetuning(config_from_args(args), args.run, progress=progress)
    return 0
