"""Turn a run folder's last checkpoint into a model folder (docs/engine-interface.md) that inference can trust.

A fine-tuning run becomes a `segmentation` model (UNETR weights, labels, regions, the modality names with the
patterns that assign files to them, preprocessing, inference defaults, provenance with the last validation Dice).
A pretraining run becomes a `pretraining` model (encoder + reconstruction decoder, without the Barlow Twins
projectors that only training uses), which is what `emim reconstruct` and the Slicer module's reconstruction
view load. Only weights leave the checkpoint: optimiser state and random states stay in the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emim.errors import EmimError
from emim.inference.postprocess import DEFAULT as DEFAULT_POSTPROCESS
from emim.train.checkpoint import load_checkpoint
from emim.train.provenance import last_eval, run_provenance, training_spacing
from emim.train.runfolder import RunFolder

INFERENCE_DEFAULTS = {"overlap": 0.5, "blend": "gaussian", "sw_batch_size": 2,
                      "postprocess": DEFAULT_POSTPROCESS.to_metadata()}
def missing_modalities(dropout: float) -> dict[str, Any]:
    """What a segmentation model does with a case that lacks sequences: trained with modality dropout it takes
    any non-empty subset; otherwise it needs them all."""
    return {"supported": dropout > 0, "modality_dropout": dropout,
            "trained_subsets": "any non-empty proper subset, per batch" if dropout > 0 else "all modalities"}


def _segmentation(run: RunFolder, config: dict[str, Any], state: dict[str, Any]) -> tuple[dict, dict]:
    metadata = {
        "task": "segmentation",
        "description": f"UNETR over an E-MIM encoder, fine-tuned on {config['data']}"
                       + (f", starting from the whole model {config['init']['model']}" if config.get("init") else ""),
        "modalities": config["modalities"],
        "model_config": config["model"],
        "network": {"architecture": "UNETR", "feature_size": config["feature_size"],
                    "out_channels": len(config["regions"]), "activation": "sigmoid"},
        "preprocessing": {"normalization": config["normalization"], "orientation": "RAS",
                          "spacing": training_spacing(run)},
        "inference": {**json.loads(json.dumps(INFERENCE_DEFAULTS)),  # a deep copy
                      "missing_modalities": missing_modalities(config.get("modality_dropout", 0.0))},
        "labels": config["labels"],
        "regions": config["regions"],
        "provenance": {**run_provenance(run, config, int(state["step"])), "pretrained": config.get("pretrained"),
                       "init": config.get("init"), "validation": last_eval(run, "val_dice_")},
    }
    return state["model"], metadata


def _pretraining(run: RunFolder, config: dict[str, Any], state: dict[str, Any]) -> tuple[dict, dict]:
    from emim.data.cases import dataset_spec

    names = config["model"]["modalities"]
    weights = {k: v for k, v in state["model"].items() if k.startswith(("encoder.", "decoder."))}
    metadata = {
        "task": "pretraining",
        "description": f"E-MIM encoder and reconstruction decoder pretrained on {config['data']}",
        "modalities": dataset_spec(config["data"]).select(names).to_metadata(),
        "model_config": config["model"],
        "network": {"architecture": "E-MIM encoder + MIM decoder"},
        "preprocessing": {"normalization": config["normalization"], "orientation": "RAS",
                          "spacing": config.get("spacing")},  # set when the run resampled its cases
        "provenance": {**run_provenance(run, config, int(state["step"])), "mask": config.get("mask"),
                       "init": config.get("init"),
                       "pbt_levels": config.get("pbt_levels"), "diagnostics": last_eval(run, "heldout_")},
    }
    return weights, metadata


def export_model(run_dir: str | Path, out: str | Path, name: str | None = None, description: str | None = None,
                 force: bool = False) -> Path:
    """Write the model folder `out` from the last checkpoint of a fine-tuning, classification or pretraining run."""
    from emim.modelfile import METADATA_FILE, save_model

    run = RunFolder(run_dir, write=False)
    config = run.read_config()
    if not run.last_checkpoint.is_file():
        raise EmimError(f"{run.path} has no checkpoint yet ({run.last_checkpoint}); let the run save one first.")
    out = Path(out)
    if (out / METADATA_FILE).exists() and not force:
        raise EmimError(f"{out} already holds a model; choose another --out folder or pass --force to replace it.")
    state = load_checkpoint(run.last_checkpoint)
    command = config.get("command")
    if command == "finetune":
        weights, metadata = _segmentation(run, config, state)
    elif command == "pretrain":
        weights, metadata = _pretraining(run, config, state)
    elif command == "finetune-classifier":
        from emim.finetune.classification import classification_export

        weights, metadata = classification_export(run, config, state)
    else:
        raise EmimError(f"{run.path} is a {command!r} run; export takes fine-tuning or pretraining runs.")
    metadata["name"] = name or f"E-MIM {metadata['task']} ({out.name})"
    if description:
        metadata["description"] = description
    return save_model(out, weights, metadata)
