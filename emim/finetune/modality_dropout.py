"""Modality dropout: fine-tuning on cases that miss sequences, so the model can segment one that does.

With probability P a training step's batch (all its --accumulate micro-batches alike) loses a random non-empty
proper subset of its modalities: the encoder sees only the present ones (the shared tokeniser takes any subset, see
`emim.model.encoder`), and the convolutional stem sees the absent channels as zeros, which is what inference gives
it for a missing sequence. The draw is seeded from (seed, rank, step), so a resumed run drops what the uninterrupted
one would have.
"""

from __future__ import annotations

import torch

from emim.train.trainer import stream_seed


def draw_present(modalities: int, probability: float, seed: int, rank: int, step: int) -> list[int] | None:
    """The indices of the modalities a step's batch keeps, or None for all of them."""
    generator = torch.Generator().manual_seed(stream_seed("modality dropout", seed, rank, step))
    if modalities < 2 or float(torch.rand((), generator=generator)) >= probability:
        return None
    dropped = int(torch.randint(1, modalities, (), generator=generator))
    order = torch.randperm(modalities, generator=generator).tolist()
    return sorted(order[dropped:])


def zero_absent(image: torch.Tensor, present: list[int] | None) -> torch.Tensor:
    """(B, M, ...) with the channels not in `present` set to 0 (a copy; the input is unchanged)."""
    if present is None:
        return image
    keep = torch.zeros(image.shape[1], dtype=torch.bool, device=image.device)
    keep[present] = True
    return image * keep.view(1, -1, *([1] * (image.ndim - 2))).to(image.dtype)
