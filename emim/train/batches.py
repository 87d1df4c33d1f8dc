"""Random training crops from cases held in memory, as an endless stream of batches.

Volumes are loaded and normalised once (a BraTS case is ~35 MB per modality in float32), then MONAI transforms cut
random crops with flips. Each DataLoader worker and each torchrun rank draws from its own seeded stream, and the
stream is re-seeded from the step on resume so the data order after `--resume` is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from emim.data.loading import LoadedCase
from emim.data.transforms import crop_source, training_transforms


class CropStream(IterableDataset):
    def __init__(self, cases: Sequence[LoadedCase], crop_size: Sequence[int], with_label: bool, seed: int) -> None:
        super().__init__()
        self.sources = [crop_source(case.image, case.label if with_label else None, crop_size) for case in cases]
        self.crop_size = tuple(crop_size)
        self.with_label = with_label
        self.seed = seed

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        seed = self.seed * 1009 + (worker.id if worker else 0)
        rng = np.random.default_rng(seed)
        transform = training_transforms(self.crop_size, self.with_label)
        transform.set_random_state(seed=seed % 2**32)
        while True:
            out = transform(dict(self.sources[int(rng.integers(len(self.sources)))]))
            out = out[0] if isinstance(out, list) else out
            sample = {"image": torch.as_tensor(np.asarray(out["image"]), dtype=torch.float32)}
            if self.with_label:
                sample["label"] = torch.as_tensor(np.asarray(out["label"])).to(torch.uint8)
            yield sample


def crop_batches(cases: Sequence[LoadedCase], crop_size: Sequence[int], batch_size: int, with_label: bool,
                 seed: int, device: torch.device, workers: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches {'image': (B, M, *crop), 'label': (B, 1, *crop)} on `device`."""
    loader = DataLoader(CropStream(cases, crop_size, with_label, seed), batch_size=batch_size,
                        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    for batch in loader:
        yield {key: value.to(device, non_blocking=True) for key, value in batch.items()}
