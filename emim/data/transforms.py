"""MONAI crop + flip augmentation for pretraining and fine-tuning crops.

Acts on dicts {"image": (C, X, Y, Z), "label": (1, X, Y, Z)} of normalised canonical arrays (see `loading`) and
returns ONE dict of cropped torch tensors, so every caller gets the same type with or without a label.
"""

from __future__ import annotations

from typing import Sequence


def _first(samples):
    """RandCropByPosNegLabeld returns a list of samples; we draw one (a module-level function so it pickles)."""
    return samples[0]


def _nonzero(image):
    """Foreground for the bounding box: z-scored brain voxels can be negative, only the background is exactly 0."""
    return image != 0


def training_transforms(crop_size: Sequence[int], with_label: bool):
    """Pad to at least `crop_size`, crop, and flip each axis with probability 0.5.

    The volume is first cut to the bounding box of its non-zero voxels (the brain in skull-stripped data), so
    crops are not spent on air; then zero-padded where it is smaller than the crop (BraTS cases can have fewer
    slices than a 96^3 crop). With a label, crops are centred on a tumour voxel half of the time and on a brain
    voxel (any channel above its mean, i.e. > 0 after z-scoring) otherwise, so at least half the crops show
    tumour; without one, crop positions are uniform inside the brain's bounding box.
    """
    from monai.transforms import (Compose, CropForegroundd, EnsureTyped, Lambda, RandCropByPosNegLabeld,
                                  RandFlipd, RandSpatialCropd, SpatialPadd)

    size = tuple(int(s) for s in crop_size)
    keys = ["image", "label"] if with_label else ["image"]
    steps = [CropForegroundd(keys=keys, source_key="image", select_fn=_nonzero, allow_smaller=True,
                             start_coord_key=None, end_coord_key=None),
             SpatialPadd(keys=keys, spatial_size=size)]
    if with_label:
        steps.append(RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=size, pos=1, neg=1,
                                            num_samples=1, image_key="image", image_threshold=0.0))
    else:
        steps.append(RandSpatialCropd(keys=keys, roi_size=size, random_size=False))
    steps += [RandFlipd(keys=keys, prob=0.5, spatial_axis=axis) for axis in range(3)]
    steps.append(EnsureTyped(keys=keys, track_meta=False))  # plain tensors: no per-sample metadata to collate
    if with_label:
        return Compose([Compose(steps), Lambda(func=_first)], map_items=False)
    return Compose(steps)
