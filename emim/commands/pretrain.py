"""`emim pretrain DATA --run RUN_DIR [options]`: E-MIM pretraining; `--resume` continues a run with its saved config.

Ablations are flags: `--mask patch|position|modal|hybrid` and `--pbt-levels 0..4` (0 = plain MIM).
Multi-GPU: `torchrun --nproc_per_node N -m emim pretrain DATA --run-dir RUN ...`.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from emim.commands.arguments import int_triple
from emim.config import PRESETS
from emim.progress import PROGRESS_MODES, Progress
from emim.train.device import DEVICE_CHOICES


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="?", help="data set: folder of cases, one case folder, or datalist JSON")
    parser.add_argument("--run-dir", "--run", dest="run", required=True,
                        help="run folder (config, metrics.jsonl, checkpoints); spell it --run-dir under torchrun, "
                             "whose own --run-path option makes --run ambiguous")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model size (default tiny)")
    parser.add_argument("--modalities", help="comma-separated modality names in order (default: from the data)")
    parser.add_argument("--crop", type=int_triple, help="crop size, e.g. 96 or 128,128,96 (multiple of 16)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=1.5e-4)
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 5%% of steps)")
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--accumulate", type=int, default=1, help="gradient accumulation micro-batches per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mask", default="hybrid", choices=["hybrid", "patch", "position", "modal"])
    parser.add_argument("--patch-ratio", type=float, default=0.75)
    parser.add_argument("--position-ratio", type=float, default=0.6)
    parser.add_argument("--hybrid-probs", default="1,1,1", help="weights of patch,position,modal in hybrid mode")
    parser.add_argument("--pbt-levels", type=int, default=4, help="pyramid Barlow Twins levels, 0 = plain MIM")
    parser.add_argument("--pbt-weight", type=float, default=0.1)
    parser.add_argument("--pbt-lambda", type=float, default=0.0051, help="Barlow Twins off-diagonal weight")
    parser.add_argument("--normalization", default="zscore-nonzero",
                        choices=["zscore-nonzero", "zscore", "max", "none"])
    parser.add_argument("--resample", action="store_true",
                        help="resample modalities whose grid differs onto the first modality (physical space)")
    parser.add_argument("--heldout-cases", type=int, default=0,
                        help="cases kept out for collapse diagnostics (default 0: fixed crops of training cases)")
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--eval-every", type=int, default=50, help="collapse diagnostics every N steps")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def config_from_args(args: argparse.Namespace):
    from emim.pretrain.masks import MaskConfig
    from emim.pretrain.run import default_config
    from emim.train.trainer import TrainSettings

    modalities = args.modalities.split(",") if args.modalities else None
    base = default_config(args.data, args.preset, modalities, crop_size=args.crop)
    probs = tuple(float(v) for v in args.hybrid_probs.split(","))
    warmup = args.warmup if args.warmup is not None else max(1, args.steps // 20)
    return replace(
        base,
        mask=MaskConfig(args.mask, args.patch_ratio, args.position_ratio, probs),
        train=TrainSettings(steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, warmup_steps=warmup,
                            grad_clip=args.grad_clip, accumulate=args.accumulate, log_every=args.log_every,
                            eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, seed=args.seed),
        batch_size=args.batch_size, pbt_levels=args.pbt_levels, pbt_weight=args.pbt_weight,
        pbt_off_diagonal=args.pbt_lambda, normalization=args.normalization, resample=args.resample,
        heldout_cases=args.heldout_cases, workers=args.workers, device=args.device)


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.pretrain.run import resume_pretraining, run_pretraining

    progress = Progress(args.progress)
    if args.resume:
        resume_pretraining(args.run, args.device, args.workers, progress)
    elif args.data is None:
        raise EmimError("give the data set to pretrain on (a folder of cases or a datalist JSON)")
    else:
        run_pretraining(config_from_args(args), args.run, progress=progress)
    return 0
