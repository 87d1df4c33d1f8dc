"""Training at data-set scale: peak memory and time to the first step of `emim pretrain` and `emim finetune` versus
the number of cases, what the preprocessing cache costs and saves, and whether the crop loader feeds a GPU.

Each run is the real CLI in a subprocess (tiny preset, `--workers 2`, CPU) on generated cases listed in a datalist
(the first N of one generated set, so every size reads the same files); its memory is sampled every 50 ms: the
engine process's RSS, and the whole process tree's (engine + loader workers) summed RSS and PSS (PSS shares the
pages the forked workers have in common with the engine, so it does not count them twice). `--baseline REV` runs
the same commands from an older commit (e.g. the one before the cache) for comparison.

Loader throughput reuses `pretrain_throughput.measure_data` (crops from one full-size case's cache entry). The crops
per second a GPU step needs are estimated, not measured (no GPU was lent): one E-MIM step at 96^3 takes the longer
of its counted FLOPs at an assumed `ASSUMED_MFU` of an H200's bf16 dense peak and `LAUNCH_FLOOR_S` (a step is about
a thousand kernel launches of a few microseconds each), at batch 2 and 8 per GPU.

    python bench/data_scaling.py --cases 10,100,300 --full 10 --baseline e36e81e
    python bench/data_scaling.py --smoke    # 2 cases, 1 pretraining step, 1 loader batch, the tiny preset's GFLOP
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

ASSUMED_MFU = 0.35  # of the bf16 dense peak; ViT training at a few hundred tokens per crop
LAUNCH_FLOOR_S = 0.010  # no step is shorter: forward, backward and optimiser launch ~1,000 kernels
GPU_BATCHES = (2, 8)
STEPS = 50
GIB = 2**30
LOADER = {"crops": (64, 96), "workers": (0, 2, 4), "batches": 100}
SMOKE_LOADER = {"crops": (64,), "workers": (0,), "batches": 1}


def datalist(cases_dir: Path, count: int, out: Path) -> Path:
    """A datalist of the first `count` generated cases (absolute paths)."""
    folders = sorted(p for p in cases_dir.iterdir() if p.is_dir())[:count]
    if len(folders) < count:
        raise SystemExit(f"{cases_dir} holds {len(folders)} cases, {count} asked")
    training = [{"case_id": f.name, "image": {m: str(f / f"{f.name}-{m}.nii.gz") for m in ("t1n", "t1c", "t2w", "t2f")},
                 "label": str(f / f"{f.name}-seg.nii.gz")} for f in folders]
    out.write_text(json.dumps({"training": training}))
    return out


def generated(size: str, count: int, cache: Path) -> Path:
    """`count` generated cases of `size` (kept in `cache` between runs)."""
    from emim.sample import make_sample_cases

    folder = cache / f"scale-{size}"
    have = len([p for p in folder.iterdir() if p.is_dir()]) if folder.is_dir() else 0
    if have < count:
        make_sample_cases(folder, count, seed=11, size=size)
    return folder


class TreeMemory:
    """Peak RSS of one process, and peak summed RSS and PSS of it and its children, sampled by a thread."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak = {"rss": 0, "tree_rss": 0, "tree_pss": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
                infos = [p.memory_full_info() for p in processes]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                infos = []
            if infos:
                self.peak["rss"] = max(self.peak["rss"], infos[0].rss)
                self.peak["tree_rss"] = max(self.peak["tree_rss"], sum(i.rss for i in infos))
                self.peak["tree_pss"] = max(self.peak["tree_pss"], sum(getattr(i, "pss", i.rss) for i in infos))
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {key: round(value / GIB, 3) for key, value in self.peak.items()}


