"""Device choice with the fallback said aloud, and bf16 autocast where it pays (CUDA only: on CPUs without
AVX512-BF16, such as the 2-core build machine, bf16 matmuls are ~5x slower than fp32)."""

from __future__ import annotations

import contextlib

import torch

from emim.contract import DEVICE_CHOICES
from emim.errors import EmimError


def resolve_device(name: str, warn=None) -> torch.device:
    """'auto' -> CUDA if available else CPU (with a warning via `warn`); 'cuda' without a GPU is an error."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise EmimError(f"device must be one of {DEVICE_CHOICES} or cuda:N, got {name!r}")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if name == "auto" else name)
    if name == "auto":
        if warn is not None:
            warn("no CUDA GPU is available to PyTorch here; running on the CPU (slower). "
                 "Install a CUDA build of torch to use a GPU.")
        return torch.device("cpu")
    raise EmimError("device 'cuda' was requested but PyTorch sees no CUDA GPU; use --device cpu or auto, "
                    "or install a CUDA build of torch")


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
