"""Models that ship with the extension, found by name: `emim segment --model EMIM-starter-tiny ...`.

A shipped model's name always means the shipped model, even when the working directory holds a folder of that name
(a copy, or something planted there): say `./EMIM-starter-tiny` for that folder. Anything else is a path.

They live in Resources/Models/<name>/ beside the engine package: in a source checkout that is the repository's
Resources folder, in an installed extension the one CMake installs next to `emim/`. Each is an ordinary model
folder (model.safetensors + metadata.json, checksum-verified when loaded). Stdlib only: the Slicer side lists
them without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from emim.contract import METADATA_FILE, STARTER_MODEL, STARTER_PRETRAINING  # noqa: F401  (the names live there)

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"


def bundled_models() -> list[Path]:
    """Folders of the shipped models, the starter model first."""
    if not MODELS_DIR.is_dir():
        return []
    found = sorted(p for p in MODELS_DIR.iterdir() if (p / METADATA_FILE).is_file())
    return sorted(found, key=lambda p: p.name != STARTER_MODEL)


def bundled_model(name: str) -> Path | None:
    """The shipped model folder called `name`, or None; only names listed in MODELS_DIR match, never a path."""
    return next((p for p in bundled_models() if p.name == name), None)


def resolve_model(model: str | os.PathLike) -> Path:
    """The absolute folder (or file) that `--model`, `--fill-missing` or `--pretrained` names: a string that is a
    shipped model's name means that model, whatever the working directory holds; any other string (`./NAME`, a path
    with a separator, `~/...`) and any Path object is a path, which may not exist (the caller reports that). Decided
    on the string as typed: `Path("./NAME")` would print as `NAME`."""
    shipped = bundled_model(model) if isinstance(model, str) else None
    return shipped or Path(model).expanduser().resolve()
