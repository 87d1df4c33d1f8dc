"""Classify cases with an exported classification model: class probabilities per case.

Each case is loaded like in training (canonical RAS voxel order, the model's normalisation, the model's training
spacing where the case is far from it: see `spacing`) and seen as tiles of the model's crop size over the brain's
bounding box; the mean tile feature goes through the head (see `emim.model.classifier` for why). Nothing is
written; the command prints the probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emim.config import ModelConfig
from emim.data.cases import Case
from emim.data.loading import load_case
from emim.data.modalities import ModalitySpec
from emim.data.spacing import needs_resampling, rescale
from emim.errors import EmimError
from emim.model.classifier import ClassifierNet, case_probabilities
from emim.model_metadata import normalization


@dataclass
class ClassificationModel:
    network: ClassifierNet
    metadata: dict[str, Any]
    device: torch.device

    @property
    def spec(self) -> ModalitySpec:
        return ModalitySpec.from_metadata(self.metadata["modalities"])

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in sorted(self.metadata["classes"], key=lambda c: c["value"])]

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.metadata.get("preprocessing") or {}


def load_classification_model(model_dir: str | Path, device: str = "auto",
                              warn: Callable[[str], None] | None = None) -> ClassificationModel:
    """Read and check a model folder (never unpickling); refuse models of other tasks."""
    from emim.inference.model_folder import load_network

    network, metadata, resolved = load_network(
        model_dir, "classification",
        lambda meta: ClassifierNet(ModelConfig.from_dict(meta["model_config"]), len(meta["classes"])),
        "export a `emim finetune-classifier` run", device, warn)
    return ClassificationModel(network, metadata, resolved)


def classify_case(model: ClassificationModel, case: Case, resample: bool = False, batch_size: int | None = None,
                  on_batch: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """{class name: probability} of one case; the probabilities sum to 1."""
    loaded = load_case(case, model.spec.names, normalization(model.metadata),
                       resample, with_label=False)
    trained = model.preprocessing.get("spacing")
    image = rescale(loaded.image, loaded.spacing, trained) if needs_resampling(loaded.spacing, trained) \
        else loaded.image
    batch = batch_size or int((model.metadata.get("inference") or {}).get("sw_batch_size", 4))
    try:
        probabilities = case_probabilities(model.network, image, model.device, batch, on_batch)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise EmimError(f"case {case.case_id}: the GPU ran out of memory with --sw-batch-size {batch}; use "
                        "--sw-batch-size 1, close other GPU programs, or run with --device cpu.") from None
    return {name: float(p) for name, p in zip(model.class_names, probabilities)}
