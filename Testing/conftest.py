"""Shared fixtures: the real BraTS mini cases (skipped when absent) and CPU-friendly torch settings."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALLEST_CASE = "BraTS-GLI-01404-000"  # the smallest real mini case (70 slices)
BRATS_MINI = Path(os.environ.get("EMIM_BRATS_MINI", REPO.parent / "shared" / "data" / "brats-gli-mini"))
# `make test` runs two pytest-xdist workers; the cores are shared out between them, and each engine process a worker
# starts takes its worker's share too (OMP_NUM_THREADS), so that two busy workers do not fight over each core
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
THREADS = max(1, min(2, CORES // WORKERS))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))


@pytest.fixture(scope="session")
def brats_mini() -> Path:
    """Folder with three real BraTS 2023 cases; tests that need it skip cleanly where it is not present."""
    if not BRATS_MINI.is_dir() or not any(BRATS_MINI.iterdir()):
        pytest.skip(f"real BraTS mini cases not found at {BRATS_MINI}")
    return BRATS_MINI


@pytest.fixture(scope="session")
def emim() -> Callable[..., subprocess.CompletedProcess]:
    """`emim(*args, cwd=REPO)`: the `emim` command line run inside the test process (support/cli.py), returning
    what `subprocess.run(..., capture_output=True, text=True)` would. Tests about the process itself (signals,
    torchrun, a child held while links are planted) start a real `python -m emim` instead."""
    from support.cli import emim_in_process

    return emim_in_process


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(THREADS)


@pytest.fixture(scope="session")
def tiny_pretraining(brats_mini, tmp_path_factory) -> Path:
    """A tiny E-MIM pretraining run of 2 CPU steps on the smallest real mini case (encoder and MIM decoder for the
    reconstruction, fine-tuning and fill-missing tests; untrained weights: plumbing, not quality)."""
    from dataclasses import replace

    from emim.pretrain.run import default_config, run_pretraining
    from emim.progress import Progress
    from emim.train.trainer import TrainSettings

    run = tmp_path_factory.mktemp("pretrain") / "run"
    config = replace(default_config(str(brats_mini / SMALLEST_CASE), "tiny"), batch_size=1, device="cpu",
                     train=TrainSettings(steps=2, warmup_steps=1, log_every=1, eval_every=100, checkpoint_every=2))
    run_pretraining(config, run, progress=Progress("none"))
    return run


@pytest.fixture(scope="session")
def tiny_segmentation_model(brats_mini, tmp_path_factory) -> Path:
    """A tiny UNETR fine-tuned for 2 CPU steps from scratch on the real mini cases and exported (shared by the
    engine and Slicer tests: its weights are untrained, the tests check plumbing and geometry, not accuracy)."""
    from dataclasses import replace

    from emim.export import export_model
    from emim.finetune.segmentation import default_config, run_finetuning
    from emim.progress import Progress
    from emim.train.trainer import TrainSettings

    root = tmp_path_factory.mktemp("segment-model")
    config = replace(default_config(str(brats_mini), "tiny"), feature_size=4, batch_size=1, val_cases=0,
                     device="cpu",
                     train=TrainSettings(steps=2, lr=1e-3, warmup_steps=1, eval_every=100, checkpoint_every=2))
    run_finetuning(config, root / "run", progress=Progress("none"))
    return export_model(root / "run", root / "model")


@pytest.fixture(scope="session")
def dropout_model(brats_mini, tmp_path_factory) -> Path:
    """A tiny UNETR fine-tuned 2 CPU steps with modality dropout 1 (every batch misses some sequences)."""
    from dataclasses import replace

    from emim.export import export_model
    from emim.finetune.segmentation import default_config, run_finetuning
    from emim.progress import Progress
    from emim.train.trainer import TrainSettings

    root = tmp_path_factory.mktemp("dropout-model")
    config = replace(default_config(str(brats_mini), "tiny"), feature_size=4, batch_size=1, val_cases=0,
                     device="cpu", modality_dropout=1.0,
                     train=TrainSettings(steps=2, lr=1e-3, warmup_steps=1, eval_every=100, checkpoint_every=2))
    run_finetuning(config, root / "run", progress=Progress("none"))
    return export_model(root / "run", root / "model")