def run_engine(command: str, data: Path, run: Path, cache: Path | None, source: Path,
               budget: Sequence[str]) -> dict[str, Any]:
    """One training run through the CLI from the checkout `source`; memory, time to the first step, cache use.
    `cache` None: a checkout from before the cache (no --cache option). `budget`: --steps and what else sets it."""
    args = [sys.executable, "-m", "emim", command, str(data), "--run", str(run), *budget, "--workers", "2",
            "--device", "cpu", "--progress", "json", "--eval-every", "1000", "--checkpoint-every", "1000",
            "--log-every", "1"] + (["--cache", str(cache)] if cache else [])
    if command == "finetune":
        args += ["--val-cases", "1"]
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=source)
    memory = TreeMemory(process.pid)
    first_step, cache_summary = None, {}
    for line in process.stdout:  # type: ignore[union-attr]
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "progress" and first_step is None:
            first_step = time.monotonic() - started
        if event.get("event") == "cache" and "reused" in event:
            cache_summary = event
    code = process.wait()
    peaks = memory.stop()
    if code != 0:
        raise SystemExit(f"{' '.join(args)} failed ({code}): {process.stderr.read()[-2000:]}")  # type: ignore
    return {"command": command, "first_step_s": round(first_step or 0.0, 1),
            "total_s": round(time.monotonic() - started, 1), **peaks,
            "cache_built": cache_summary.get("built"), "cache_reused": cache_summary.get("reused"),
            "cache_s": cache_summary.get("seconds")}


def baseline_checkout(revision: str, root: Path) -> Path:
    target = root / f"baseline-{revision}"
    if not target.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(target), revision], cwd=common.ROOT, check=True,
                       capture_output=True)
    return target


def scaling_rows(counts: list[int], cases: Path, size: str, commands: list[str], baseline: str | None, work: Path,
                 baseline_max: int, budget: Sequence[str]) -> list[dict[str, Any]]:
    """Both runs of each command (cache built, cache reused) on the first N `cases` for each N in `counts`."""
    rows = []
    for count in counts:
        data = datalist(cases, count, work / f"{size}-{count}.json")
        for command in commands:
            cache = work / f"cache-{size}-{count}-{command}"
            first = run_engine(command, data, work / f"run-{size}-{count}-{command}-1", cache, common.ROOT, budget)
            second = run_engine(command, data, work / f"run-{size}-{count}-{command}-2", cache, common.ROOT, budget)
            row = {"size": size, "cases": count, "command": command, "first_run": first, "second_run": second,
                   "cache_s_per_case": round(first["cache_s"] / count, 3) if first["cache_s"] else None,
                   "cache_mib": round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20, 1)}
            if baseline and count <= baseline_max:
                old = baseline_checkout(baseline, work)
                row["baseline"] = run_engine(command, data, work / f"run-{size}-{count}-{command}-old", None, old,
                                             budget)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def gpu_need(device: Any, presets: tuple[str, ...], crop: int) -> dict[str, Any]:
    """Crops/s one H200 would consume per preset and batch (an estimate, see ASSUMED_MFU and LAUNCH_FLOOR_S)."""
    from bench.pretrain_throughput import measure_emim, model_config

    out = {}
    for preset_name in presets:
        result = measure_emim(model_config(preset_name, crop), 2, device, steps=1, warmup=0)
        out[preset_name] = {"gflop_per_step_batch2": round(result["gflop_per_step"], 1)}
    return gpu_estimates(out)


