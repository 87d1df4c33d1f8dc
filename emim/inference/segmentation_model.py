"""An exported segmentation model, loaded once (never unpickling) and reused for every case of a batch: its
network on a device and what its metadata says about inputs, regions, spacing and post-processing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emim.data.modalities import ModalitySpec
from emim.inference.postprocess import PostProcess
from emim.model.unetr import EMIMUNETR
from emim.model_metadata import normalization, takes_missing_sequences


@dataclass
class SegmentationModel:
    """An exported segmentation model, loaded once and reused for every case of a batch."""

    network: EMIMUNETR
    metadata: dict[str, Any]
    device: torch.device
    folder: Path | None = None

    @property
    def spec(self) -> ModalitySpec:
        return ModalitySpec.from_metadata(self.metadata["modalities"])

    @property
    def regions(self) -> list[dict[str, Any]]:
        return self.metadata["regions"]

    @property
    def crop_size(self) -> tuple[int, int, int]:
        return self.network.config.crop_size

    @property
    def normalization(self) -> str:
        return normalization(self.metadata)

    def inference_default(self, key: str, fallback: Any) -> Any:
        return (self.metadata.get("inference") or {}).get(key, fallback)

    @property
    def takes_missing(self) -> bool:
        """Fine-tuned with modality dropout: segments a case that lacks some of its modalities."""
        return takes_missing_sequences(self.metadata)

    @property
    def postprocess(self) -> PostProcess:
        return PostProcess.from_metadata(self.inference_default("postprocess", None))


def build_network(model_config: dict[str, Any], network: dict[str, Any], out_channels: int) -> EMIMUNETR:
    """The UNETR described by a model folder's `model_config` and `network` metadata."""
    from emim.config import ModelConfig

    return EMIMUNETR(ModelConfig.from_dict(model_config), out_channels, int(network.get("feature_size", 16)))


def load_segmentation_model(model_dir: str | Path, device: str = "auto",
                            warn: Callable[[str], None] | None = None) -> SegmentationModel:
    """Read and check a model folder (never unpickling) and put its network on the resolved device."""
    from emim.inference.model_folder import load_network
    from emim.modelfile import model_folder

    network, metadata, resolved = load_network(
        model_dir, "segmentation",
        lambda meta: build_network(meta["model_config"], meta.get("network") or {}, len(meta["regions"])),
        "export a fine-tuning run with `emim export RUN --out MODEL`", device, warn)
    return SegmentationModel(network, metadata, resolved, model_folder(model_dir))
