"""A synthesised stand-in for a missing sequence (`emim segment --fill-missing PRETRAINING`).

E-MIM pretraining with modal masks teaches the decoder to predict a whole hidden modality from the others. Here
that decoder fills the absent sequences of a case: the present ones (in the segmentation model's normalisation,
which must be the pretraining's) go in, every crop hides the absent ones (`reconstruct_volume` with a modal mask),
and the prediction becomes the missing channel, so a model that needs every sequence can still run. The stand-in
is computed on the grid the segmentation network runs on (the model's spacing when the case is rescaled to it,
which is where a fine-tuning and its pretraining saw their data), is zero outside the case's non-zero voxels like
every normalised input, and is written beside the label map as `<case>_synthetic_<modality>.nii.gz` in the
normalised units (z-scores for zscore-nonzero), never to be mistaken for an acquired sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emim.data.modalities import ModalitySpec
from emim.errors import EmimError
from emim.inference.reconstruct import Reconstructor, mask_config, reconstruct_volume

SYNTHETIC = "_synthetic_"  # between the case's output stem and the modality name
SEED = 0  # a modal mask hides fixed modalities; the seed only matters to other patterns, fixed for reproducibility


def check_filler(filler: Reconstructor, spec: ModalitySpec, normalization: str) -> None:
    """Refuse a pretraining that cannot stand in for this model's sequences: other modalities or intensity units."""
    if set(filler.modalities) != set(spec.names):
        raise EmimError(f"--fill-missing {filler.weights.source}: the pretraining's modalities "
                        f"({', '.join(filler.modalities)}) are not the segmentation model's ({', '.join(spec.names)}); "
                        "use a pretraining on the same sequences (e.g. the one the model was fine-tuned from).")
    if filler.weights.normalization != normalization:
        raise EmimError(f"--fill-missing {filler.weights.source}: the pretraining normalises intensities with "
                        f"{filler.weights.normalization} but the segmentation model with {normalization}, so its "
                        "stand-in would be in other units; use a pretraining with the model's normalisation.")


def synthesise(filler: Reconstructor, image: np.ndarray, names: Sequence[str], absent: Sequence[str],
               batch_size: int = 2) -> np.ndarray:
    """(M, X, Y, Z) normalised image in the order `names`, absent channels anything -> (len(absent), X, Y, Z)
    float32 stand-ins, zero where no present sequence has signal."""
    order = [names.index(m) for m in filler.modalities]
    hide = [filler.modalities.index(m) for m in absent]
    present = [names.index(m) for m in names if m not in absent]
    ordered = np.ascontiguousarray(image[order], dtype=np.float32)
    ordered[hide] = 0
    result = reconstruct_volume(filler, ordered, mask_config(filler.weights, "modal"), SEED, hide, batch_size)
    inside = (image[present] != 0).any(axis=0)
    return (result["reconstruction"][hide] * inside[None]).astype(np.float32)
