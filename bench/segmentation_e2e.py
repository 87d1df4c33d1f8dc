"""Segmentation end to end (read four NIfTI files, preprocess, infer, write the label map) on a full-size
240x240x155 case: `emim.inference.segment.segment_case` against the MONAI reference pipeline on the same network
and weights, for each preset (random-init weights exported as a model folder, as `emim export` lays one out).

Reference = LoadImaged + EnsureChannelFirstd + Orientationd(RAS) + NormalizeIntensityd(nonzero, channel-wise) ->
`sliding_window_inference` with the same window, overlap, Gaussian blending and sw_batch_size (bf16 autocast on
CUDA, as ours) -> sigmoid -> the same region painting -> back to the file's voxel order, written with nibabel.
Each preset runs in a fresh process (peak RSS starts from an empty heap); inside it both pipelines run in
interleaved rounds after a warm-up (files paged in, one window batch), up to --repeats rounds or until the time
budget is spent (a base-model round takes minutes on 2 CPU cores); the figure is the median of the rounds.

    python bench/segmentation_e2e.py --device cpu --presets tiny,small,base --repeats 3
    python bench/segmentation_e2e.py --smoke    # tiny, one round on a 64^3 case, the preset run in this process
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from emim.report import REPORT as REPORT_SUFFIX  # noqa: E402


def run_ours(model: Any, case: Path, out: Path, overlap: float, stages: dict[str, float] | None = None,
             windows: list[int] | None = None) -> Path:
    """`segment_case` as `emim segment` calls it; the seconds per stage come from the run report it writes (the
    engine's own record, so renaming an internal function cannot break the bench)."""
    from emim.data.case_inputs import one_case
    from emim.inference.segment import SegmentOptions, segment_case

    def on_windows(done: int, total: int) -> None:
        if windows is not None:
            windows[:] = [total]

    path = segment_case(model, one_case(case, model.spec), out / f"{case.name}.nii.gz", SegmentOptions(overlap=overlap),
                        on_windows=on_windows)["label"]
    if stages is not None:
        report = json.loads((out / f"{case.name}{REPORT_SUFFIX}").read_text())
        for stage, seconds in report["seconds"].items():
            stages[stage] += seconds
    return path


def window_gflop(model: Any) -> float:
    """Forward FLOPs of one window, counted on a meta-device copy of the network (no compute)."""
    import torch

    from emim.inference.segmentation_model import build_network

    meta = model.metadata
    with torch.device("meta"):
        network = build_network(meta["model_config"], meta.get("network") or {}, len(meta["regions"]))
        window = torch.empty(1, len(model.spec.names), *model.crop_size)
        with torch.no_grad():
            return common.count_flops(lambda: network(window)) / 1e9


class Reference:
    """The MONAI-transforms pipeline around the same network, as a MONAI user would write it."""

    def __init__(self, model: Any, overlap: float) -> None:
        from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, NormalizeIntensityd, Orientationd

        self.model, self.overlap = model, overlap
        self.read = Compose([LoadImaged(keys="image", image_only=False), EnsureChannelFirstd(keys="image")])
        self.orient = Orientationd(keys="image", axcodes="RAS")
        self.normalise = NormalizeIntensityd(keys="image", nonzero=True, channel_wise=True)

    def __call__(self, case: Path, out: Path, stages: dict[str, float] | None = None) -> Path:
        import nibabel as nib
        import numpy as np
        import torch
        from monai.inferers import sliding_window_inference

        from emim.labels import regions_to_labels
        from emim.device import autocast

        stages = stages if stages is not None else defaultdict(float)
        model, device = self.model, self.model.device
        files = [next(case.glob(f"*-{m}.nii.gz")) for m in model.spec.names]
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            stages[stage] += now - clock
            clock = now

        data = self.read({"image": [str(f) for f in files]})
        lap("read")
        data = self.orient(data)
        lap("orient")
        data = self.normalise(data)
        lap("normalise")
        image = torch.as_tensor(data["image"]).as_tensor()[None].to(device)
        roi = model.crop_size
        sw_batch = int(model.inference_default("sw_batch_size", 2))

        def predictor(windows: torch.Tensor) -> torch.Tensor:
            with autocast(device):
                return model.network(windows).float()

        with torch.inference_mode():
            logits = sliding_window_inference(image, roi, sw_batch, predictor, overlap=self.overlap,
                                              mode="gaussian")
            probabilities = torch.sigmoid(logits[0]).cpu().numpy()
        lap("infer")
        label = regions_to_labels(probabilities, model.regions)
        lap("labels")
        reference = nib.load(str(files[0]))
        back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")),
                                               nib.orientations.io_orientation(reference.affine))
        label = nib.orientations.apply_orientation(label, back).astype(np.uint8)
        header = reference.header.copy()
        header.set_data_dtype(np.uint8)
        path = out / f"{case.name}-reference.nii.gz"
        nib.save(nib.Nifti1Image(label, reference.affine, header), str(path))
        lap("write")
        return path


