"""Starting a run from a whole trained network (`emim finetune --init`, `emim pretrain --init`): what is recorded
about the model started from, and the checks made before a single step, so a model that does not fit the data (other
modalities, another order, other output regions) or the network (any tensor of another shape) is refused with what
differs instead of being half loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from emim.errors import EmimError


def described(given: str | Path, folder: Path) -> str:
    """How a model is named in messages: a shipped model by its name, anything else by its absolute path."""
    from emim.bundled import bundled_model

    return str(given) if isinstance(given, str) and bundled_model(given) == folder else str(folder)


def check_modalities(data: Sequence[str], model: Sequence[str], what: str) -> None:
    """Refuse a data set whose modalities are not the model's, in the model's order (its input channels)."""
    data, model = list(data), list(model)
    if data == model:
        return
    how = ("the same names in another order" if sorted(data) == sorted(model) else
           f"the data lack {sorted(set(model) - set(data))}" if set(data) < set(model) else
           f"the model has no {sorted(set(data) - set(model))}")
    raise EmimError(f"modalities {data} of the data vs {model} of {what} ({how}): --init needs the model's "
                    "modalities in its order, one input channel each. Give cases with those sequences (or "
                    f"--modalities {','.join(model)}), or leave --init out to train a new network for these "
                    "modalities.")


def check_tensors(own: Mapping[str, torch.Tensor], theirs: Mapping[str, torch.Tensor], what: str,
                  fix: str) -> None:
    """Refuse weights whose tensor names or shapes differ from the network's, listing the first of each kind."""
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    shapes = sorted(k for k in set(own) & set(theirs) if tuple(own[k].shape) != tuple(theirs[k].shape))
    if not (missing or unexpected or shapes):
        return

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    shaped = [f"{k}: {list(theirs[k].shape)} in the weights, {list(own[k].shape)} here" for k in shapes]
    details = [f"the network has {len(missing)} tensor(s) the weights lack ({listed(missing)})" if missing else "",
               f"the weights hold {len(unexpected)} tensor(s) the network has no place for ({listed(unexpected)})"
               if unexpected else "",
               f"{len(shapes)} tensor(s) differ in shape ({listed(shaped)})" if shapes else ""]
    raise EmimError(f"the weights of {what} do not fit the network to train: {'; '.join(d for d in details if d)}. "
                    f"{fix}")


def differing_fields(first: Any, second: Any, fields: Sequence[str]) -> list[str]:
    """The `fields` in which two ModelConfigs differ, each as 'field FIRST vs SECOND'."""
    def shown(value: Any) -> Any:
        return list(value) if isinstance(value, (tuple, list)) else value

    return [f"{name} {shown(getattr(first, name))} vs {shown(getattr(second, name))}" for name in fields
            if shown(getattr(first, name)) != shown(getattr(second, name))]


INIT_FIX = ("Start from a model built for this network, or leave the options that change it (--feature-size, "
            "--preset, --crop for a model whose weights depend on it) out.")


def load_init_model(network: torch.nn.Module, init: dict[str, Any]) -> tuple[int, str]:
    """Load the whole model recorded in `init` into `network`, after checking that it is the model the run was
    configured with (SHA-256) and that every tensor's name and shape fit. Returns (tensors loaded, description)."""
    from emim.modelfile import load_model

    folder = Path(init["folder"])
    state, metadata = load_model(folder)
    what = described(init["model"], folder)
    if metadata["sha256"] != init["sha256"]:
        raise EmimError(f"the model {what} changed since this run was configured (its weights' SHA-256 is "
                        f"{metadata['sha256'][:12]}..., the run config records {init['sha256'][:12]}...); start a new "
                        "run from it.")
    check_tensors(network.state_dict(), state, f"the model {what}", INIT_FIX)
    network.load_state_dict(state)
    return len(state), f"{what} (sha256 {metadata['sha256'][:12]})"
