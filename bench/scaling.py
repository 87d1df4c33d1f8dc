"""Scaling: segmentation inference time and memory versus volume size, pretraining throughput versus batch size,
and versus GPU count (torchrun, one process per GPU) where more than one GPU is visible.

Segmentation runs `emim.inference.prediction.predict_probabilities` (sliding window, Gaussian blending, the model's
default overlap and sw_batch_size) on random non-zero volumes, so every window of the volume is computed (no
brain bounding box), and the window count grows with the volume as in the worst case. Sizes run smallest first in
one process: with the bench allocator settings RSS never shrinks, so each size's peak is max(its own, smaller ones).

    python bench/scaling.py --device cpu --preset tiny --sizes 96,128,192x192x144 --batches 1,2,4
    python bench/scaling.py --device cuda --preset base --sizes 96,128,192,240x240x155 --batches 2,4,8,16
    python bench/scaling.py --smoke    # tiny: one 64^3 volume, one pretraining step at batch 1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.pretrain_throughput import measure_emim, model_config  # noqa: E402


def parse_size(text: str) -> tuple[int, int, int]:
    parts = [int(v) for v in text.lower().split("x")]
    return tuple(parts * 3 if len(parts) == 1 else parts)  # type: ignore[return-value]


def segmentation_vs_size(preset_name: str, sizes: list[tuple[int, int, int]], device: Any, cache: Path) -> list[dict]:
    import numpy as np
    import torch

    from emim.inference.prediction import count_windows, predict_probabilities

    from emim.inference.segmentation_model import load_segmentation_model

    model = load_segmentation_model(common.make_model_folder(preset_name, cache / "models" / preset_name), str(device))
    roi, overlap = model.crop_size, float(model.inference_default("overlap", 0.5))
    batch = int(model.inference_default("sw_batch_size", 2))
    generator = np.random.default_rng(0)
    predict_probabilities(model.network, generator.standard_normal((4, *roi), dtype=np.float32), roi, overlap,
                          batch, device)  # warm-up
    rows = []
    for size in sizes:
        image = generator.standard_normal((4, *size), dtype=np.float32)
        common.reset_cuda_peak(device)
        with common.RSSSampler() as sampler:
            start = time.perf_counter()
            predict_probabilities(model.network, image, roi, overlap, batch, device)
            common.synchronize(device)
            seconds = time.perf_counter() - start
        windows = count_windows(size, roi, overlap)
        rows.append({"preset": preset_name, "size": "x".join(map(str, size)), "megavoxels": float(np.prod(size)) / 1e6,
                     "windows": windows, "seconds": seconds, "s_per_window": seconds / windows,
                     "peak_rss_gib": sampler.peak_gib, "cuda_peak_gib": common.cuda_peak_gib(device),
                     "load": common.load_average()[0]})
        print(rows[-1], flush=True)
        del image
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows


def pretraining_vs_batch(preset_name: str, crop: int | None, batches: list[int], device: Any, steps: int,
                         warmup: int) -> list[dict]:
    import torch

    config = model_config(preset_name, crop)
    rows = []
    for batch in batches:
        try:
            result = measure_emim(config, batch, device, steps, warmup)
        except torch.OutOfMemoryError:
            rows.append({"batch": batch, "crops_per_s": None, "note": "out of memory"})
            break
        rows.append({"batch": batch, "crop": config.crop_size[0], "step_s": result["step_median_s"],
                     "crops_per_s": result["crops_per_s"], "mfu": result["mfu"],
                     "cuda_peak_gib": result["cuda_peak_gib"], "load": common.load_average()[0]})
        print(rows[-1], flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def pretraining_vs_gpus(preset_name: str, crop: int | None, batch: int, steps: int, results: Path) -> list[dict]:
    """torchrun with 1..N processes (one per GPU); per-GPU batch fixed, so ideal scaling is linear."""
    import json

    import torch

    count = torch.cuda.device_count()
    rows = []
    for gpus in range(2, count + 1):
        stem = f"pretrain_ddp{gpus}_cuda"
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}",
                   str(Path(__file__).with_name("pretrain_throughput.py")), "--device", "cuda", "--preset",
                   preset_name, "--batch", str(batch), "--steps", str(steps), "--no-baseline", "--name", stem,
                   "--results", str(results)]
        if crop:
            command += ["--crop", str(crop)]
        subprocess.run(command, check=True)
        result = json.loads((results / f"{stem}.json").read_text())["models"][0]
        rows.append({"gpus": gpus, "batch_per_gpu": batch, "crops_per_s": result["crops_per_s_all_ranks"],
                     "step_s": result["step_median_s"]})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default=None, help="default: base on CUDA, tiny on CPU")
    parser.add_argument("--sizes", default="96,128,192x192x144,240x240x155")
    parser.add_argument("--crop", type=int, default=None, help="pretraining crop (default: the preset's)")
    parser.add_argument("--batches", default="1,2,4")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: size,batch,gpus")
    args = common.parse_args(parser, argv, "tiny: one 64^3 volume, one pretraining step at batch 1")
    common.ensure_malloc_env()
    if args.smoke:
        args.preset, args.sizes, args.crop, args.batches, args.steps, args.warmup = "tiny", "64", None, "1", 1, 0
    import torch

    common.set_threads(args.threads)

    device = torch.device(args.device)
    name = args.preset or ("base" if device.type == "cuda" else "tiny")
    skip = set(filter(None, args.skip.split(",")))
    info = common.header(device)
    common.print_header(info)
    data: dict[str, Any] = {"preset": name}
    text = []
    if "size" not in skip:
        data["segmentation_vs_size"] = segmentation_vs_size(name, [parse_size(s) for s in args.sizes.split(",")],
                                                            device, args.results / "cache")
        text += [f"Segmentation inference ({name}) vs volume size:",
                 common.markdown_table(data["segmentation_vs_size"], list(data["segmentation_vs_size"][0]))]
    if "batch" not in skip:
        rows = pretraining_vs_batch(name, args.crop, [int(b) for b in args.batches.split(",")], device, args.steps,
                                    args.warmup)
        data["pretraining_vs_batch"] = rows
        text += [f"Pretraining ({name}) vs batch size:", common.markdown_table(rows, list(rows[0]))]
    if "gpus" not in skip and device.type == "cuda" and torch.cuda.device_count() > 1:
        rows = pretraining_vs_gpus(name, args.crop, int(args.batches.split(",")[-1]), args.steps, args.results)
        data["pretraining_vs_gpus"] = rows
        text += ["Pretraining vs GPU count (torchrun, DDP):", common.markdown_table(rows, list(rows[0]))]
    common.write_results(f"scaling_{device.type}_{name}", info, data, "\n\n".join(text), args.results)


if __name__ == "__main__":
    main()
