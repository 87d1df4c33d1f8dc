"""The collapse ablation, on your own data: which mask patterns and whether PBT keep pretraining off the collapsed
solution, and what each encoder is worth downstream.

Pretrains each variant (plain MIM, each single pattern, HMP without PBT, PBT without HMP, E-MIM) at the same
budget with the engine's defaults otherwise, the last case left out: its fixed crops carry the diagnostics
(held-out reconstruction loss against the collapsed loss per pattern, prediction spread, effective rank per
pyramid level). Then fine-tunes a UNETR from each encoder and from scratch at an equal budget and reports the Dice
on the left-out case. Writes bench/results/collapse_ablation/{collapse_ablation.json,.md,.png}; runs already
finished in --out are reused, so a stopped bench continues where it was.

    python bench/collapse_ablation.py --data ../shared/data/brats-gli-mini --steps 3000 --finetune-steps 300
    python bench/collapse_ablation.py --preset small --device cuda   # on a GPU
    python bench/collapse_ablation.py --smoke   # E-MIM and scratch, 1 step each, on two 64^3 cases
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402

PATTERNS = ("patch", "position", "modal")
# name -> (mask pattern, PBT levels), most telling first: partial results of a stopped bench are still useful
VARIANTS: dict[str, tuple[str, int]] = {
    "E-MIM (HMP + PBT)": ("hybrid", 4),
    "plain MIM (patch, no PBT)": ("patch", 0),
    "HMP, no PBT": ("hybrid", 0),
    "PBT, no HMP (patch + PBT)": ("patch", 4),
    "position mask only (no PBT)": ("position", 0),
    "modal mask only (no PBT)": ("modal", 0),
}
SCRATCH = "scratch (no pretraining)"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:40]


def _finished(run_dir: Path, steps: int) -> bool:
    from emim.train.checkpoint import load_checkpoint

    last = run_dir / "checkpoints" / "last.pt"
    return last.is_file() and int(load_checkpoint(last)["step"]) >= steps


def pretrain_variant(args: argparse.Namespace, name: str, out: Path) -> dict[str, Any]:
    from emim.pretrain.run import default_config, run_pretraining
    from emim.progress import Progress
    from emim.train.runfolder import read_metrics

    pattern, pbt_levels = VARIANTS[name]
    run_dir = out / "pretrain" / _slug(name)
    started = time.monotonic()
    if not _finished(run_dir, args.steps):
        config = default_config(args.data, args.preset)
        settings = replace(config.train, steps=args.steps, warmup_steps=max(1, args.steps // 20),
                           eval_every=max(1, args.steps // 10), checkpoint_every=max(1, args.steps // 10),
                           seed=args.seed)
        config = replace(config, mask=replace(config.mask, pattern=pattern) if pattern != "hybrid" else config.mask,
                         pbt_levels=pbt_levels, train=settings, heldout_cases=1, device=args.device,
                         **(common.SMOKE_PRETRAINING if args.smoke else {}))
        run_pretraining(config, run_dir, resume=(run_dir / "checkpoints" / "last.pt").is_file(),
                        progress=Progress("bar"))
    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    return {"name": name, "mask": pattern, "pbt_levels": pbt_levels, "run_dir": str(run_dir),
            "seconds": time.monotonic() - started, "evals": evals}


def finetune_dice(args: argparse.Namespace, pretrained: str | None, label: str, out: Path) -> dict[str, float]:
    """Final validation Dice on the left-out case of a UNETR fine-tuned from `pretrained` (None = scratch)."""
    from emim.finetune.segmentation import default_config, run_finetuning
    from emim.progress import Progress
    from emim.train.runfolder import read_metrics

    run_dir = out / "finetune" / _slug(label)
    if not _finished(run_dir, args.finetune_steps):
        config = default_config(args.data, args.preset)
        settings = replace(config.train, steps=args.finetune_steps, warmup_steps=max(1, args.finetune_steps // 20),
                           eval_every=args.finetune_steps, checkpoint_every=args.finetune_steps, seed=args.seed)
        config = replace(config, pretrained=pretrained, train=settings, val_cases=1, device=args.device,
                         **(common.SMOKE_FINETUNING if args.smoke else {}))
        run_finetuning(config, run_dir, resume=(run_dir / "checkpoints" / "last.pt").is_file(),
                       progress=Progress("bar"))
    last = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "eval"][-1]
    return {k[len("val_dice_"):]: v for k, v in last.items() if k.startswith("val_dice_")}


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    first, last = result["evals"][0], result["evals"][-1]
    row = {"variant": result["name"], "minutes": round(result["seconds"] / 60, 1),
           "rec_end": last["heldout_rec_loss"], "collapsed": last["heldout_collapsed_loss_sample"],
           "ratio_end": last["heldout_loss_ratio"],
           "std_ratio_end": last["heldout_prediction_std"] / max(last["heldout_target_std"], 1e-12),
           "rank_start": first["effective_rank"], "rank_end": last["effective_rank"]}
    for pattern in PATTERNS:
        row[f"{pattern}_ratio"] = last.get(f"heldout_{pattern}_loss_ratio")
    return row


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    colours = plt.get_cmap("tab10").colors
    for result, colour in zip(results, colours):
        evals = result["evals"]
        steps = [r["step"] for r in evals]
        axes[0].plot(steps, [r["heldout_loss_ratio"] for r in evals], color=colour, label=result["name"])
        axes[1].plot(steps, [r["heldout_prediction_std"] / r["heldout_target_std"] for r in evals], color=colour)
        axes[2].plot(steps, [sum(r["effective_rank"]) / len(r["effective_rank"]) for r in evals], color=colour)
    axes[0].axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    axes[0].set(xlabel="step", ylabel="held-out rec. loss / collapsed loss", title="complete collapse (1 = constant)")
    axes[1].set(xlabel="step", ylabel="prediction std / target std", title="prediction spread")
    axes[2].set(xlabel="step", ylabel="effective rank (mean of 4 levels)", title="dimensional collapse")
    axes[0].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(rows: list[dict[str, Any]], dice: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    lines = [f"Pretraining {args.steps} steps ({args.preset}, engine defaults otherwise), diagnostics on 8 fixed crops "
             f"of the left-out case; fine-tuning {args.finetune_steps} steps, Dice on the left-out case.", "",
             "| variant | held-out rec / collapsed | patch | position | modal | pred. std / target std | "
             "eff. rank start -> end (mean of 4 levels) | Dice WT / TC / ET |", "|---|---|---|---|---|---|---|---|"]
    for row in rows + [{"variant": SCRATCH}]:
        scores = dice.get(row["variant"], {})
        dice_text = " / ".join(_f(scores.get(r)) for r in ("WT", "TC", "ET")) if scores else "-"
        if "ratio_end" not in row:
            lines.append(f"| {row['variant']} | - | - | - | - | - | - | {dice_text} |")
            continue
        ranks = (f"{sum(row['rank_start']) / 4:.0f} -> {sum(row['rank_end']) / 4:.0f}")
        lines.append(f"| {row['variant']} | {row['ratio_end']:.3f} | {_f(row['patch_ratio'])} | "
                     f"{_f(row['position_ratio'])} | {_f(row['modal_ratio'])} | {row['std_ratio_end']:.2f} | "
                     f"{ranks} | {dice_text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(common.MINI_DATA))
    parser.add_argument("--steps", type=int, default=3000, help="pretraining steps per variant")
    parser.add_argument("--finetune-steps", type=int, default=300, help="fine-tuning steps per encoder")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", help="comma-separated variant numbers to run (1-based; default all)")
    parser.add_argument("--out", help="results and runs (default: <--results>/collapse_ablation)")
    args = common.parse_args(parser, argv, "the first variant and scratch, 1 step each, on two 64^3 cases")
    common.ensure_malloc_env()
    from emim.device import resolve_device

    out = Path(args.out) if args.out else args.results / "collapse_ablation"
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        args.steps, args.finetune_steps, args.variants = 1, 1, "1"
        args.data = str(common.smoke_cases(out / "data", 2)[0].parent)
    names = list(VARIANTS)
    if args.variants:
        names = [names[int(i) - 1] for i in args.variants.split(",")]
    info = common.header(resolve_device(args.device))  # "auto" (the default) is no torch device
    results: list[dict[str, Any]] = []
    dice: dict[str, dict[str, float]] = {}
    if args.finetune_steps:
        dice[SCRATCH] = finetune_dice(args, None, "scratch", out)
    for name in names:  # the table is rewritten after each variant
        results.append(pretrain_variant(args, name, out))
        if args.finetune_steps:
            dice[name] = finetune_dice(args, results[-1]["run_dir"], name, out)
        write_results(out, info, args, results, dice)


def write_results(out: Path, info: dict[str, Any], args: argparse.Namespace, results: list[dict[str, Any]],
                  dice: dict[str, dict[str, float]]) -> None:
    rows = [summarise(r) for r in results]
    text = markdown(rows, dice, args)
    (out / "collapse_ablation.json").write_text(json.dumps({"meta": {**info, **vars(args)}, "rows": rows,
                                                            "dice": dice, "runs": results}, indent=1, default=str))
    (out / "collapse_ablation.md").write_text(common.header_markdown(info) + "\n" + text)
    plot(results, out / "collapse_ablation.png")
    print(text, flush=True)


if __name__ == "__main__":
    main()