def gpu_estimates(counted: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Step time and crops/s needed per preset and GPU batch from the counted GFLOP of a batch-2 step."""
    peak = common.GPU_PEAK_BF16["H200"]
    out = {}
    for preset_name, row in counted.items():
        for batch in GPU_BATCHES:
            flops = row["gflop_per_step_batch2"] * 1e9 * batch / 2
            step_s = max(flops / (ASSUMED_MFU * peak), LAUNCH_FLOOR_S)
            out[f"{preset_name} batch {batch}"] = {"gflop_per_step_batch2": row["gflop_per_step_batch2"],
                                                   "assumed_step_s": round(step_s, 4),
                                                   "crops_per_s_needed": round(batch / step_s)}
    return out


def loader_rows(device: Any, case: Path, cache: Path, crops: tuple[int, ...], workers: tuple[int, ...],
                batches: int) -> list[dict[str, Any]]:
    from bench.pretrain_throughput import measure_data

    rows = []
    for crop in crops:
        for with_label in (False, True):
            for count in workers:
                result = measure_data((crop,) * 3, 2, device, count, batches, case, cache, with_label)
                rows.append({"crop": crop, **result, "crops_per_s": round(result["crops_per_s"], 1)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(results: dict[str, Any]) -> str:
    lines = []
    rows = []
    for r in results["scaling"]:
        first, second = r["first_run"], r["second_run"]
        old = r.get("baseline", {})
        rows.append({"data": f"{r['cases']} {r['size']}", "command": r["command"],
                     "engine RSS GiB": first["rss"], "tree PSS GiB": first["tree_pss"],
                     "tree RSS GiB": first["tree_rss"], "first step s (cache built)": first["first_step_s"],
                     "cache s/case": r["cache_s_per_case"], "first step s (cache reused)": second["first_step_s"],
                     "cache MiB": r["cache_mib"],
                     "before: engine RSS GiB": old.get("rss"), "before: first step s": old.get("first_step_s")})
    lines.append(common.markdown_table(rows, list(rows[0])) if rows else "")
    if results.get("loader"):
        lines.append("")
        lines.append(common.markdown_table(results["loader"], ["crop", "with_label", "workers", "crops_per_s"]))
    if results.get("gpu_need"):
        lines.append("")
        lines.append(common.markdown_table([{"preset, GPU batch": k, **v} for k, v in results["gpu_need"].items()],
                                           ["preset, GPU batch", "gflop_per_step_batch2", "assumed_step_s",
                                            "crops_per_s_needed"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="10,100,300", help="numbers of small generated cases")
    parser.add_argument("--full", type=int, default=10, help="full-size generated cases for one point (0: none)")
    parser.add_argument("--commands", default="pretrain,finetune")
    parser.add_argument("--baseline", help="git revision to compare with (runs up to --baseline-max cases)")
    parser.add_argument("--baseline-max", type=int, default=100)
    parser.add_argument("--no-loader", action="store_true")
    parser.add_argument("--no-gpu-need", action="store_true")
    args = common.parse_args(parser, argv, "2 copies of a 64^3 case, `emim pretrain` for 1 step (cache built, then "
                                           "reused), 1 loader batch, the tiny preset's GFLOP at 64^3")
    import torch

    common.ensure_malloc_env()
    common.set_threads(1)
    info = common.header("cpu")
    cache = args.results / "cache"
    steps, loader, presets, crop = STEPS, LOADER, ("small", "base"), 96
    smoke = common.smoke_cases(cache / "smoke", 2) if args.smoke else []
    if smoke:
        steps, loader, presets, crop = 1, SMOKE_LOADER, ("tiny",), common.SMOKE_CROP
        args.cases, args.full, args.commands, args.baseline = "2", 0, "pretrain", None
    budget = ["--steps", str(steps), *(common.cli_options(common.SMOKE_PRETRAINING) if smoke else [])]
    counts = [int(c) for c in args.cases.split(",")]
    small = smoke[0].parent if smoke else generated("small", max(counts), cache)
    commands = args.commands.split(",")
    args.results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.results) as scratch:
        work = Path(scratch)
        rows = scaling_rows(counts, small, "small", commands, args.baseline, work, args.baseline_max, budget)
        if args.full:
            rows += scaling_rows([args.full], generated("full", args.full, cache), "full", commands, args.baseline,
                                 work, args.full, budget)
        if args.baseline:
            subprocess.run(["git", "worktree", "prune"], cwd=common.ROOT, check=False)
    results = {"steps": steps, "workers": 2, "scaling": rows, "assumed_mfu": ASSUMED_MFU,
               "loader": [] if args.no_loader else loader_rows(
                   torch.device("cpu"), smoke[0] if smoke else common.full_size_case(cache=cache), cache, **loader),
               "gpu_need": {} if args.no_gpu_need else gpu_need(torch.device("cpu"), presets, crop)}
    common.write_results("data_scaling_cpu", info, results, markdown(results), args.results)


if __name__ == "__main__":
    main()
