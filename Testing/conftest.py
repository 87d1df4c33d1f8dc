"""Shared fixtures: the real BraTS mini cases (skipped when absent) and CPU-friendly torch settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BRATS_MINI = Path(os.environ.get("EMIM_BRATS_MINI", REPO.parent / "shared" / "data" / "brats-gli-mini"))


@pytest.fixture(scope="session")
def brats_mini() -> Path:
    """Folder with three real BraTS 2023 cases; tests that need it skip cleanly where it is not present."""
    if not BRATS_MINI.is_dir() or not any(BRATS_MINI.iterdir()):
        pytest.skip(f"real BraTS mini cases not found at {BRATS_MINI}")
    return BRATS_MINI


@pytest.fixture(autouse=True, scope="session")
def _torch_threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
