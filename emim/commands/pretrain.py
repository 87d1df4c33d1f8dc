"""`emim pretrain DATA --run RUN_DIR [options]`: E-MIM pretraining; `--resume` continues a run with its saved config.

Ablations are flags: `--mask patch|position|modal|hybrid` and `--pbt-levels 0..4` (0 = plain MIM). `--init
PRETRAINING` continues a pretraining (encoder and decoder) on the data, with its model config.
Multi-GPU: `torchrun --nproc_per_node N -m emim pretrain DATA --run-dir RUN ...`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from emim.commands.arguments import (add_mask_arguments, add_training_arguments, mask_config, spacing_from_args,
                                     train_settings)
from emim.contract import DEFAULT_PRESET, PBT_LEVELS, PBT_WEIGHT
from emim.progress import Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    from emim.config import DECODER_FILLS
    from emim.pretrain.recipes import HELDOUT_CROPS

    add_training_arguments(parser, "data set: folder of cases, one case folder, or datalist JSON", steps=1000,
                           lr=None, weight_decay=0.05, eval_every=50, eval_help="collapse diagnostics every N steps",
                           batch_size=None)
    add_mask_arguments(parser)
    parser.set_defaults(preset=None, normalization=None)  # with --init: the pretraining's
    parser.add_argument("--init", metavar="PRETRAINING",
                        help="continue this E-MIM pretraining (encoder and reconstruction decoder) on the data: a "
                             "shipped pretraining's name (EMIM-starter-tiny-pretraining), a pretraining model folder, "
                             "run folder or checkpoint. Its model config, normalisation and recorded voxel size are "
                             "used (the data must have its modalities, in order); the learning rate defaults to a "
                             "third of the preset's recipe")
    parser.add_argument("--spacing", metavar="MM",
                        help="pretrain at this voxel size, e.g. 2 or 1,1,2 (mm): every case is resampled to it "
                             "(default: the --init pretraining's recorded voxel size, else each case's own)")
    parser.add_argument("--native-spacing", action="store_true",
                        help="pretrain on each case's own voxel size even when the --init pretraining records one")
    parser.add_argument("--patch-size", type=int, help="patch (token) size in voxels (default: the preset's, 16)")
    parser.add_argument("--decoder-fill", choices=DECODER_FILLS,
                        help="what a hidden token starts from in the decoder (default local: the mean of the "
                             "visible tokens at its position, else around it; mask-token = MAE)")
    parser.add_argument("--pbt-levels", type=int, default=PBT_LEVELS, help="pyramid Barlow Twins levels, 0 = plain MIM")
    parser.add_argument("--pbt-weight", type=float, default=PBT_WEIGHT)
    parser.add_argument("--pbt-lambda", type=float, default=0.0051, help="Barlow Twins off-diagonal weight")
    parser.add_argument("--heldout-cases", type=int, default=0,
                        help="cases kept out for collapse diagnostics (default 0: fixed crops of training cases)")
    parser.add_argument("--heldout-crops", type=int, default=HELDOUT_CROPS,
                        help=f"fixed crops the collapse diagnostics use (default {HELDOUT_CROPS})")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")


def _init_base(args: argparse.Namespace, modalities):
    """The config of continuing the --init pretraining, refusing options that would change its network or input."""
    from emim.config import preset
    from emim.errors import EmimError
    from emim.pretrained import ENCODER_FIELDS
    from emim.pretrain.run import init_config
    from emim.train.init import differing_fields

    base = init_config(args.data, args.init, modalities, crop_size=args.crop)
    fields = [f for f in ENCODER_FIELDS if f != "modalities"] + ["decoder_dim", "decoder_depth", "decoder_heads"]
    differences = differing_fields(preset(args.preset), base.model, fields) if args.preset else []
    given = {"patch_size": args.patch_size, "decoder_fill": args.decoder_fill}
    differences += [f"--{k.replace('_', '-')} {v} vs {getattr(base.model, k)}" for k, v in given.items()
                    if v is not None and v != getattr(base.model, k)]
    if args.normalization is not None and args.normalization != base.normalization:
        differences.append(f"--normalization {args.normalization} vs {base.normalization}")
    if differences:
        raise EmimError(f"options vs the pretraining {base.init['model']}: {'; '.join(differences)}. With --init the "
                        "pretraining's own network and normalisation are used; leave these options out.")
    return base


def config_from_args(args: argparse.Namespace):
    from emim.config import DECODER_FILLS
    from emim.errors import EmimError
    from emim.pretrain.run import default_config

    spacing = spacing_from_args(args, "pretrain")
    modalities = args.modalities.split(",") if args.modalities else None
    if args.init:
        base = _init_base(args, modalities)
    else:
        try:
            base = default_config(args.data, args.preset or DEFAULT_PRESET, modalities, crop_size=args.crop,
                                  patch_size=args.patch_size, decoder_fill=args.decoder_fill or DECODER_FILLS[0])
        except ValueError as error:
            raise EmimError(f"--crop/--patch-size: {error}") from None
    return replace(
        base,
        mask=mask_config(args),
        train=train_settings(args, base.train.lr),
        batch_size=base.batch_size if args.batch_size is None else args.batch_size, pbt_levels=args.pbt_levels,
        pbt_weight=args.pbt_weight, pbt_off_diagonal=args.pbt_lambda,
        normalization=args.normalization or base.normalization, resample=args.resample,
        spacing=None if args.native_spacing else spacing or base.spacing, heldout_cases=args.heldout_cases,
        heldout_crops=args.heldout_crops,
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
