"""`emim demo --out DIR`: the whole path on generated sample data, ending in DIR/report.md and DIR/demo.png."""

from __future__ import annotations

import argparse

from emim.progress import PROGRESS_MODES, Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="demo-output", help="output folder (replaced if it holds an earlier demo)")
    parser.add_argument("--cases", type=int, default=6, help="generated training cases (one is used to validate)")
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--real-cases", metavar="DIR",
                        help="also segment and evaluate the labelled cases in DIR (e.g. ../shared/data/brats-gli-mini)")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def run(args: argparse.Namespace) -> int:
    from emim.demo import run_demo

    report = run_demo(args.out, args.cases, args.pretrain_steps, args.finetune_steps, args.seed, args.device,
                      Progress(args.progress), args.real_cases)
    print(report.read_text())
    return 0