def agreement(a: Path, b: Path) -> float:
    """Fraction of voxels with the same label in two label maps on the same grid."""
    import nibabel as nib
    import numpy as np

    x, y = nib.load(str(a)), nib.load(str(b))
    assert x.shape == y.shape and np.allclose(x.affine, y.affine), "outputs are not on the same grid"
    return float((np.asarray(x.dataobj) == np.asarray(y.dataobj)).mean())


def warm_up(model: Any, case: Path) -> None:
    """Page the case's files into the OS cache and run one window batch (oneDNN/cuDNN plans, allocator)."""
    import torch

    from emim.data.cases import find_cases
    from emim.data.loading import load_case
    from emim.device import autocast

    load_case(find_cases(case, model.spec)[0], model.spec.names, model.normalization, with_label=False)
    batch = int(model.inference_default("sw_batch_size", 2))
    with torch.inference_mode(), autocast(model.device):
        model.network(torch.zeros(batch, len(model.spec.names), *model.crop_size, device=model.device))
    common.synchronize(model.device)


def measure(preset_name: str, cases: list[tuple[str, Path]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Both pipelines on each case, interleaved rounds until `repeats` or the time budget; peak RSS sampled
    in-process: the first run of a process (ours, first case) gives its own peak; later ones give max(earlier, own),
    an upper bound, because the heap never shrinks with the bench allocator settings."""
    import nibabel as nib
    import numpy as np
    import torch

    from emim.inference.prediction import count_windows

    from emim.inference.segmentation_model import load_segmentation_model

    cache = args.results / "cache"
    model_dir = common.make_model_folder(preset_name, cache / "models" / preset_name)
    started = time.perf_counter()
    model = load_segmentation_model(model_dir, args.device)
    load_model_s = time.perf_counter() - started
    overlap = float(model.inference_default("overlap", 0.5) if args.overlap is None else args.overlap)
    reference = Reference(model, overlap)
    out = cache / "out" / preset_name
    out.mkdir(parents=True, exist_ok=True)
    params = sum(p.numel() for p in model.network.parameters())
    gflop = window_gflop(model)
    rows = []
    for case_name, case in cases:
        warm_up(model, case)
        ours_windows: list[int] = []
        pipelines = {"ours": lambda s: run_ours(model, case, out, overlap, s, ours_windows),
                     "reference": lambda s: reference(case, out, s)}
        times: dict[str, list[float]] = {k: [] for k in pipelines}
        cpu: dict[str, list[float]] = {k: [] for k in pipelines}  # process CPU seconds: robust to other load
        stages: dict[str, dict[str, float]] = {k: defaultdict(float) for k in pipelines}
        rss: dict[str, float] = {}
        cuda_peak: dict[str, float | None] = {}
        loads = []
        case_start = time.perf_counter()
        while len(times["ours"]) < args.repeats and (not times["ours"] or
                                                      time.perf_counter() - case_start < args.budget_s):
            for name, fn in pipelines.items():  # interleaved: load changes on a shared machine hit both alike
                common.reset_cuda_peak(model.device)
                with common.RSSSampler() as sampler:
                    common.synchronize(model.device)
                    start, cpu_start = time.perf_counter(), time.process_time()
                    fn(stages[name])
                    common.synchronize(model.device)
                    times[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - cpu_start)
                rss[name] = max(rss.get(name, 0.0), sampler.peak_gib)
                cuda_peak[name] = common.cuda_peak_gib(model.device)
                loads.append(common.load_average()[0])
        same = agreement(out / f"{case.name}.nii.gz", out / f"{case.name}-reference.nii.gz")
        shape = nib.load(str(next(case.glob("*-t1n.nii.gz")))).shape
        windows = {"ours": ours_windows[0], "reference": count_windows(shape, model.crop_size, overlap)}
        for name in pipelines:
            total = sum(stages[name].values())
            tflop = windows[name] * gflop / 1e3
            rows.append({"preset": preset_name, "params_m": round(params / 1e6, 2), "case": case_name,
                         "shape": "x".join(map(str, shape)), "pipeline": name,
                         "median_s": float(np.median(times[name])), "min_s": min(times[name]),
                         "times_s": [round(t, 3) for t in times[name]],
                         "cpu_median_s": float(np.median(cpu[name])), "threads": torch.get_num_threads(),
                         "shares": {k: round(v / total, 3) for k, v in stages[name].items()},
                         "peak_rss_gib": round(rss[name], 3), "rss_exact": not rows and name == "ours",
                         "cuda_peak_gib": cuda_peak[name],
                         "load_model_s": round(load_model_s, 3), "label_agreement": round(same, 5),
                         "load_average_during": [min(loads), max(loads)],
                         "roi": list(model.crop_size), "overlap": overlap,
                         "windows": windows[name], "gflop_per_window": round(gflop, 2),
                         "tflop_per_case": round(tflop, 3),
                         "achieved_gflops_per_cpu_s": round(tflop * 1e3 / float(np.median(cpu[name])), 1)})
        rows[-2]["ratio"] = rows[-2]["median_s"] / rows[-1]["median_s"]
        print(json.dumps(rows[-2:]), flush=True)
    return rows


def run_preset_process(preset_name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One fresh process per preset, so each preset's peak RSS starts from an empty heap (a smoke run stays in this
    process: a new one spends seconds importing torch)."""
    rows_file = args.results / "cache" / f"rows-{preset_name}-{args.device.replace(':', '')}.json"
    command = ["--child", rows_file.name, "--presets", preset_name, "--device", args.device, "--repeats",
               str(args.repeats), "--budget-s", str(args.budget_s), "--results", str(args.results)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.overlap is not None:
        command += ["--overlap", str(args.overlap)]
    if args.no_real:
        command.append("--no-real")
    if args.smoke:
        main([*command, "--smoke"])
    else:
        subprocess.run([sys.executable, __file__, *command], check=True)
    return json.loads(rows_file.read_text())


def markdown(rows: list[dict[str, Any]]) -> str:
    table = []
    for row in rows:
        shares = ", ".join(f"{k} {100 * v:.0f}%" for k, v in row["shares"].items())
        table.append({"preset": row["preset"], "case": row["case"], "pipeline": row["pipeline"],
                      "windows": row.get("windows"), "TFLOP": row.get("tflop_per_case"),
                      "median s": row["median_s"], "runs s": " ".join(f"{t:.2f}" for t in row["times_s"]),
                      "CPU-s/threads": row["cpu_median_s"] / row["threads"] if "cpu_median_s" in row else None,
                      "ours/ref": row.get("ratio"),
                      "peak RSS GiB": f"{'' if row.get('rss_exact') else '<= '}{row['peak_rss_gib']:.2f}",
                      "GPU peak GiB": row.get("cuda_peak_gib"), "stage shares": shares,
                      "load avg": "-".join(f"{v:.1f}" for v in row["load_average_during"])})
    return common.markdown_table(table, list(table[0]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", default="tiny,small,base")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds at most (default 3)")
    parser.add_argument("--budget-s", type=float, default=120.0,
                        help="start no new round after this many seconds per case and preset (at least one round)")
    parser.add_argument("--no-real", action="store_true", help="skip the real BraTS mini case")
    parser.add_argument("--name", default=None, help="results file stem (default segmentation_e2e_<device>)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--overlap", type=float, default=None,
                        help="sliding-window overlap for both pipelines (default: the model's, 0.5)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = common.parse_args(parser, argv, "the tiny preset, one round on a 64^3 case")
    common.ensure_malloc_env()
    import torch

    common.set_threads(args.threads)

    cache = args.results / "cache"
    if args.smoke:
        args.presets, args.repeats = "tiny", 1
        cases = [("sample 64^3", common.smoke_cases(cache / "smoke")[0])]
    else:
        cases = [("sample full", common.full_size_case(cache=cache))]
        real = common.real_mini_case()
        if real is not None and not args.no_real:
            cases.append(("real BraTS mini", real))
    if args.child:
        rows = measure(args.presets, cases, args)
        (cache / args.child).write_text(json.dumps(rows))
        return
    device = torch.device(args.device)
    info = common.header(device)
    common.print_header(info)
    rows = []
    for name in args.presets.split(","):
        rows += run_preset_process(name, args)
    stem = args.name or f"segmentation_e2e_{device.type}"
    common.write_results(stem, info, {"rows": rows}, markdown(rows), args.results)


if __name__ == "__main__":
    main()
