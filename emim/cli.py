"""The `emim` command: one subcommand per module in `emim.commands`, each with `add_parser` and `run`.

Subcommand modules are imported only when the command line names them, so `emim --help` stays fast and a
broken optional dependency of one command does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from typing import NoReturn

from emim import __version__
from emim.errors import EmimError

# subcommand name -> module under emim.commands, and its one-line help
COMMANDS: dict[str, tuple[str, str]] = {
    "evaluate": ("evaluate", "global and lesion-wise Dice, HD95 and lesion counts per tumour region, "
                             "predicted vs true label maps"),
    "model-info": ("model_info", "show what a model folder holds and check its weights file"),
    "check-data": ("check_data", "check a data set: files, dimensions, values and grids per case"),
    "collapse-report": ("collapse_report", "per mask pattern, whether a constant output beats learning on a data set"),
    "pretrain": ("pretrain", "E-MIM self-supervised pretraining (hybrid masks + pyramid Barlow Twins)"),
    "make-sample": ("make_sample", "write semi-synthetic multi-modal brain-tumour cases (BraTS layout)"),
    "finetune": ("finetune", "fine-tune a UNETR segmentation network on the E-MIM encoder (labelled cases)"),
    "export": ("export", "write a model folder from a fine-tuning or pretraining run's last checkpoint"),
    "segment": ("segment", "segment cases with an exported model; label maps on the input's own grid"),
    "finetune-classifier": ("finetune_classifier", "fine-tune a case-level classifier on the E-MIM encoder"),
    "classify": ("classify", "class probabilities per case with a classification model"),
    "reconstruct": ("reconstruct", "mask a case and show a pretraining's reconstruction of it (NIfTI)"),
    "demo": ("demo", "the whole path on generated sample data: pretrain, fine-tune, segment, evaluate, report"),
}


class UsageError(EmimError):
    """A command line argparse refuses (unknown option, bad value), raised instead of argparse's exit so that it is
    reported like every other failure, also as an `error` event."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise UsageError(f"{message} (see {self.prog} --help)")  # prog: "emim" or "emim COMMAND"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser of the command `only`; the others are listed by name for `emim --help`."""
    parser = _Parser(prog="emim", description="E-MIM engine: pretraining, fine-tuning and "
                                     "segmentation of multi-modal MRI")
    parser.add_argument("--version", action="version", version=f"emim {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name != only:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(f"emim.commands.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_parser(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    named = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser(only=named)
    try:
        args = parser.parse_args(argv)
    except UsageError as error:  # before the options are known: JSON progress is read off the raw arguments
        report_error(argparse.Namespace(command=named or "", progress=_progress_mode(argv)), str(error))
        return 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if args.command is None else 2
    signal.signal(signal.SIGTERM, _interrupt)  # training replaces it with its own checkpoint-then-stop handler
    try:
        return int(args._run(args) or 0)
    except EmimError as error:
        report_error(args, str(error))
        return 2
    except KeyboardInterrupt:
        print(f"emim {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug or an unforeseen input: one line, the traceback only on request
        if args.debug:
            raise
        report_error(args, f"unexpected {type(error).__name__}: {error}. Run it again with --debug for the "
                           "traceback, and report it.")
        return 1


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (Slicer's Cancel, `kill`) unwinds like Ctrl+C, so half-written outputs are removed on the way out."""
    raise KeyboardInterrupt


def _progress_mode(argv: list[str]) -> str | None:
    """The --progress value of a command line argparse could not parse (`--json` counts as json)."""
    for i, arg in enumerate(argv):
        if arg == "--json" or arg == "--progress=json" or (arg == "--progress" and argv[i + 1:i + 2] == ["json"]):
            return "json"
    return None


def report_error(args: argparse.Namespace, message: str) -> None:
    """The error on stderr, and as an `error` event on stdout for a program following JSON progress."""
    print(f"{' '.join(filter(None, ('emim', args.command)))}: error: {message}", file=sys.stderr)
    if getattr(args, "progress", None) == "json" or getattr(args, "json", False):
        print(json.dumps({"event": "error", "message": message}), flush=True)
