"""`emim finetune DATA --run RUN_DIR [--pretrained RUN_OR_CKPT_OR_MODEL | --init MODEL] [options]`: UNETR
segmentation fine-tuning.

Without --pretrained the encoder starts random (the from-scratch baseline). With --init the whole network starts from
a segmentation model, whose metadata gives its size, regions, modalities, normalisation and voxel size, with a recipe
for a handful of cases (`INIT_RECIPE`). `--resume` continues a run with its saved config. Multi-GPU:
`torchrun --nproc_per_node N -m emim finetune ...`. Export the result with `emim export`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from emim.commands.arguments import add_training_arguments, spacing_from_args, train_settings
from emim.progress import Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    from emim.finetune.recipes import INIT_RECIPE, SCRATCH_RECIPE

    add_training_arguments(parser, "labelled data set: folder of cases or datalist JSON", steps=SCRATCH_RECIPE.steps,
                           lr=SCRATCH_RECIPE.lr, weight_decay=SCRATCH_RECIPE.weight_decay,
                           eval_every=SCRATCH_RECIPE.eval_every, eval_help="validation Dice every N steps")
    # left unset here, so that the recipe of --init or of a new network fills what the command line leaves out
    parser.set_defaults(steps=None, lr=None, batch_size=None, eval_every=None, weight_decay=None, preset=None,
                        normalization=None)
    parser.add_argument("--init", metavar="MODEL",
                        help="start the whole network (encoder, decoder, head) from this segmentation model: a "
                             "shipped model's name (EMIM-starter-tiny) or a model folder. Its metadata gives the "
                             "model size, regions, modalities (the data must have them, in order), normalisation "
                             "and the voxel size it was trained at, which the cases are resampled to. Options left "
                             "out follow a recipe for a handful of cases "
                             f"({INIT_RECIPE.describe()}): a starting point, which bench/label_efficiency.py "
                             "measures. Without --init: "
                             f"{SCRATCH_RECIPE.describe()}")
    parser.add_argument("--spacing", metavar="MM",
                        help="train at this voxel size, e.g. 2 or 1,1,2 (mm): every case is resampled to it as "
                             "`emim segment` does (default: the --init model's voxel size, else each case's own)")
    parser.add_argument("--native-spacing", action="store_true",
                        help="train on each case's own voxel size even with --init (the model then also records "
                             "the cases' spacing)")
    parser.add_argument("--pretrained", help="E-MIM pretraining run folder, checkpoint (.pt), model folder or shipped "
                                             "pretraining's name (EMIM-starter-tiny-pretraining) whose encoder "
                                             "weights to start from (default: random encoder)")
    parser.add_argument("--feature-size", type=int, help="UNETR decoder width (default 8 for tiny, else 16)")
    parser.add_argument("--freeze-encoder-steps", type=int,
                        help="train only the decoder for the first N steps (lets it adapt to the pretrained encoder; "
                             "default: the recipe's)")
    parser.add_argument("--val-cases", type=int,
                        help="last K cases held out for validation Dice (default: a fifth of the cases, 1 to 4)")
    parser.add_argument("--val-overlap", type=float, default=0.5, help="sliding-window overlap in validation")
    parser.add_argument("--sw-batch-size", type=int, default=2, help="windows per forward pass in validation")
    parser.add_argument("--modality-dropout", type=float, metavar="P",
                        help="per batch, the probability of hiding a random subset of the modalities (never all), "
                             "so the model can segment a case that misses a sequence (default 0: off; with --init "
                             "the model's own)")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")


def _with_recipe(args: argparse.Namespace, recipe) -> argparse.Namespace:
    """The arguments with what the command line left out taken from `recipe`."""
    filled = argparse.Namespace(**vars(args))
    for name in ("steps", "lr", "batch_size", "freeze_encoder_steps", "eval_every", "weight_decay"):
        if getattr(filled, name, None) is None:
            setattr(filled, name, getattr(recipe, name))
    return filled


def _check_against_model(args: argparse.Namespace, base) -> None:
    """Refuse options that contradict the --init model's metadata (they would change its network or its input)."""
    from emim.config import preset
    from emim.errors import EmimError
    from emim.pretrained import ENCODER_FIELDS
    from emim.train.init import differing_fields

    what = base.init["model"]
    if args.preset is not None:
        fields = [f for f in ENCODER_FIELDS if f != "modalities"]
        differences = differing_fields(preset(args.preset), base.model, fields)
        if differences:
            raise EmimError(f"--preset {args.preset} vs the model {what}: {'; '.join(differences)}. With --init the "
                            "model's own size is used; leave --preset out.")
    if args.feature_size is not None and args.feature_size != base.feature_size:
        raise EmimError(f"--feature-size {args.feature_size} vs {base.feature_size} of the model {what}: its decoder "
                        "weights have that width; leave --feature-size out with --init.")
    if args.normalization is not None and args.normalization != base.normalization:
        raise EmimError(f"--normalization {args.normalization} vs {base.normalization} of the model {what}: it "
                        "learnt on images normalised its way; leave --normalization out with --init.")


def config_from_args(args: argparse.Namespace):
    from emim.contract import DEFAULT_PRESET
    from emim.errors import EmimError
    from emim.finetune.recipes import INIT_RECIPE, SCRATCH_RECIPE
    from emim.finetune.segmentation import default_config

    if args.modality_dropout is not None and not 0 <= args.modality_dropout <= 1:
        raise EmimError(f"--modality-dropout is a probability between 0 and 1, got {args.modality_dropout}")
    if args.init and args.pretrained:
        raise EmimError("--init starts the whole network from a segmentation model and --pretrained only its encoder "
                        "from a pretraining; give one of them")
    spacing = spacing_from_args(args, "train")

    modalities = args.modalities.split(",") if args.modalities else None
    if args.init:
        from emim.finetune.from_model import init_config

        base = init_config(args.data, args.init, modalities, crop_size=args.crop)
        _check_against_model(args, base)
        args = _with_recipe(args, INIT_RECIPE)
    else:
        base = default_config(args.data, args.preset or DEFAULT_PRESET, modalities, crop_size=args.crop)
        args = _with_recipe(args, SCRATCH_RECIPE)
    return replace(
        base,
        train=train_settings(args),
        feature_size=args.feature_size or base.feature_size, batch_size=args.batch_size, pretrained=args.pretrained,
        freeze_encoder_steps=args.freeze_encoder_steps,
        modality_dropout=base.modality_dropout if args.modality_dropout is None else args.modality_dropout,
        val_cases=args.val_cases, overlap=args.val_overlap,
        sw_batch_size=args.sw_batch_size, normalization=args.normalization or base.normalization,
        resample=args.resample, workers=args.workers, device=args.device, cache=args.cache,
        spacing=None if args.native_spacing else spacing or base.spacing)


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
