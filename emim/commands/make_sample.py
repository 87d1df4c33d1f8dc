"""`emim make-sample --out DIR --cases N --seed S`: write semi-synthetic BraTS-layout cases for demos and tests.

Anatomy comes from the MNI152 template bundled with nilearn (offline), so this works on any machine; the same seed
gives byte-identical files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emim.contract import CASE_OUTPUT
from emim.progress import PROGRESS_MODES


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder to write the case folders into")
    parser.add_argument("--cases", type=int, default=2, help="number of cases (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    parser.add_argument("--size", choices=("full", "small"), default="small",
                        help="full: 240x240x155 at 1 mm like BraTS; small: 120x120x78 at 2 mm, fast (default)")
    parser.add_argument("--foci", type=int, default=None,
                        help="tumour foci per case, 1-3 (default: one, sometimes two)")
    parser.add_argument("--randomise", action="store_true",
                        help="domain randomisation for models meant for real scans: 1-3 foci, wider contrast "
                             "jitter, unlabelled look-alikes (edge rim, enhancing vessels, white-matter "
                             "hyperintensities)")
    parser.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                        help="bar for people, json for programs (one event per line on stdout)")


def run(args: argparse.Namespace) -> int:
    from emim.progress import Progress
    from emim.sample import make_sample_cases

    progress = Progress(args.progress)
    progress.event("start", command="make-sample", total=args.cases, out=str(args.out), size=args.size)

    def on_case(index: int, folder: Path) -> None:
        progress.event("output", path=str(folder), kind=CASE_OUTPUT, case=folder.name)
        progress.step(index + 1, args.cases)

    folders = make_sample_cases(args.out, args.cases, args.seed, size=args.size, foci=args.foci, on_case=on_case,
                                randomise=args.randomise)
    progress.event("done", outputs=[str(f) for f in folders], message=f"wrote {len(folders)} cases to {args.out}")
    return 0
