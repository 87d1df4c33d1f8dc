"""Where training crops sit and how they are read, for volumes already cut to their brain box.

A box smaller than the crop along an axis is centred in a zero-padded crop (BraTS cases can have fewer slices than
a 96^3 crop); start positions are given in that padded frame, so uniform positions cover the whole padded box.
Crops are read by slicing, so from a memory-mapped cache entry only the crop's own pages are touched.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def padded_shape(shape: Sequence[int], crop: Sequence[int]) -> tuple[int, ...]:
    """The spatial shape once padded to at least the crop."""
    return tuple(max(int(s), int(c)) for s, c in zip(shape, crop))


def pad_offset(shape: Sequence[int], crop: Sequence[int]) -> tuple[int, ...]:
    """Where the box starts inside its padded frame (the padding is split evenly, the odd voxel after)."""
    return tuple(max(int(c) - int(s), 0) // 2 for s, c in zip(shape, crop))


def uniform_start(rng: np.random.Generator, shape: Sequence[int], crop: Sequence[int]) -> tuple[int, ...]:
    """A uniformly drawn crop start in the padded frame."""
    return tuple(int(rng.integers(0, p - int(c) + 1)) for p, c in zip(padded_shape(shape, crop), crop))


def centred_start(centre: Sequence[int], shape: Sequence[int], crop: Sequence[int]) -> tuple[int, ...]:
    """The start (padded frame) of the crop centred on box voxel `centre`, moved inside the frame at the edges."""
    frame, offset = padded_shape(shape, crop), pad_offset(shape, crop)
    return tuple(int(np.clip(v + o - int(c) // 2, 0, p - int(c)))
                 for v, o, c, p in zip(centre, offset, crop, frame))


def read_crop(array: np.ndarray, start: Sequence[int], crop: Sequence[int]) -> np.ndarray:
    """The crop (..., *crop) at `start` (padded frame) of `array` (..., X, Y, Z), zeros outside the box; a new
    array, so a memory map it was read from can be closed."""
    spatial = array.shape[-3:]
    out = np.zeros((*array.shape[:-3], *(int(c) for c in crop)), dtype=array.dtype)
    source, target = [], []
    for begin, c, s, o in zip(start, crop, spatial, pad_offset(spatial, crop)):
        low, high = max(begin - o, 0), min(begin - o + int(c), s)  # box voxels the crop covers
        source.append(slice(low, high))
        target.append(slice(low - (begin - o), high - (begin - o)))
    out[(..., *target)] = array[(..., *source)]
    return out


def random_flips(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """Flip each spatial axis with probability 1/2, the same flips for every array (image and its label)."""
    axes = [axis for axis in (-3, -2, -1) if rng.random() < 0.5]
    return [np.ascontiguousarray(np.flip(a, axis=axes)) if axes else a for a in arrays]
