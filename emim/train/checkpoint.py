"""Checkpoints written atomically and read without unpickling arbitrary objects.

A crash or a kill during a save must never leave a half-written `last.pt`: `atomic_write` writes a new temporary in the
same folder, fsyncs it, and renames it over the old one (atomic on POSIX and Windows). Loading uses
`torch.load(weights_only=True)`, which only rebuilds tensors and plain containers, so a checkpoint someone hands you
cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from emim.atomic_write import write_file
from emim.errors import EmimError


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` all-or-nothing (`atomic_write`)."""
    return write_file(Path(path), lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EmimError(f"checkpoint {path} does not exist; point to a run folder's checkpoints/last.pt")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated, foreign or pickled-object files
        raise EmimError(f"cannot read checkpoint {path} as plain weights ({type(error).__name__}: "
                        f"{str(error).splitlines()[0]}); it may be truncated or not an emim checkpoint") from error
