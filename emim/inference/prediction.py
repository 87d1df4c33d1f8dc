"""A network's region probabilities over a whole case: MONAI's sliding window with Gaussian blending over the
brain's bounding box (all-zero background cannot hold tumour, and skipping it halves the windows on BraTS), bf16
autocast on CUDA, sigmoid."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from emim.device import autocast


def count_windows(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """How many windows MONAI's sliding window visits (after padding the volume up to the window size)."""
    total = 1
    for size, window in zip(shape, roi):
        size = max(size, window)
        step = max(int(window * (1 - overlap)), 1)
        total *= 1 if size == window else math.ceil((size - window) / step) + 1
    return total


def predict_probabilities(network: torch.nn.Module, image: np.ndarray, roi: Sequence[int], overlap: float,
                          sw_batch_size: int, device: torch.device,
                          on_windows: Callable[[int, int], None] | None = None,
                          present: Sequence[int] | None = None) -> np.ndarray:
    """(M, X, Y, Z) normalised canonical image -> (C, X, Y, Z) float32 region probabilities.

    `on_windows(done, total)` is called after each window batch (progress reporting). `present`: the modalities
    the case has, when it misses some (their channels are zeros; see EMIMUNETR.forward).
    """
    from monai.inferers import sliding_window_inference

    from emim.data.brainbox import brain_bounds

    box = brain_bounds(image)
    crop = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box)]))[None].to(device)
    total = count_windows(crop.shape[2:], roi, overlap)
    done = 0

    def predictor(windows: torch.Tensor) -> torch.Tensor:
        nonlocal done
        with autocast(device):
            logits = network(windows) if present is None else network(windows, present=list(present))
        done += windows.shape[0]
        if on_windows is not None:
            on_windows(min(done, total), total)
        return logits.float()

    with torch.inference_mode():
        logits = sliding_window_inference(crop, tuple(roi), sw_batch_size, predictor, overlap=overlap,
                                          mode="gaussian")
        probabilities = torch.sigmoid(logits[0]).float().cpu().numpy()
    full = np.zeros((probabilities.shape[0], *image.shape[1:]), dtype=np.float32)
    full[(slice(None), *box)] = probabilities
    return full
