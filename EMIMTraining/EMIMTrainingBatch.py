"""Train an E-MIM model without the GUI: check the data set, run, follow the metrics, optionally export and chart.

In 3D Slicer:   Slicer --no-main-window --python-script EMIMTrainingBatch.py --data DIR --run RUN --task pretrain ...
Plain Python:   python EMIMTrainingBatch.py ...   (needs the PyPI package slicer-core; same Logic, no Qt)

Ctrl+C (or SIGTERM) stops the run the graceful way: the engine saves a checkpoint and `--resume` continues it.
--charts PNG writes the live-view charts (drawn from the run's MRML plot nodes) when the run ends; --export MODEL
writes the model folder that EMIMSegmentation reads. Exit status: 0 finished, 1 failed, 2 bad input, 3 stopped.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent):  # the module's Lib; EMIMCommonLib (beside it once installed, a folder up here)
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import slicer  # noqa: E402

from EMIMCommonLib.errors import EMIMError  # noqa: E402
from EMIMCommonLib.headless import bootstrap, running_in_slicer  # noqa: E402
from EMIMTrainingLib.errors import EMIMTrainingError  # noqa: E402
from EMIMTrainingLib.logic import TrainingLogic  # noqa: E402
from EMIMTrainingLib.settings import DEFAULTS, START_FROM, TrainingSettings  # noqa: E402
from emim.contract import DEVICE_CHOICES, MASK_CHOICES, PRESET_NAMES, TRAINING_COMMANDS  # noqa: E402
from EMIMTrainingLib.training_job import STOPPED  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="EMIMTrainingBatch", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="run folder (new, or existing with --resume)")
    parser.add_argument("--data", help="folder of case folders or datalist JSON (not needed with --resume)")
    parser.add_argument("--task", choices=TRAINING_COMMANDS, default=DEFAULTS.task)
    parser.add_argument("--resume", action="store_true", help="continue the run in --run from its last checkpoint")
    parser.add_argument("--preset", choices=PRESET_NAMES, default=DEFAULTS.preset)
    parser.add_argument("--modalities", default="", help="comma-separated modality names (default: all)")
    parser.add_argument("--crop", default=DEFAULTS.crop, help="crop size, e.g. 96 or 128,128,96")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                        help="crops per step (default: the preset's)")
    parser.add_argument("--steps", type=int, default=DEFAULTS.steps, help="default: the task's recipe")
    parser.add_argument("--lr", type=float, default=DEFAULTS.learning_rate)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=DEFAULTS.device)
    parser.add_argument("--gpus", type=int, default=DEFAULTS.gpus,
                        help="more than 1: one process per GPU through torchrun")
    parser.add_argument("--mask", choices=MASK_CHOICES, default=DEFAULTS.mask)
    parser.add_argument("--patch-ratio", type=float, default=DEFAULTS.patch_ratio)
    parser.add_argument("--position-ratio", type=float, default=DEFAULTS.position_ratio)
    parser.add_argument("--pbt-levels", type=int, default=DEFAULTS.pbt_levels)
    parser.add_argument("--pbt-weight", type=float, default=DEFAULTS.pbt_weight)
    parser.add_argument("--start-from", choices=START_FROM, default=DEFAULTS.start_from,
                        help="pretraining: a pretraining's whole network; model: a segmentation model's whole network "
                             "(segmentation fine-tuning); nothing: random weights")
    parser.add_argument("--pretrained", default=DEFAULTS.pretrained,
                        help="what --start-from starts from: a run, checkpoint, model folder or shipped name "
                             "(default: the shipped pretraining or starter model)")
    parser.add_argument("--val-cases", type=int, default=DEFAULTS.val_cases,
                        help="segmentation fine-tuning: validation cases (default: a fifth of the cases, 1 to 4)")
    parser.add_argument("--modality-dropout", type=float, default=DEFAULTS.modality_dropout, metavar="P",
                        help="segmentation fine-tuning: chance per batch of training without some sequences, so "
                             "that the model segments cases that lack one (0: off)")
    parser.add_argument("--labels", default=DEFAULTS.labels_csv, help="classification fine-tuning: labels CSV")
    parser.add_argument("--val-fraction", type=float, default=DEFAULTS.val_fraction,
                        help="classification fine-tuning: share of cases held out")
    parser.add_argument("--log-every", type=int, default=DEFAULTS.log_every)
    parser.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every, help="default: the task's recipe")
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every,
                        help="default: the engine's")
    parser.add_argument("--export", type=Path, help="write the model folder here when the run has finished")
    parser.add_argument("--charts", type=Path, help="write the charts as a PNG when the run ends")
    return parser.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> TrainingSettings:
    return TrainingSettings(
        task=args.task, data=args.data or "", run=str(args.run), preset=args.preset,
        modalities=tuple(m for m in args.modalities.split(",") if m), crop=args.crop, batch_size=args.batch_size,
        steps=args.steps, learning_rate=args.lr, device=args.device, gpus=args.gpus, log_every=args.log_every,
        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every, mask=args.mask,
        patch_ratio=args.patch_ratio, position_ratio=args.position_ratio, pbt_levels=args.pbt_levels,
        pbt_weight=args.pbt_weight, start_from=args.start_from, pretrained=args.pretrained, val_cases=args.val_cases,
        modality_dropout=args.modality_dropout, labels_csv=args.labels, val_fraction=args.val_fraction)


def follow(job) -> None:
    """Poll until the run ends, printing progress when it changes; a signal to this script stops the run."""
    def request_stop(signum, frame):
        print("stopping: the engine saves a checkpoint first", flush=True)
        job.stop(wait=False)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        shown = None
        while not job.poll():
            text = job.progress_text()
            if text != shown:
                print(text, flush=True)
                shown = text
            time.sleep(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not running_in_slicer():
        bootstrap()
    logic = TrainingLogic()
    log = lambda text: print(f"  {text}", flush=True)  # noqa: E731
    try:
        if args.resume:
            job = logic.resume(args.run, device=args.device, gpus=args.gpus, logCallback=log)
        else:
            report = logic.checkData(args.data or "", [m for m in args.modalities.split(",") if m])
            print(report.summary_text(), flush=True)
            job = logic.start(settings_from_args(args), report=report, logCallback=log)
    except EMIMTrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    follow(job)
    for warning in logic.runWarnings(args.run):
        print(f"warning: {warning.text()}")
    if args.charts is not None and job.metrics.charts:
        print(f"charts: {logic.renderCharts(job.metrics, args.charts)}")
    if job.state == STOPPED:
        print(f"stopped at step {job.checkpoint_step}; continue with --resume --run {args.run}")
        return 3
    if job.state != "succeeded":
        print(f"error: {job.error}", file=sys.stderr)
        return 1
    if args.export is not None:
        try:
            print(f"model: {logic.exportModel(args.run, args.export, logCallback=log)}")
        except EMIMError as error:
            print(f"error: export failed: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    if running_in_slicer():
        slicer.util.exit(code)
    sys.exit(code)
