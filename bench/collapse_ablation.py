"""Plain MIM (patch mask, no PBT) against E-MIM (hybrid masks + 4-level PBT) at the same small budget.

Writes bench/results/collapse_ablation.{json,md,png}: the held-out reconstruction loss beside the collapsed loss of
the same masked voxels, the prediction spread, and the effective rank of encoder features per pyramid level over
steps. Usage (CPU, a few minutes with the tiny preset):

    python bench/collapse_ablation.py --data ../shared/data/brats-gli-mini --steps 150
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from emim.pretrain.masks import MaskConfig
from emim.pretrain.run import default_config, run_pretraining
from emim.progress import Progress
from emim.train.runfolder import read_metrics
from emim.train.trainer import TrainSettings

VARIANTS = {
    "plain MIM (patch mask, no PBT)": {"mask": MaskConfig("patch"), "pbt_levels": 0},
    "E-MIM (hybrid mask + PBT x4)": {"mask": MaskConfig("hybrid"), "pbt_levels": 4},
}


def run_variant(data: str, out: Path, name: str, steps: int, preset: str, device: str, seed: int) -> dict:
    settings = TrainSettings(steps=steps, lr=1e-3, warmup_steps=max(1, steps // 20), log_every=5,
                             eval_every=max(1, steps // 10), checkpoint_every=steps, seed=seed)
    config = replace(default_config(data, preset), train=settings, device=device, **VARIANTS[name])
    run_dir = out / ("plain" if "plain" in name else "emim")
    started = time.monotonic()
    run_pretraining(config, run_dir, progress=Progress("bar"))
    records = read_metrics(run_dir / "metrics.jsonl")
    return {"name": name, "seconds": time.monotonic() - started,
            "evals": [r for r in records if r["kind"] == "eval"]}


def summarise(result: dict) -> dict:
    first, last = result["evals"][0], result["evals"][-1]
    return {"variant": result["name"], "seconds": round(result["seconds"], 1),
            "rec_loss_start": first["heldout_rec_loss"], "rec_loss_end": last["heldout_rec_loss"],
            "collapsed_loss": last["heldout_collapsed_loss_sample"],
            "loss_ratio_end": last["heldout_loss_ratio"],
            "prediction_std_end": last["heldout_prediction_std"], "target_std": last["heldout_target_std"],
            "effective_rank_start": first["effective_rank"], "effective_rank_end": last["effective_rank"]}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for result, colour in zip(results, ("tab:red", "tab:blue")):
        steps = [r["step"] for r in result["evals"]]
        axes[0].plot(steps, [r["heldout_rec_loss"] for r in result["evals"]], color=colour,
                     label=f"{result['name']}: reconstruction")
        axes[0].plot(steps, [r["heldout_collapsed_loss_sample"] for r in result["evals"]], color=colour,
                     linestyle="--", label=f"{result['name']}: collapsed loss")
        for level in range(4):
            axes[1].plot(steps, [r["effective_rank"][level] for r in result["evals"]], color=colour,
                         alpha=0.4 + 0.15 * level, label=result["name"] if level == 3 else None)
    axes[0].set(xlabel="step", ylabel="masked-voxel MSE (held-out crops)", title="complete collapse")
    axes[1].set(xlabel="step", ylabel="effective rank (levels 1-4, darker = deeper)", title="dimensional collapse")
    for ax in axes:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/brats-gli-mini"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "collapse_ablation"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run_variant(args.data, out / "runs", name, args.steps, args.preset, args.device, args.seed)
               for name in VARIANTS]
    rows = [summarise(r) for r in results]
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "steps": args.steps,
            "preset": args.preset, "data": args.data}
    (out / "collapse_ablation.json").write_text(json.dumps({"meta": meta, "rows": rows, "runs": results}, indent=1))
    lines = [f"# Collapse ablation ({args.preset}, {args.steps} steps, {meta['date']}, torch {meta['torch']})", "",
             "| variant | s | rec start | rec end | collapsed | ratio end | pred std / target std | eff. rank start"
             " -> end (levels 1-4) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ranks = ", ".join(f"{a:.1f}->{b:.1f}" for a, b in zip(r["effective_rank_start"], r["effective_rank_end"]))
        lines.append(f"| {r['variant']} | {r['seconds']} | {r['rec_loss_start']:.3f} | {r['rec_loss_end']:.3f} | "
                     f"{r['collapsed_loss']:.3f} | {r['loss_ratio_end']:.3f} | "
                     f"{r['prediction_std_end']:.3f} / {r['target_std']:.3f} | {ranks} |")
    (out / "collapse_ablation.md").write_text("\n".join(lines) + "\n")
    plot(results, out / "collapse_ablation.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
