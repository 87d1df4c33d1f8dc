"""Turn an exported model folder into a network on a device: the steps every inference command shares."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emim.errors import EmimError
from emim.device import resolve_device


def load_network(model_dir: str | Path, task: str, build: Callable[[dict[str, Any]], nn.Module], export_hint: str,
                 device: str = "auto", warn: Callable[[str], None] | None = None
                 ) -> tuple[nn.Module, dict[str, Any], torch.device]:
    """Read and check the folder (never unpickling), refuse other tasks, build the network its metadata describes,
    load the weights strictly, and put it in eval mode on the resolved device."""
    from emim.modelfile import load_model, unbuildable

    state, metadata = load_model(model_dir)
    if metadata["task"] != task:
        raise EmimError(f"{model_dir} is a {metadata['task']} model; this command needs a {task} model "
                        f"({export_hint}).")
    try:
        network = build(metadata)
    except (ValueError, TypeError, KeyError) as error:  # sizes out of range, missing or mistyped fields
        raise unbuildable(model_dir, error) from None
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise EmimError(f"the weights in {model_dir} do not fit the network its metadata.json describes "
                        f"({str(error).splitlines()[0]}); re-export the model.") from None
    resolved = resolve_device(device, warn)
    return network.to(resolved).eval(), metadata, resolved
