"""`emim finetune DATA --init MODEL`: fine-tune a whole segmentation model (encoder, UNETR decoder, head) on the
user's labelled cases, instead of a new decoder over a pretrained encoder.

The model's metadata gives everything the network and its inputs were built with: the model config, the decoder
width, the output regions and labels, the modalities with their file patterns, the normalisation and the voxel size
it was trained at. So the user repeats none of them, and the checks here refuse a data set the model cannot mean
anything on (other modalities or order, other output regions) before a run folder is made. At the start of the run
the weights are read again (checked against the SHA-256 recorded in the run config) and every tensor is compared with
the network's before any is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from emim.errors import EmimError
from emim.model_metadata import modality_dropout, normalization


def _regions_shown(regions: Sequence[dict]) -> str:
    return "[" + ", ".join(f"{r['name']} (labels {', '.join(str(v) for v in r['labels'])})" for r in regions) + "]"


def check_labels(data_regions: Sequence[dict], model_regions: Sequence[dict], what: str, data: str) -> None:
    """Refuse data whose label set makes other output regions than the model's (names and the labels of each)."""
    def key(regions: Sequence[dict]) -> list[tuple[str, list[int]]]:
        return [(str(r["name"]), sorted(int(v) for v in r["labels"])) for r in regions]

    if key(data_regions) != key(model_regions):
        raise EmimError(f"the model {what} segments {_regions_shown(model_regions)} but the data's labels give "
                        f"{_regions_shown(data_regions)} ({data}). --init keeps the model's output regions: give "
                        "cases labelled as the model's (for BraTS: 1 necrotic core, 2 edema, 3 enhancing tumour), or "
                        "leave --init out to train a new head for these labels.")


def _check_segmentation(task: str, model: str | Path, what: str) -> None:
    """Refuse a model of another task, saying what it is and what starts from it instead."""
    if task == "segmentation":
        return
    kind = {"pretraining": "an E-MIM pretraining (encoder and reconstruction decoder)",
            "classification": "a case classifier"}.get(task, f"a {task} model")
    hint = (f" To start only the encoder from this pretraining, use --pretrained {model} instead."
            if task == "pretraining" else "")
    raise EmimError(f"{what} is {kind}, not a segmentation model: finetune --init starts the whole network "
                    "(encoder, decoder and head) from a segmentation model, a shipped one (EMIM-starter-tiny) or "
                    f"a folder that `emim export` wrote from a fine-tuning run.{hint}")


def init_config(data: str | Path, model: str | Path, modalities: Sequence[str] | None = None,
                crop_size: Sequence[int] | None = None):
    """The FinetuneConfig of fine-tuning the segmentation model `model` (a shipped model's name or a model folder) on
    `data`: the model's network, regions, labels, modalities, normalisation and spacing, with `init` recording which
    model (and its SHA-256) the run starts from. The training options are `FinetuneConfig`'s; the command line fills
    them from `INIT_RECIPE`."""
    from dataclasses import replace

    from emim.config import PRESETS, ModelConfig, preset_of
    from emim.data.cases import dataset_spec
    from emim.finetune.segmentation import FinetuneConfig, label_set
    from emim.modelfile import load_metadata, model_folder, unbuildable
    from emim.train.init import check_modalities, described

    folder = model_folder(model)
    metadata = load_metadata(folder)
    what = described(model, folder)
    _check_segmentation(metadata["task"], model, what)
    model_names = [m["name"] for m in metadata["modalities"]]
    data_names = list(modalities) if modalities else list(dataset_spec(data).names)
    check_modalities(data_names, model_names, f"the model {what}")
    _, data_regions = label_set(data, data_names)
    check_labels(data_regions, metadata["regions"], what, str(data))
    try:
        config = ModelConfig.from_dict(metadata["model_config"])
    except (ValueError, TypeError, KeyError) as error:
        raise unbuildable(folder, error) from None
    if list(config.modalities) != model_names:
        raise EmimError(f"{folder}: its metadata lists the modalities {model_names} but its network takes "
                        f"{list(config.modalities)}; re-export the model.")
    if crop_size:
        try:
            config = replace(config, crop_size=tuple(crop_size))
        except ValueError as error:
            raise EmimError(f"--crop: {error}") from None
    network = metadata.get("network") or {}
    preprocessing = metadata.get("preprocessing") or {}
    spacing = preprocessing.get("spacing")
    return FinetuneConfig(
        data=str(data), model=config, modalities=tuple(metadata["modalities"]), labels=tuple(metadata["labels"]),
        regions=tuple(metadata["regions"]),
        feature_size=int(network.get("feature_size") or PRESETS[preset_of(config)].feature_size),
        normalization=normalization(metadata),
        modality_dropout=modality_dropout(metadata),
        spacing=tuple(float(v) for v in spacing) if spacing else None,
        init={"model": str(model), "folder": str(folder), "name": metadata.get("name"),
              "sha256": metadata["sha256"]})
