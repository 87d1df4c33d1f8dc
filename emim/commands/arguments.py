"""Argument types and constants shared by several subcommands."""

from __future__ import annotations

import argparse

from emim.config import MAX_CROP
from emim.contract import DEFAULT_NORMALIZATION, DEFAULT_PRESET, LOG_EVERY, NORMALIZATIONS, PRESET_NAMES

PERMILLE = 1000  # progress units over a whole inference job: windows of each case, cases of the batch


def int_triple(text: str) -> tuple[int, int, int]:
    """`96` or `128,128,96` (or `128x128x96`) -> a 3D size, each side in 1..MAX_CROP."""
    try:
        values = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"give whole numbers, e.g. 96 or 128,128,96, got {text!r}") from None
    if len(values) not in (1, 3):
        raise argparse.ArgumentTypeError(f"give one size or three (X,Y,Z), got {text!r}")
    if not all(1 <= v <= MAX_CROP for v in values):
        raise argparse.ArgumentTypeError(f"each side must be between 1 and {MAX_CROP} voxels, got {text!r}")
    return tuple(values * 3 if len(values) == 1 else values)  # type: ignore[return-value]


def image_assignment(text: str) -> tuple[str, str]:
    """`--image NAME=PATH` -> (modality name, path)."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--image takes NAME=PATH (e.g. t1n=case/t1.nii.gz), got {text!r}")
    return name.strip(), path


def add_training_arguments(parser: argparse.ArgumentParser, data_help: str, steps: int, lr: float | None,
                           weight_decay: float, eval_every: int, eval_help: str, batch_size: int | None = 2) -> None:
    """The options every training command shares (run folder, model size, optimiser, schedule, data, device).

    An `lr` or `batch_size` of None means the preset's recipe (pretraining), said so in the help."""
    from emim.progress import PROGRESS_MODES
    from emim.contract import DEVICE_CHOICES

    parser.add_argument("data", nargs="?", help=data_help)
    parser.add_argument("--run-dir", "--run", dest="run", required=True,
                        help="run folder (config, metrics.jsonl, checkpoints); spell it --run-dir under torchrun, "
                             "whose own --run-path option makes --run ambiguous")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESET_NAMES,
                        help=f"model size (default {DEFAULT_PRESET})")
    parser.add_argument("--modalities", help="comma-separated modality names in order (default: from the data)")
    parser.add_argument("--crop", type=int_triple, help="crop size, e.g. 96 or 128,128,96 (multiple of 16)")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help="crops per step" + (" (default: the preset's recipe)" if batch_size is None else ""))
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--lr", type=float, default=lr,
                        help="peak learning rate" + (" (default: the preset's recipe)" if lr is None else ""))
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5%% of steps)")
    parser.add_argument("--weight-decay", type=float, default=weight_decay)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--accumulate", type=int, default=1, help="gradient accumulation micro-batches per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--normalization", default=DEFAULT_NORMALIZATION, choices=NORMALIZATIONS)
    parser.add_argument("--resample", action="store_true",
                        help="resample modalities whose grid differs onto the first modality (physical space)")
    parser.add_argument("--cache", metavar="DIR",
                        help="preprocessing cache: each case prepared once, then memory-mapped (default: emim-cache "
                             "beside the run folder; runs on the same data share it)")
    parser.add_argument("--log-every", type=int, default=LOG_EVERY)
    parser.add_argument("--eval-every", type=int, default=eval_every, help=eval_help)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def add_mask_arguments(parser: argparse.ArgumentParser) -> None:
    """The hybrid-mask options of pretraining, shared by `pretrain` and `collapse-report`."""
    from emim.contract import MASK_CHOICES
    from emim.pretrain.mask_config import MaskConfig

    default = MaskConfig()
    parser.add_argument("--mask", default=default.pattern, choices=MASK_CHOICES)
    parser.add_argument("--patch-ratio", type=float, default=default.patch_ratio)
    parser.add_argument("--position-ratio", type=float, default=default.position_ratio)
    parser.add_argument("--hybrid-probs", default=",".join(f"{p:g}" for p in default.hybrid_probs),
                        help="weights of patch,position,modal in hybrid mode")


