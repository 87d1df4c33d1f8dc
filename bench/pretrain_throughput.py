"""Pretraining throughput: crops per second and model FLOP utilisation of an E-MIM training step (hybrid masks +
pyramid Barlow Twins, both views in one pass, AdamW, gradient clipping; bf16 autocast on CUDA) against a MONAI
ViTAutoEnc reconstruction baseline of the same width and depth at the same crop size (two masked views per crop,
L1 reconstruction + MONAI ContrastiveLoss, the loss of MONAI's self-supervised ViT tutorial), in the same process;
and whether the input pipeline keeps up (the crop stream `emim.train.batches.crop_batches` timed on its own).

FLOPs are counted with torch.utils.flop_counter (2 per multiply-add, forward + backward) on the same masks as the
timed steps; utilisation = counted FLOPs / time / device peak (common.peak_flops). The model step is timed on
batches already on the device, so the figure is what the model can do; the data line says whether the loader
can feed it (the training loop's `data_wait_s` is the same quantity inside a real run).

    python bench/pretrain_throughput.py --device cuda --preset base --crop 96 --batch 8
    python bench/pretrain_throughput.py --device cpu --preset tiny --batch 2
    torchrun --nproc_per_node=N bench/pretrain_throughput.py --device cuda --preset base --batch 8 --no-baseline
    python bench/pretrain_throughput.py --smoke    # tiny, batch 1, one step of each model, one loader batch
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402


def model_config(preset_name: str, crop: int | None) -> Any:
    from emim.config import preset

    overrides = {"crop_size": (crop, crop, crop)} if crop else {}
    return preset(preset_name, **overrides)


def _timed_steps(step: Any, inputs: list[Any], warmup: int, device: Any) -> list[float]:
    for item in inputs[:warmup]:
        step(item)
    common.synchronize(device)
    times = []
    for item in inputs[warmup:]:
        start = time.perf_counter()
        step(item)
        common.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _result(name: str, batch: int, times: list[float], flops: float, device: Any, params: int) -> dict[str, Any]:
    peak, peak_what = common.peak_flops(device)
    median = statistics.median(times)
    return {"model": name, "batch": batch, "params_m": round(params / 1e6, 2), "step_median_s": median,
            "step_times_s": [round(t, 4) for t in times], "crops_per_s": batch / median,
            "gflop_per_step": flops / 1e9, "achieved_tflops": flops / median / 1e12,
            "mfu": flops / median / peak if peak else None, "peak": peak, "peak_is": peak_what,
            "cuda_peak_gib": common.cuda_peak_gib(device)}


def measure_emim(config: Any, batch: int, device: Any, steps: int, warmup: int, ddp: Any = None,
                 seed: int = 0) -> dict[str, Any]:
    """Median step time of E-MIM pretraining (what PretrainTask.loss + the training loop do per step)."""
    import torch

    from emim.pretrain.masks import MaskConfig, sample_batch
    from emim.pretrain.model import EMIMPretrainer
    from emim.device import autocast
    from emim.train.optim import build_optimizer

    torch.manual_seed(seed)
    model = EMIMPretrainer(config, pbt_levels=4, pbt_weight=0.1).to(device)
    wrapped = model if ddp is None else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=True)
    optimizer = build_optimizer(model, 1.5e-4, 0.05)
    m = config.num_modalities
    positions = (config.crop_size[0] * config.crop_size[1] * config.crop_size[2]) // config.patch_size**3
    generator = torch.Generator().manual_seed(seed)
    mask = MaskConfig()
    x = torch.randn(batch, m, *config.crop_size, device=device)
    inputs = [(sample_batch(batch, m, positions, mask, generator)[0].to(device),
               sample_batch(batch, m, positions, mask, generator)[0].to(device)) for _ in range(warmup + steps)]

    def forward_backward(masks: tuple[Any, Any]) -> None:
        with autocast(device):
            loss, _ = wrapped(x, *masks)
        loss.backward()

    def step(masks: tuple[Any, Any]) -> None:
        forward_backward(masks)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    common.reset_cuda_peak(device)
    times = _timed_steps(step, inputs, warmup, device)
    counted = inputs[warmup:warmup + min(steps, 3)]
    flops = statistics.mean(common.count_flops(lambda item=item: forward_backward(item)) for item in counted)
    optimizer.zero_grad(set_to_none=True)
    params = sum(p.numel() for p in model.parameters())
    return _result("E-MIM (hybrid mask + PBT x4)", batch, times, flops, device, params)


def measure_vitautoenc(config: Any, batch: int, device: Any, steps: int, warmup: int, seed: int = 0) -> dict:
    """The MONAI baseline: ViTAutoEnc of the same width/depth/heads, two corrupted views per crop, every token
    encoded (no token dropping), L1 reconstruction of the crop + contrastive loss between the two outputs."""
    import torch
    from monai.losses import ContrastiveLoss
    from monai.networks.nets import ViTAutoEnc

    from emim.pretrain.masks import MaskConfig, sample_batch
    from emim.device import autocast
    from emim.train.optim import build_optimizer

    torch.manual_seed(seed)
    m, p = config.num_modalities, config.patch_size
    model = ViTAutoEnc(in_channels=m, out_channels=m, img_size=config.crop_size, patch_size=p,
                       hidden_size=config.embed_dim, mlp_dim=int(config.embed_dim * config.mlp_ratio),
                       num_layers=config.depth, num_heads=config.num_heads).to(device)
    optimizer = build_optimizer(model, 1.5e-4, 0.05)
    contrastive = ContrastiveLoss(temperature=0.05)
    grid = config.grid
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, m, *config.crop_size, device=device)

    def view() -> Any:  # patch dropout as the corruption, upsampled from the token grid on the device
        hidden = sample_batch(batch, m, grid[0] * grid[1] * grid[2], MaskConfig("patch"), generator)[0]
        keep = (~hidden).float().reshape(batch, m, *grid).to(device)
        return x * keep.repeat_interleave(p, 2).repeat_interleave(p, 3).repeat_interleave(p, 4)

    inputs = [(view(), view()) for _ in range(warmup + steps)]

    def forward_backward(views: tuple[Any, Any]) -> None:
        with autocast(device):
            out1, _ = model(views[0])
            out2, _ = model(views[1])
            reconstruction = torch.nn.functional.l1_loss(out1.float(), x)
            loss = reconstruction + reconstruction * contrastive(out1.flatten(1).float(), out2.flatten(1).float())
        loss.backward()

    def step(views: tuple[Any, Any]) -> None:
        forward_backward(views)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    common.reset_cuda_peak(device)
    times = _timed_steps(step, inputs, warmup, device)
    flops = common.count_flops(lambda: forward_backward(inputs[warmup]))
    optimizer.zero_grad(set_to_none=True)
    params = sum(q.numel() for q in model.parameters())
    return _result("MONAI ViTAutoEnc (L1 + contrastive)", batch, times, flops, device, params)


def measure_data(crop: tuple[int, int, int], batch: int, device: Any, workers: int, batches: int, case: Path,
                 cache: Path, with_label: bool = False) -> dict[str, Any]:
    """Crops per second the real crop stream delivers from a case's preprocessing-cache entry (in `cache`; the
    figures use the full-size case).

    Unlabelled crops are what pretraining draws (uniform in the brain box); labelled crops are what fine-tuning
    draws (centred on tumour or brain voxels), so both training loops' input side is measured.
    """
    from emim.data.cache import CacheSettings, cached_cases
    from emim.data.cases import find_cases
    from emim.data.modalities import BRATS
    from emim.train.batches import crop_batches

    settings = CacheSettings(BRATS.names, "zscore-nonzero", False, with_label)
    entries = cached_cases(find_cases(case, BRATS), settings, cache / "preprocessed")
    stream = crop_batches(entries, crop, batch, with_label=with_label, seed=0, device=device, workers=workers)
    for _ in range(1 + 2 * workers):  # start the workers and drain what they prefetched (2 batches each)
        next(stream)
    common.synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    common.synchronize(device)
    seconds = time.perf_counter() - start
    return {"workers": workers, "batch": batch, "crops_per_s": batches * batch / seconds, "with_label": with_label}


def keeps_up(train: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """With the loader in the training process (workers=0) each step also waits for its batch; with workers the
    two overlap and the slower one sets the pace."""
    step, fetch = 1 / train["crops_per_s"], 1 / data["crops_per_s"]
    overlapped = data["workers"] > 0
    loop = 1 / max(step, fetch) if overlapped else 1 / (step + fetch)
    return {"workers": data["workers"], "with_label": data["with_label"], "data_crops_per_s": data["crops_per_s"],
            "loop_crops_per_s": loop,
            "data_wait_share": max(0.0, 1 - step / max(step, fetch)) if overlapped else fetch / (step + fetch),
            "keeps_up": data["crops_per_s"] >= train["crops_per_s"]}


def markdown(results: dict[str, Any]) -> str:
    rows = [{"model": r["model"], "preset/crop": f"{results['preset']} {results['crop']}^3", "batch": r["batch"],
             "params M": r["params_m"], "step s": r["step_median_s"], "crops/s": r["crops_per_s"],
             "GFLOP/step": r["gflop_per_step"], "TFLOP/s": r["achieved_tflops"],
             "MFU": f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else None,
             "GPU peak GiB": r["cuda_peak_gib"]} for r in results["models"]]
    text = common.markdown_table(rows, list(rows[0]))
    if results.get("speedup_vs_baseline"):
        text += f"\n\nE-MIM crops/s / ViTAutoEnc crops/s = {results['speedup_vs_baseline']:.2f}"
    if results.get("data"):
        data = [{"workers": d["workers"],
                 "crops": "labelled (fine-tuning)" if d["with_label"] else "unlabelled (pretraining)",
                 "loader crops/s": d["data_crops_per_s"],
                 "loop crops/s (model+loader)": d["loop_crops_per_s"],
                 "time waiting for data": f"{100 * d['data_wait_share']:.0f}%", "keeps up": d["keeps_up"]}
                for d in results["data"]]
        text += "\n\nInput pipeline (crop stream from a full-size case, timed alone):\n\n" + \
            common.markdown_table(data, list(data[0]))
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default=None, help="default: base on CUDA, tiny on CPU")
    parser.add_argument("--crop", type=int, default=None, help="cubic crop size (default: the preset's)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--workers", default="0", help="loader workers to time, comma-separated (e.g. 0,4)")
    parser.add_argument("--data-batches", type=int, default=10, help="loader batches to time")
    parser.add_argument("--data-batch", type=int, default=None, help="loader batch size (default: --batch)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--name", default=None)
    args = common.parse_args(parser, argv, "tiny, batch 1, one step of each model, one loader batch, a 64^3 case")
    common.ensure_malloc_env()
    cache = args.results / "cache"
    if args.smoke:
        args.preset, args.crop, args.batch, args.steps, args.warmup = "tiny", None, 1, 1, 0
        args.workers, args.data_batches, args.data_batch = "0", 1, None
    import torch

    common.set_threads(args.threads)

    from emim.train import distributed

    dist = distributed.setup(args.device)
    device = distributed.device_for(dist, torch.device(args.device))
    name = args.preset or ("base" if device.type == "cuda" else "tiny")
    config = model_config(name, args.crop)
    info = common.header(device)
    if dist.is_main:
        common.print_header(info)
    emim = measure_emim(config, args.batch, device, args.steps, args.warmup, ddp=dist if dist.enabled else None)
    results: dict[str, Any] = {"preset": name, "crop": config.crop_size[0], "world_size": dist.world_size,
                               "models": [emim]}
    if dist.enabled:
        emim["crops_per_s_all_ranks"] = emim["crops_per_s"] * dist.world_size
        distributed.cleanup(dist)
        if dist.is_main:
            print(json.dumps({"world_size": dist.world_size, **emim}))
            stem = args.name or f"pretrain_ddp{dist.world_size}_{device.type}"
            common.write_results(stem, info, results, markdown(results), args.results)
        return
    print(json.dumps(emim), flush=True)
    if not args.no_baseline:
        baseline = measure_vitautoenc(config, args.batch, device, args.steps, args.warmup)
        print(json.dumps(baseline), flush=True)
        results["models"].append(baseline)
        results["speedup_vs_baseline"] = emim["crops_per_s"] / baseline["crops_per_s"]
    data_batch = args.data_batch or args.batch
    case = common.smoke_cases(cache / "smoke")[0] if args.smoke else common.full_size_case(cache=cache)
    results["data"] = [keeps_up(emim, measure_data(config.crop_size, data_batch, device, int(w), args.data_batches,
                                                   case, cache, with_label))
                       for w in args.workers.split(",") for with_label in (False, True)]
    results["load_average_end"] = common.load_average()
    stem = args.name or f"pretrain_throughput_{device.type}_{name}{config.crop_size[0]}"
    common.write_results(stem, info, results, markdown(results), args.results)


if __name__ == "__main__":
    main()
