"""Shared by the bench/ scripts: the run header (machine, versions, date, load), timing, memory and FLOP counting,
the full-size sample case and random-init model folders, and writing results as JSON + Markdown.

Timing rules (see ../shared/research/data-and-perf.md, part B6): glibc's allocator on this VM mmaps and frees every
large activation and page-faults fresh pages each time, which made CPU timings 1.5-2x slower and noisy, so every
bench process runs with MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ set (`ensure_malloc_env` re-executes the
script with them when they are missing); figures are medians of several runs after a warm-up.

Every script takes `--smoke` (its smallest budget through every stage, on `smoke_cases`: seconds, so that the test
suite runs each one and a bench cannot rot unseen) and `--results DIR` (where its results, caches and work files go;
a smoke run without it writes into a new temporary folder, never into bench/results or the repository).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
CACHE = RESULTS / "cache"
MINI_DATA = ROOT.parent / "shared" / "data" / "brats-gli-mini"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "17179869184", "MALLOC_TRIM_THRESHOLD_": "17179869184"}

# Peak dense throughput used for model FLOP utilisation. CPU: measured 4096^2 sgemm on the 2-core build machine
# (fp32; its bf16 is ~5x slower, so CPU runs stay fp32), per core in use. GPUs: datasheet dense bf16 (SXM parts).
CPU_PEAK_FLOPS = 258e9
CPU_CORES_MEASURED = 2
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
H100_PCIE_PEAK_BF16 = 756e12

SMOKE_CROP = 64  # a smoke case is one window of the tiny preset
SMOKE_PRETRAINING = {"batch_size": 1, "heldout_crops": 1}  # one crop per step, one for the collapse diagnostics
SMOKE_FINETUNING = {"batch_size": 1}


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, smoke: str) -> argparse.Namespace:
    """Add --smoke (`smoke` says what it runs) and --results to a script's parser and parse `argv`; `results` is
    always a folder afterwards: the one given, bench/results, or for a smoke run a new temporary folder."""
    parser.add_argument("--smoke", action="store_true",
                        help=f"smallest budget through every stage, for the test suite: {smoke}")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for results, caches and work files (default: bench/results; with --smoke a new "
                             "temporary folder)")
    args = parser.parse_args(argv)
    if args.results is None and args.smoke:  # named by the process id, which `ensure_malloc_env`'s re-run keeps
        args.results = Path(tempfile.gettempdir()) / f"emim-bench-smoke-{os.getpid()}"
        args.results.mkdir(exist_ok=True)
        print(f"smoke run: results in {args.results}", flush=True)
    args.results = args.results or RESULTS
    return args


def cli_options(settings: dict[str, Any]) -> list[str]:
    """{"batch_size": 1} -> ["--batch-size", "1"]: run settings (SMOKE_PRETRAINING, ...) as `emim` options."""
    return [text for key, value in settings.items() for text in (f"--{key.replace('_', '-')}", str(value))]


def smoke_cases(folder: Path, count: int = 1) -> list[Path]:
    """`count` labelled cases SMOKE-0001, ... in `folder`: the shipped sample case cut to one tiny-preset window
    around its tumour, so that training, sliding-window inference and scoring each take about a second."""
    import nibabel as nib
    import numpy as np

    from EMIMCommonLib.sample_data import sample_case_folder

    source = sample_case_folder()
    label = nib.load(str(source / f"{source.name}-seg.nii.gz"))
    centre = np.argwhere(np.asarray(label.dataobj) > 0).mean(axis=0).round().astype(int)
    box = tuple(slice(start, start + SMOKE_CROP) for start in
                (int(np.clip(c - SMOKE_CROP // 2, 0, n - SMOKE_CROP)) for c, n in zip(centre, label.shape)))
    cases = []
    for index in range(1, count + 1):
        case = folder / f"SMOKE-{index:04d}"
        case.mkdir(parents=True, exist_ok=True)
        for file in source.glob("*.nii.gz"):
            nib.save(nib.load(str(file)).slicer[box], str(case / file.name.replace(source.name, case.name)))
        cases.append(case)
    return cases


def ensure_malloc_env() -> None:
    """Re-run this script with the allocator settings when they are missing (glibc reads them at start-up)."""
    if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    env = {**os.environ, **MALLOC_ENV}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (None keeps torch's default). On a shared 2-core machine 1 thread can be far
    faster: with 2 OpenMP threads, every op waits at a barrier for whichever thread the OS has preempted."""
    import torch

    if threads:
        torch.set_num_threads(threads)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def thread_info() -> dict[str, int]:
    """Thread counts from torch.__config__.parallel_info() (what the numbers ran with)."""
    import torch

    info = {}
    for line in torch.__config__.parallel_info().splitlines():
        match = re.match(r"\s*(at::get_num_threads|at::get_num_interop_threads|OMP_NUM_THREADS|MKL_NUM_THREADS)"
                         r"\(?\)?\s*:\s*(.+?)\s*$", line)
        if match:
            info[match.group(1)] = int(match.group(2)) if match.group(2).isdigit() else match.group(2)
    return info


def gpu_name(index: int = 0) -> str | None:
    import torch

    return torch.cuda.get_device_name(index) if torch.cuda.is_available() else None


