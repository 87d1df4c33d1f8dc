"""Hand edits of a model folder's metadata.json, as tests of hostile or careless model files need them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def edit_metadata(folder: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply `edit` to the folder's metadata.json and make its checksum match again, as anyone who knows the format
    can (the metadata checksum catches accidents; it is not a signature)."""
    from emim.contract import METADATA_FILE
    from emim.modelfile import with_metadata_checksum

    path = folder / METADATA_FILE
    metadata = json.loads(path.read_text())
    edit(metadata)
    path.write_text(json.dumps(with_metadata_checksum(metadata)))
