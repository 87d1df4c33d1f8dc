"""`emim pretrain DATA --run RUN_DIR [options]`: E-MIM pretraining; `--resume` continues a run with its saved config.

Ablations are flags: `--mask patch|position|modal|hybrid` and `--pbt-levels 0..4` (0 = plain MIM).
Multi-GPU: `torchrun --nproc_per_node N -m emim pretrain DATA --run-dir RUN ...`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from emim.commands.arguments import add_mask_arguments, add_training_arguments, mask_config, train_settings
from emim.progress import Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    from emim.config import DECODER_FILLS
    from emim.pretrain.run import HELDOUT_CROPS

    add_training_arguments(parser, "data set: folder of cases, one case folder, or datalist JSON", steps=1000,
                           lr=None, weight_decay=0.05, eval_every=50, eval_help="collapse diagnostics every N steps",
                           batch_size=None)
    add_mask_arguments(parser)
    parser.add_argument("--patch-size", type=int, help="patch (token) size in voxels (default: the preset's, 16)")
    parser.add_argument("--decoder-fill", choices=DECODER_FILLS, default=DECODER_FILLS[0],
                        help="what a hidden token starts from in the decoder (default local: the mean of the "
                             "visible tokens at its position, else around it; mask-token = MAE)")
    parser.add_argument("--pbt-levels", type=int, default=4, help="pyramid Barlow Twins levels, 0 = plain MIM")
    parser.add_argument("--pbt-weight", type=float, default=0.1)
    parser.add_argument("--pbt-lambda", type=float, default=0.0051, help="Barlow Twins off-diagonal weight")
    parser.add_argument("--heldout-cases", type=int, default=0,
                        help="cases kept out for collapse diagnostics (default 0: fixed crops of training cases)")
    parser.add_argument("--heldout-crops", type=int, default=HELDOUT_CROPS,
                        help=f"fixed crops the collapse diagnostics use (default {HELDOUT_CROPS})")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")


def config_from_args(args: argparse.Namespace):
    from emim.errors import EmimError
    from emim.pretrain.run import default_config

    modalities = args.modalities.split(",") if args.modalities else None
    try:
        base = default_config(args.data, args.preset, modalities, crop_size=args.crop, patch_size=args.patch_size,
                              decoder_fill=args.decoder_fill)
    except ValueError as error:
        raise EmimError(f"--crop/--patch-size: {error}") from None
    return replace(
        base,
        mask=mask_config(args),
        train=train_settings(args, base.train.lr),
        batch_size=base.batch_size if args.batch_size is None else args.batch_size, pbt_levels=args.pbt_levels,
        pbt_weight=args.pbt_weight, pbt_off_diagonal=args.pbt_lambda, normalization=args.normalization,
        resample=args.resample, heldout_cases=args.heldout_cases, heldout_crops=args.heldout_crops,
        workers=args.workers, device=args.device, cache=args.cache)


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.pretrain.run import resume_pretraining, run_pretraining

    progress = Progress(args.progress)
    if args.resume:
        resume_pretraining(args.run, args.device, args.workers, progress, args.cache)
    elif args.data is None:
        raise EmimError("give the data set to pretrain on (a folder of cases or a datalist JSON)")
    else:
        run_pretraining(config_from_args(args), args.run, progress=progress)
    return 0
