"""The case-level classifier: the E-MIM encoder, mean-pooled tokens of its last level, LayerNorm, Linear.

Training sees random crops of the model's crop size; a whole case is seen as tiles of that size spread evenly
over the brain's bounding box (the non-zero voxels of any modality), and its pooled feature is the mean of the
tiles' pooled features. Tiles of equal size make that mean the mean over all tokens of the brain box, so the head
sees the same kind of feature at training and inference time while every part of the brain contributes (a single
centre crop would miss a tumour at the edge). Starts are spread so tiles overlap a little instead of running past
the box; a box smaller than the crop is zero-padded around its centre, as the training crops are.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from emim.config import ModelConfig
from emim.model.encoder import EMIMEncoder, init_weights
from emim.device import autocast


class ClassifierNet(nn.Module):
    def __init__(self, config: ModelConfig, num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.encoder = EMIMEncoder(config)
        self.norm = nn.LayerNorm(config.embed_dim)
        self.head = nn.Linear(config.embed_dim, num_classes)
        self.norm.apply(init_weights)
        self.head.apply(init_weights)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, M, X, Y, Z) -> (B, D): mean over all tokens (every modality and position) of the last level."""
        return self.encoder(x)[-1].mean(dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, D) -> class logits (B, K)."""
        return self.head(self.norm(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


def _starts(length: int, crop: int) -> list[int]:
    """Evenly spread window starts covering [0, length) with windows of `crop` (length >= crop)."""
    count = math.ceil(length / crop)
    return sorted({round(i * (length - crop) / max(count - 1, 1)) for i in range(count)})


def brain_tiles(image: np.ndarray, crop_size: Sequence[int]) -> np.ndarray:
    """(M, X, Y, Z) -> (T, M, *crop) tiles covering the bounding box of the non-zero voxels."""
    from emim.data.brainbox import brain_box

    image = brain_box(image)[0]
    short = [max(c - s, 0) for s, c in zip(image.shape[1:], crop_size)]
    image = np.pad(image, [(0, 0)] + [(d // 2, d - d // 2) for d in short])
    tiles = [image[:, x:x + crop_size[0], y:y + crop_size[1], z:z + crop_size[2]]
             for x, y, z in itertools.product(*(_starts(s, c) for s, c in zip(image.shape[1:], crop_size)))]
    return np.stack(tiles)


@torch.no_grad()
def case_probabilities(model: ClassifierNet, image: np.ndarray, device: torch.device, batch_size: int = 4,
                       on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Class probabilities (K,) of one case (M, X, Y, Z): mean tile feature through the head, softmax."""
    tiles = torch.from_numpy(brain_tiles(image, model.config.crop_size))
    total = torch.zeros(model.config.embed_dim, dtype=torch.float64)
    for start in range(0, len(tiles), batch_size):
        with autocast(device):
            features = model.features(tiles[start:start + batch_size].to(device))
        total += features.double().sum(dim=0).cpu()
        if on_batch is not None:
            on_batch(min(start + batch_size, len(tiles)), len(tiles))
    mean = (total / len(tiles)).float().to(device)[None]
    return torch.softmax(model.classify(mean).float(), dim=1)[0].cpu().numpy()
