"""Models that ship with the extension, found by name: `emim segment --model EMIM-starter-tiny ...`.

They live in Resources/Models/<name>/ beside the engine package: in a source checkout that is the repository's
Resources folder, in an installed extension the one CMake installs next to `emim/`. Each is an ordinary model
folder (model.safetensors + metadata.json, checksum-verified when loaded). Stdlib only: the Slicer side lists
them without importing torch.
"""

from __future__ import annotations

from pathlib import Path

from emim.contract import METADATA_FILE

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"
STARTER_MODEL = "EMIM-starter-tiny"  # listed first, the Slicer panel's default
STARTER_PRETRAINING = "EMIM-starter-tiny-pretraining"  # the pretraining the starter models were fine-tuned from


def bundled_models() -> list[Path]:
    """Folders of the shipped models, the starter model first."""
    if not MODELS_DIR.is_dir():
        return []
    found = sorted(p for p in MODELS_DIR.iterdir() if (p / METADATA_FILE).is_file())
    return sorted(found, key=lambda p: p.name != STARTER_MODEL)


def bundled_model(name: str) -> Path | None:
    """The shipped model folder called `name`, or None; only names listed in MODELS_DIR match, never a path."""
    return next((p for p in bundled_models() if p.name == name), None)


def resolve_model(model: str | Path) -> Path:
    """What `--model` names: an existing path as given, else the shipped model of that name, else the path (whose
    absence the caller reports)."""
    path = Path(model)
    return path if path.exists() else (bundled_model(str(model)) or path)
