"""`emim finetune DATA --run RUN_DIR [--pretrained RUN_OR_CKPT_OR_MODEL] [options]`: UNETR segmentation fine-tuning.

Without --pretrained the encoder starts random (the from-scratch baseline). `--resume` continues a run with its
saved config. Multi-GPU: `torchrun --nproc_per_node N -m emim finetune ...`. Export the result with `emim export`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from emim.commands.arguments import add_training_arguments, train_settings
from emim.progress import Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "labelled data set: folder of cases or datalist JSON", steps=1000, lr=1e-4,
                           weight_decay=1e-5, eval_every=100, eval_help="validation Dice every N steps")
    parser.add_argument("--pretrained", help="E-MIM pretraining run folder, checkpoint (.pt), model folder or shipped "
                                             "pretraining's name (EMIM-starter-tiny-pretraining) whose encoder "
                                             "weights to start from (default: random encoder)")
    parser.add_argument("--feature-size", type=int, help="UNETR decoder width (default 8 for tiny, else 16)")
    parser.add_argument("--freeze-encoder-steps", type=int, default=0,
                        help="train only the decoder for the first N steps (lets it adapt to the pretrained encoder)")
    parser.add_argument("--val-cases", type=int,
                        help="last K cases held out for validation Dice (default: a fifth of the cases, 1 to 4)")
    parser.add_argument("--val-overlap", type=float, default=0.5, help="sliding-window overlap in validation")
    parser.add_argument("--sw-batch-size", type=int, default=2, help="windows per forward pass in validation")
    parser.add_argument("--modality-dropout", type=float, default=0.0, metavar="P",
                        help="per batch, the probability of hiding a random subset of the modalities (never all), "
                             "so the model can segment a case that misses a sequence (default 0: off)")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")


def config_from_args(args: argparse.Namespace):
    from emim.errors import EmimError
    from emim.finetune.segmentation import default_config

    if not 0 <= args.modality_dropout <= 1:
        raise EmimError(f"--modality-dropout is a probability between 0 and 1, got {args.modality_dropout}")

    modalities = args.modalities.split(",") if args.modalities else None
    base = default_config(args.data, args.preset, modalities, crop_size=args.crop)
    return replace(
        base,
        train=train_settings(args),
        feature_size=args.feature_size or base.feature_size, batch_size=args.batch_size, pretrained=args.pretrained,
        freeze_encoder_steps=args.freeze_encoder_steps, modality_dropout=args.modality_dropout,
        val_cases=args.val_cases, overlap=args.val_overlap,
        sw_batch_size=args.sw_batch_size, normalization=args.normalization, resample=args.resample,
        workers=args.workers, device=args.device, cache=args.cache)


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.finetune.segmentation import resume_finetuning, run_finetuning

    progress = Progress(args.progress)
    if args.resume:
        resume_finetuning(args.run, args.device, args.workers, progress, args.cache)
    elif args.data is None:
        raise EmimError("give the labelled data set to fine-tune on (a folder of cases or a datalist JSON)")
    else:
        run_finetuning(config_from_args(args), args.run, progress=progress)
    return 0