def mask_config(args: argparse.Namespace):
    """The MaskConfig of the mask options, or an EmimError that names the bad option."""
    from emim.errors import EmimError
    from emim.pretrain.mask_config import MaskConfig

    try:
        probs = tuple(float(v) for v in args.hybrid_probs.split(","))
        return MaskConfig(args.mask, args.patch_ratio, args.position_ratio, probs)  # type: ignore[arg-type]
    except ValueError as error:
        raise EmimError(f"mask options: {error} (e.g. --patch-ratio 0.5 --hybrid-probs 1,1,1)") from None


def check_training_options(args: argparse.Namespace) -> None:
    """Refuse option values that would crash deep inside training or silently do nothing, naming the option."""
    import math

    from emim.errors import EmimError

    at_least = {"steps": 1, "batch_size": 1, "accumulate": 1, "log_every": 1, "eval_every": 1,
                "checkpoint_every": 1, "warmup": 0, "workers": 0, "heldout_cases": 0, "heldout_crops": 1}
    for name, low in at_least.items():
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise EmimError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    for name in ("lr", "weight_decay", "grad_clip"):
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value >= 0 and (value > 0 or name == "weight_decay")):
            raise EmimError(f"--{name.replace('_', '-')} must be a finite number above 0"
                            f"{' (or 0)' if name == 'weight_decay' else ''}, got {value}")


def train_settings(args: argparse.Namespace, default_lr: float | None = None):
    """TrainSettings from the shared training options (warm-up defaults to 5% of the steps; the learning rate to
    `default_lr` when --lr is not given)."""
    from emim.train.trainer import TrainSettings

    check_training_options(args)
    warmup = args.warmup if args.warmup is not None else max(1, args.steps // 20)
    return TrainSettings(steps=args.steps, lr=default_lr if args.lr is None else args.lr,
                         weight_decay=args.weight_decay, warmup_steps=warmup,
                         grad_clip=args.grad_clip, accumulate=args.accumulate, log_every=args.log_every,
                         eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed)


def add_case_inputs(parser: argparse.ArgumentParser, what: str = "case folder(s) or folder(s) of cases") -> None:
    """INPUT case folders, or every modality of one case as `--image NAME=PATH` (the inference commands)."""
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help=what)
    parser.add_argument("--image", type=image_assignment, action="append", default=[], metavar="NAME=PATH",
                        help="one modality file of a single case, e.g. --image t1n=case-t1n.nii.gz (repeat)")


def check_case_inputs(args: argparse.Namespace) -> None:
    """Refuse both or neither kind of input, and a modality given twice, before anything heavy is loaded."""
    from emim.errors import EmimError

    if bool(args.image) == bool(args.inputs):
        raise EmimError("give either INPUT case folder(s) or every modality with --image NAME=PATH, not "
                        f"{'both' if args.image else 'neither'}")
    if len(dict(args.image)) != len(args.image):
        raise EmimError("the same modality is given twice with --image; give each modality once")


def case_inputs(args: argparse.Namespace, spec, allow_missing: bool = False):
    """The cases the inference command works on, with files assigned by the model's modality spec."""
    from emim.data.case_inputs import case_from_images, resolve_cases

    if args.image:
        return [case_from_images(dict(args.image), spec, allow_missing)]
    return resolve_cases(args.inputs, spec)


def spacing_from_args(args: argparse.Namespace, action: str):
    """The voxel size of `--spacing` (None: the model's, or each case's with `--native-spacing`), or an EmimError
    naming the option; `action` is what the spacing is for ("train", "pretrain")."""
    from emim.errors import EmimError
    from emim.data.spacing import parse_spacing

    if args.spacing and args.native_spacing:
        raise EmimError(f"--spacing sets the voxel size to {action} at and --native-spacing keeps each case's own; "
                        "give one of them")
    try:
        return parse_spacing(args.spacing) if args.spacing else None
    except ValueError as error:
        raise EmimError(f"--spacing: {error}") from None
