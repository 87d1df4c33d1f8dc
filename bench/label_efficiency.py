"""Which path gives the best segmentation of a researcher's own cases from a few labelled ones (issue #25)?

    python bench/label_efficiency.py [DATA] [--steps 300] [--seeds 0] [--paths shipped,adapted,...] [--smoke]

Leave one case out over the labelled cases in DATA (default: the three real BraTS mini cases): each fold trains on
the others and scores the one left out, with the same fine-tuning budget (--steps) for every path that trains:

- shipped:  the starter model as shipped (no training);
- adapted:  `emim finetune --init EMIM-starter-tiny` (the whole network, at the model's 2 mm; the --init recipe);
- encoder:  `emim finetune --pretrained EMIM-starter-tiny` (the starter's encoder, a new decoder, native spacing);
- emim:     `emim pretrain --init EMIM-starter-tiny-pretraining` on the fold's cases used unlabelled
            (--pretrain-steps), then fine-tuning from it;
- mim:      plain MIM (patch masks, no PBT) from nothing on the same cases and budget, then fine-tuning;
- scratch:  UNETR fine-tuned from random weights.

Global and lesion-wise Dice per region (`emim.evaluate`, the official BraTS conventions) per fold and seed, their
mean, the spread between seeds, and the wall time of each path; bench/results/label_efficiency.{json,md,png}.
`--smoke` runs every path for 1 step on two 64^3 cuts of the shipped sample case, one fold, each engine command in
this process (for the test suite).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402
from emim.contract import STARTER_MODEL, STARTER_PRETRAINING  # noqa: E402

PATHS = ("shipped", "adapted", "encoder", "emim", "mim", "scratch")
REGIONS = ("WT", "TC", "ET")
SCRATCH_LR = "2e-3"  # the starter recipe's fine-tuning rate (bench/starter_model.py), for every new decoder
ENCODER_LR = "1e-3"  # the crude encoder-only path as measured in issue #25


class Engine:
    """Runs engine commands, each in a new process (what a path's wall time includes), or for a smoke run in this
    one (a new process spends seconds importing torch) and with the smoke batch and diagnostics. A failure stops the
    bench with the engine's message."""

    def __init__(self, smoke: bool) -> None:
        self.in_process = smoke
        self.options = {"pretrain": common.cli_options(common.SMOKE_PRETRAINING),
                        "finetune": common.cli_options(common.SMOKE_FINETUNING)} if smoke else {}

    def __call__(self, *args: str) -> None:
        command = [*args, *self.options.get(args[0], []), "--progress", "none"]
        if self.in_process:
            from emim.cli import main as emim_main

            if emim_main(command) != 0:
                raise SystemExit(f"emim {' '.join(args)} failed (its message is above)")
            return
        result = subprocess.run([sys.executable, "-m", "emim", *command], capture_output=True, text=True,
                                env={**os.environ, **common.MALLOC_ENV})
        if result.returncode != 0:
            raise SystemExit(f"emim {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def finetune(emim: Engine, data: Path, run: Path, steps: int, seed: int, *start: str, lr: str | None = None) -> Path:
    """Fine-tune on `data` (no validation case: every labelled case trains) and export; returns the model folder."""
    emim("finetune", str(data), "--run", str(run), "--steps", str(steps), "--seed", str(seed), "--val-cases", "0",
         "--device", "cpu", "--eval-every", str(steps + 1), "--checkpoint-every", str(steps), *start,
         *(["--lr", lr] if lr else []))
    emim("export", str(run), "--out", str(run / "model"))
    return run / "model"


def pretrain(emim: Engine, data: Path, run: Path, steps: int, seed: int, *options: str) -> Path:
    emim("pretrain", str(data), "--run", str(run), "--steps", str(steps), "--seed", str(seed), "--device", "cpu",
         "--eval-every", str(steps + 1), "--checkpoint-every", str(steps), *options)
    return run


def model_for(emim: Engine, path: str, data: Path, work: Path, steps: int, pretrain_steps: int,
              seed: int) -> Path | str:
    """The model a path ends with, trained on the fold's `data` inside `work`."""
    if path == "shipped":
        return STARTER_MODEL
    if path == "adapted":
        return finetune(emim, data, work / "adapted", steps, seed, "--init", STARTER_MODEL)
    if path == "encoder":
        return finetune(emim, data, work / "encoder", steps, seed, "--pretrained", STARTER_MODEL, lr=ENCODER_LR)
    if path == "emim":
        run = pretrain(emim, data, work / "emim-pretrain", pretrain_steps, seed, "--init", STARTER_PRETRAINING)
        return finetune(emim, data, work / "emim", steps, seed, "--pretrained", str(run), lr=SCRATCH_LR)
    if path == "mim":
        run = pretrain(emim, data, work / "mim-pretrain", pretrain_steps, seed, "--mask", "patch", "--pbt-weight", "0")
        return finetune(emim, data, work / "mim", steps, seed, "--pretrained", str(run), lr=SCRATCH_LR)
    return finetune(emim, data, work / "scratch", steps, seed, lr=SCRATCH_LR)


def score(emim: Engine, model: Path | str, case: Path, out: Path) -> dict[str, float]:
    """Segment the left-out case and score it against its label (global and lesion-wise Dice per region)."""
    from emim.evaluate import evaluate

    emim("segment", "--model", str(model), "--output", str(out), "--device", "cpu", str(case))
    row = evaluate(out, case)[0]
    return {f"{kind}_{region}": float(row[f"{kind}_{region}"])
            for kind in ("dice", "lesion_dice") for region in REGIONS}


def fold_data(cases: list[Path], held_out: Path, folder: Path) -> Path:
    """A data folder with every case but `held_out` (copies: the engine never writes into them)."""
    for case in cases:
        if case != held_out:
            shutil.copytree(case, folder / case.name)
    return folder


def summary(rows: list[dict[str, Any]], paths: list[str]) -> list[dict[str, Any]]:
    """Per path: the mean over folds and seeds of each score, the largest spread between seeds, the time."""
    table = []
    for path in paths:
        mine = [r for r in rows if r["path"] == path]
        line: dict[str, Any] = {"path": path, "runs": len(mine),
                                "minutes": round(mean(r["seconds"] for r in mine) / 60, 1)}
        for key in (f"{kind}_{region}" for kind in ("dice", "lesion_dice") for region in REGIONS):
            line[key] = round(mean(r[key] for r in mine), 3)
        seeds = sorted({r["seed"] for r in mine})
        if len(seeds) > 1:
            by_seed = [mean(r["dice_TC"] for r in mine if r["seed"] == s) for s in seeds]
            line["seed_spread_TC"] = round(max(by_seed) - min(by_seed), 3)
        table.append(line)
    return table


def picture(rows: list[dict[str, Any]], paths: list[str], out: Path) -> Path:
    """Mean Dice per region and path (bars) with each fold and seed (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(REGIONS), figsize=(4 * len(REGIONS), 3.6), sharey=True)
    for axis, region in zip(axes, REGIONS):
        for x, path in enumerate(paths):
            values = [r[f"dice_{region}"] for r in rows if r["path"] == path]
            axis.bar(x, mean(values), color="#7aa6c2")
            axis.plot([x] * len(values), values, "o", color="#1d3557", markersize=4)
        axis.set_xticks(range(len(paths)), paths, rotation=30)
        axis.set_title(f"{region} Dice, left-out cases")
    axes[0].set_ylim(0, 1)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=common.MINI_DATA, help="labelled BraTS-layout cases")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps of every path that trains")
    parser.add_argument("--pretrain-steps", type=int, default=300, help="pretraining steps of the emim/mim paths")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of {', '.join(PATHS)}")
    parser.add_argument("--out", type=Path, help="work folder (default: <--results>/label-efficiency-work)")
    args = common.parse_args(parser, argv, "every path for 1 step on two 64^3 cases, one fold, in this process")
    out = args.out or args.results / "label-efficiency-work"
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {PATHS}")
    seeds = [int(s) for s in args.seeds.split(",")]
    steps, pretrain_steps, data = args.steps, args.pretrain_steps, args.data
    if args.smoke:
        steps = pretrain_steps = 1
        data = common.smoke_cases(out / "smoke-data", 2)[0].parent
    cases = sorted(p for p in data.iterdir() if p.is_dir())
    emim = Engine(smoke=args.smoke)
    info = common.header("cpu")
    rows = []
    for seed in seeds:
        for held_out in cases[:1] if args.smoke else cases:
            work = out / f"seed-{seed}" / held_out.name
            shutil.rmtree(work, ignore_errors=True)
            train = fold_data(cases, held_out, work / "data")
            for path in paths:
                start = time.monotonic()
                model = model_for(emim, path, train, work, steps, pretrain_steps, seed)
                scores = score(emim, model, held_out, work / "pred" / path)
                rows.append({"path": path, "seed": seed, "held_out": held_out.name,
                             "seconds": round(time.monotonic() - start, 1), **scores})
                print(json.dumps(rows[-1]), flush=True)
    table = summary(rows, paths)
    args.results.mkdir(parents=True, exist_ok=True)
    png = picture(rows, paths, args.results / "label_efficiency.png")
    columns = ["path", "runs", *[f"dice_{r}" for r in REGIONS], *[f"lesion_dice_{r}" for r in REGIONS], "minutes"]
    columns += ["seed_spread_TC"] if len(seeds) > 1 else []
    markdown = (f"{len(cases)} labelled cases, leave one out; {steps} fine-tuning steps"
                f" ({pretrain_steps} pretraining steps for emim/mim); seeds {seeds}.\n\n"
                + common.markdown_table(table, columns) + "\n\nPer fold:\n\n"
                + common.markdown_table(rows, ["path", "seed", "held_out", *[f"dice_{r}" for r in REGIONS],
                                               "seconds"]) + f"\n\n![label efficiency]({png.name})")
    common.write_results("label_efficiency", info, {"steps": steps, "pretrain_steps": pretrain_steps, "seeds": seeds,
                                                    "rows": rows, "summary": table}, markdown, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
