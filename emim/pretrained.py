"""Read a whole pretraining from wherever the user points: a run folder, a checkpoint or a model folder.

`emim reconstruct` needs the encoder and the MIM decoder, and how the pretraining fed them (normalisation, mask
ratios, modality patterns). Checkpoints are read only through `load_checkpoint` (weights_only) and model folders
only through `load_model` (safetensors, hash-checked), so pointing at a file from elsewhere cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emim.config import ModelConfig
from emim.contract import CONFIG_FILE, DEFAULT_NORMALIZATION, LAST_CHECKPOINT, METADATA_FILE, WEIGHTS_FILE
from emim.data.modalities import ModalitySpec
from emim.errors import EmimError
from emim.model_metadata import normalization


@dataclass
class PretrainedWeights:
    """A model's full state dict plus what is needed to rebuild and feed it."""

    state: dict[str, torch.Tensor]
    config: ModelConfig
    normalization: str
    mask: dict[str, Any] | None  # the run's MaskConfig.to_dict(), when known
    source: Path
    step: int | None
    spec: ModalitySpec  # how input files are matched to the modalities (names, titles, patterns)
    task: str = "pretraining"  # a model folder's task, or a run's command ("pretrain" is "pretraining")
    spacing: tuple[float, float, float] | None = None  # the voxel size the cases were resampled to, when recorded


def _run_config(run_dir: Path, checkpoint: Path) -> dict[str, Any]:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise EmimError(f"{checkpoint} has no config.json in its run folder {run_dir}, so its model size is unknown; "
                        "point to the run folder itself, or keep checkpoints inside RUN/checkpoints/")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise EmimError(f"{path} is not valid JSON ({error}); restore the run folder's config.json") from None
    if "model" not in config:
        raise EmimError(f"{path} has no 'model' section; it is not an emim run config")
    return config


def _from_checkpoint(checkpoint: Path, run_dir: Path) -> PretrainedWeights:
    from emim.train.checkpoint import load_checkpoint

    from emim.data.cases import dataset_spec

    config = _run_config(run_dir, checkpoint)
    state = load_checkpoint(checkpoint)
    if not isinstance(state.get("model"), dict):
        raise EmimError(f"{checkpoint} holds no model weights; point to a run folder's checkpoints/last.pt")
    model = ModelConfig.from_dict(config["model"])
    command = config.get("command", "pretrain")
    spacing = config.get("spacing")
    try:
        spec = dataset_spec(config.get("data", "")).select(model.modalities)
    except EmimError:  # the training datalist changed since; names still match themselves
        spec = ModalitySpec.from_metadata(list(model.modalities))
    return PretrainedWeights(state["model"], model, config.get("normalization", DEFAULT_NORMALIZATION),
                             config.get("mask"), checkpoint, int(state.get("step", 0)), spec,
                             "pretraining" if command == "pretrain" else command,
                             tuple(float(v) for v in spacing) if spacing else None)


def read_pretrained(source: str | Path) -> PretrainedWeights:
    """The weights at `source`: RUN/ (its checkpoints/last.pt), a checkpoint file, an exported model folder, or the
    name of a shipped pretraining (`emim.bundled`)."""
    from emim.bundled import STARTER_PRETRAINING, resolve_model
    from emim.modelfile import load_model, unbuildable

    path = resolve_model(source)
    if path.is_dir() and (path / METADATA_FILE).is_file() or path.name in (METADATA_FILE, WEIGHTS_FILE):
        state, metadata = load_model(path)
        preprocessing = metadata.get("preprocessing") or {}
        provenance = metadata.get("provenance") or {}
        try:
            config = ModelConfig.from_dict(metadata["model_config"])
        except (ValueError, TypeError, KeyError) as error:
            raise unbuildable(path, error) from None
        spacing = preprocessing.get("spacing")
        return PretrainedWeights(state, config,
                                 normalization(metadata), provenance.get("mask"),
                                 path, provenance.get("steps"),
                                 ModalitySpec.from_metadata(metadata["modalities"]), metadata["task"],
                                 tuple(float(v) for v in spacing) if spacing else None)
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        checkpoint = path / LAST_CHECKPOINT
        if not checkpoint.is_file():
            raise EmimError(f"run folder {path} has no checkpoints/last.pt yet; let the pretraining write a "
                            "checkpoint (it does so every --checkpoint-every steps) or point to another run")
        return _from_checkpoint(checkpoint, path)
    if path.is_file():
        return _from_checkpoint(path, path.parent.parent)
    raise EmimError(f"{path} is not a pretraining run folder, checkpoint or model folder; give RUN/ of "
                    "`emim pretrain`, RUN/checkpoints/last.pt, a folder exported by `emim export`, or a shipped "
                    f"pretraining's name ({STARTER_PRETRAINING})")


def submodule_state(weights: PretrainedWeights, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix` ("encoder.", "decoder.") with the prefix removed."""
    return {key[len(prefix):]: value for key, value in weights.state.items() if key.startswith(prefix)}


def load_into(module: nn.Module, weights: PretrainedWeights, prefix: str) -> int:
    """Load the `prefix` part of `weights` into `module` strictly; a layout mismatch is an EmimError. Returns count."""
    state = submodule_state(weights, prefix)
    if not state:
        raise EmimError(f"{weights.source} holds no {prefix.rstrip('.')} weights; point to an E-MIM pretraining "
                        "run, checkpoint or model")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for what, keys in
                            (("missing", missing), ("unexpected", unexpected), ("other shape", wrong)) if keys)
        raise EmimError(f"the {prefix.rstrip('.')} weights in {weights.source} do not fit this network ({details}); "
                        "use the same model size (preset) as the pretraining, or start without pretrained weights")
    module.load_state_dict(state)
    return len(state)


# encoder fields that must agree for pretrained weights to mean the same thing (crop size and skip levels may differ)
ENCODER_FIELDS = ("modalities", "embed_dim", "depth", "num_heads", "patch_size", "mlp_ratio")


def _shown(value: Any) -> Any:
    """Tuples and lists compare and print alike (JSON configs hold lists, dataclasses tuples)."""
    return list(value) if isinstance(value, (tuple, list)) else value


def load_pretrained_encoder(encoder: nn.Module, config: ModelConfig, source: str | Path) -> tuple[int, str]:
    """Copy the encoder weights of `source` into `encoder`; returns (tensors loaded, description of the source).

    Refuses a source whose modalities or encoder shape differ from `config`, naming both, and one that holds no
    encoder weights, so an unusable checkpoint can never leave the encoder silently random.
    """
    weights = read_pretrained(source)
    what = f"{weights.source}" + (f" (step {weights.step})" if weights.step is not None else "")
    theirs_all, ours_all = weights.config.to_dict(), config.to_dict()
    differences = [f"{key} {_shown(theirs_all[key])} in {what} but {_shown(ours_all[key])} in the fine-tuning "
                   "config" for key in ENCODER_FIELDS if _shown(theirs_all[key]) != _shown(ours_all[key])]
    if differences:
        raise EmimError(f"cannot fine-tune from {what}: {'; '.join(differences)}. Fine-tune with the same "
                        "modalities (--modalities, in the same order) and --preset as the pretraining, or "
                        "pretrain on these modalities first.")
    return load_into(encoder, weights, "encoder."), what