def peak_flops(device: Any) -> tuple[float | None, str]:
    """(peak FLOP/s, what it is) of a device, for model FLOP utilisation."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        threads = min(torch.get_num_threads(), CPU_CORES_MEASURED)
        return CPU_PEAK_FLOPS * threads / CPU_CORES_MEASURED, \
            f"fp32, measured 4096^2 sgemm on the 2-core build machine, {threads} of its 2 cores"
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return H100_PCIE_PEAK_BF16, f"bf16 dense datasheet ({name})"
    for key, value in GPU_PEAK_BF16.items():
        if key in name:
            return value, f"bf16 dense datasheet ({name})"
    return None, f"unknown peak for {name}"


def header(device: Any = "cpu") -> dict[str, Any]:
    """Everything a reader needs to judge a figure: machine, device, versions, threads, allocator, load, date."""
    import monai
    import nibabel
    import numpy
    import psutil
    import torch

    import emim

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(),
                    "ram_gib": round(psutil.virtual_memory().total / 2**30, 1), "platform": platform.platform()},
        "device": str(device), "gpu": gpu_name() if torch.device(device).type == "cuda" else None,
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__,
                     "numpy": numpy.__version__, "nibabel": nibabel.__version__, "emim": emim.__version__,
                     "cuda": torch.version.cuda, "git": _git_commit()},
        "threads": thread_info(),
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
        "load_average_start": load_average(),
    }


def print_header(info: dict[str, Any]) -> None:
    print(f"# {info['date']} | {info['machine']['cpu']} x{info['machine']['logical_cpus']} | device {info['device']}"
          f"{' (' + info['gpu'] + ')' if info['gpu'] else ''} | torch {info['versions']['torch']} monai "
          f"{info['versions']['monai']} | threads {info['threads']} | {info['malloc_env']} | load "
          f"{info['load_average_start']}", flush=True)


def synchronize(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class RSSSampler:
    """Peak RSS inside a `with` block, sampled every 5 ms by a thread (ru_maxrss only ever grows per process)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        import psutil

        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "RSSSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return self.peak / 2**30


def cuda_peak_gib(device: Any) -> float | None:
    import torch

    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def reset_cuda_peak(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of `fn` as torch.utils.flop_counter counts them: 2 per multiply-add, matmuls/convs/attention only,
    forward and backward if `fn` runs a backward."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def full_size_case(seed: int = 7, cache: Path = CACHE) -> Path:
    """A 240x240x155 BraTS-layout case from `emim make-sample --size full` (cached; deterministic bytes)."""
    from emim.sample import make_sample_cases

    folder = cache / f"full-seed{seed}"
    cases = sorted(p for p in folder.glob("BraTS-SYN-*") if p.is_dir()) if folder.is_dir() else []
    if cases and len(list(cases[0].glob("*.nii.gz"))) >= 4:
        return cases[0]
    return make_sample_cases(folder, 1, seed, size="full")[0]


def real_mini_case() -> Path | None:
    """The largest real BraTS mini case (240x240x98), when the shared data is on this machine."""
    case = MINI_DATA / "BraTS-GLI-00360-000"
    return case if case.is_dir() else None


def make_model_folder(preset_name: str, folder: Path, seed: int = 0) -> Path:
    """A segmentation model folder with random-init weights of a preset, laid out exactly as `emim export`
    writes one (same metadata keys, same inference defaults), so inference runs on it unchanged."""
    import torch

    from emim.config import PRESETS, preset
    from emim.data.modalities import BRATS
    from emim.export import INFERENCE_DEFAULTS
    from emim.model.unetr import EMIMUNETR
    from emim.labels import BRATS_LABELS, BRATS_REGIONS
    from emim.modelfile import METADATA_FILE, save_model

    if (folder / METADATA_FILE).is_file():
        return folder
    torch.manual_seed(seed)
    config = preset(preset_name, modalities=BRATS.names)
    feature_size = PRESETS[preset_name].feature_size
    network = EMIMUNETR(config, len(BRATS_REGIONS), feature_size)
    metadata = {
        "task": "segmentation", "name": f"bench {preset_name} (random init)",
        "description": "random-init weights for speed benchmarks only",
        "modalities": BRATS.to_metadata(), "model_config": config.to_dict(),
        "network": {"architecture": "UNETR", "feature_size": feature_size, "out_channels": len(BRATS_REGIONS),
                    "activation": "sigmoid"},
        "preprocessing": {"normalization": "zscore-nonzero", "orientation": "RAS", "spacing": None},
        "inference": dict(INFERENCE_DEFAULTS), "labels": BRATS_LABELS, "regions": BRATS_REGIONS,
        "provenance": {"bench": True, "seed": seed},
    }
    return save_model(folder, network.state_dict(), metadata)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def header_markdown(info: dict[str, Any]) -> str:
    gpu = f", {info['gpu']} x{info['gpu_count']}" if info.get("gpu") else ""
    return (f"{info['date']}; {info['machine']['cpu']} ({info['machine']['logical_cpus']} logical CPUs, "
            f"{info['machine']['ram_gib']} GiB){gpu}; device {info['device']}; torch {info['versions']['torch']}, "
            f"MONAI {info['versions']['monai']}, emim {info['versions']['emim']} ({info['versions']['git']}); "
            f"threads {info['threads']}; load average {info['load_average_start']} -> "
            f"{info.get('load_average_end')}")


def write_results(name: str, info: dict[str, Any], data: dict[str, Any], markdown: str, folder: Path) -> Path:
    """<folder>/<name>.json (header + data) and <name>.md (folder: a script's --results); prints the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    info = {**info, "load_average_end": load_average()}
    (folder / f"{name}.json").write_text(json.dumps({"header": info, **data}, indent=2, default=str) + "\n")
    text = f"### {name}\n\n{header_markdown(info)}\n\n{markdown}\n"
    (folder / f"{name}.md").write_text(text)
    print(text, flush=True)
    return folder / f"{name}.json"
