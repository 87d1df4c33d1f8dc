"""Models that ship with the extension, found by name: `emim segment --model EMIM-starter-tiny ...`.

They live in Resources/Models/<name>/ beside the engine package: in a source checkout that is the repository's
Resources folder, in an installed extension the one CMake installs next to `emim/`. Each is an ordinary model
folder (model.safetensors + metadata.json, checksum-verified when loaded). Stdlib only: the Slicer side lists
them without importing torch.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent.parent / "Resources" / "Models"
STARTER_MODEL = "EMIM-starter-tiny"  # listed first, the Slicer panel's default


def bundled_models() -> list[Path]:
    """Folders of the shipped models, the starter model first."""
    if not MODELS_DIR.is_dir():
        return []
    found = sorted(p for p in MODELS_DIR.iterdir() if (p / "metadata.json").is_file())
    return sorted(found, key=lambda p: p.name != STARTER_MODEL)


def bundled_model(name: str) -> Path | None:
    """The shipped model folder called `name`, or None (a name, not a path: no separators, no dots)."""
    if not name or any(c in name for c in "/\\") or name.startswith("."):
        return None
    return next((p for p in bundled_models() if p.name == name), None)
