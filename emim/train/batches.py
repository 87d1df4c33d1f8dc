"""Random training crops read from the preprocessing cache, as an endless stream of batches.

Each crop opens its case's memory maps, copies the crop out and closes them, so neither the main process nor a
DataLoader worker keeps more than a crop resident, whatever the number of cases. Unlabelled crops sit uniformly
inside the brain box; labelled ones are centred on a tumour voxel half of the time and on a brain voxel otherwise
(the cached indices), so at least half the crops show tumour. Every axis is flipped with probability 1/2. Each
worker and each torchrun rank draws from its own seeded stream, re-seeded from the step on resume, so the data
order after `--resume` is reproducible.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from emim.data.cache import CachedCase
from emim.data.crops import centred_start, random_flips, read_crop, uniform_start
from emim.errors import EmimError

# The longest Unix socket path the system takes (sun_path less its closing NUL): 108 bytes on Linux, 104 elsewhere.
SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103


def crop_start(case: CachedCase, crop_size: Sequence[int], centred_on_label: bool,
               rng: np.random.Generator) -> tuple[int, ...]:
    """Where the next crop of `case` starts: on a tumour or brain voxel (drawn 1:1) or uniformly."""
    if centred_on_label:
        kinds = ["tumour", "brain"] if rng.random() < 0.5 else ["brain", "tumour"]
        for kind in kinds:  # a case without tumour (or without brain voxels) falls back on the other kind
            indices = case.array(kind)
            if len(indices):
                voxel = np.unravel_index(int(indices[int(rng.integers(len(indices)))]), case.shape)
                return centred_start(voxel, case.shape, crop_size)
    return uniform_start(rng, case.shape, crop_size)


def read_sample(case: CachedCase, crop_size: Sequence[int], with_label: bool,
                rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """One flipped crop {'image': float32 (M, *crop), 'label': uint8 (1, *crop)} of a cached case."""
    start = crop_start(case, crop_size, with_label, rng)
    arrays = [read_crop(case.array("image"), start, crop_size)]
    if with_label:
        arrays.append(read_crop(case.array("label"), start, crop_size)[None])
    arrays = random_flips(rng, *arrays)
    sample = {"image": torch.from_numpy(arrays[0].astype(np.float32))}
    if with_label:
        sample["label"] = torch.from_numpy(arrays[1])
    return sample


class CropStream(IterableDataset):
    def __init__(self, cases: Sequence[CachedCase], crop_size: Sequence[int], with_label: bool, seed: int) -> None:
        super().__init__()
        self.cases = list(cases)
        self.crop_size = tuple(int(c) for c in crop_size)
        self.with_label = with_label
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        rng = np.random.default_rng(self.seed * 1009 + (worker.id if worker else 0))
        while True:
            case = self.cases[int(rng.integers(len(self.cases)))]
            yield read_sample(case, self.crop_size, self.with_label, rng)


def check_worker_sockets(workers: int) -> None:
    """Refuse data loader workers where they cannot hand batches back. Under torch's `file_descriptor` sharing
    (Linux's default) a worker passes each batch to the main process through a Unix socket that multiprocessing
    names under the temporary folder; where that path is too long, the worker drops the batch (or dies) and the run
    waits for it forever."""
    if not workers or torch.multiprocessing.get_sharing_strategy() != "file_descriptor":
        return
    from multiprocessing.connection import arbitrary_address

    address = arbitrary_address("AF_UNIX")  # the name the worker's socket would get ("\0...": abstract, no limit)
    length = len(os.fsencode(address))
    if not address.startswith("\0") and length > SOCKET_PATH_MAX:
        raise EmimError(f"--workers {workers} cannot run with this temporary folder: data loader workers hand "
                        f"batches back through sockets under it ({address}, {length} characters; "
                        f"the system takes at most {SOCKET_PATH_MAX}). Set TMPDIR to a shorter folder such as /tmp, "
                        "or use --workers 0.")


def crop_batches(cases: Sequence[CachedCase], crop_size: Sequence[int], batch_size: int, with_label: bool,
                 seed: int, device: torch.device, workers: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches {'image': (B, M, *crop), 'label': (B, 1, *crop)} on `device`; the workers are checked here,
    and started at the first batch."""
    check_worker_sockets(workers)
    loader = DataLoader(CropStream(cases, crop_size, with_label, seed), batch_size=batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    return _on_device(loader, device)


def _on_device(loader: DataLoader, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
    for batch in loader:
        yield {key: value.to(device, non_blocking=True) for key, value in batch.items()}
