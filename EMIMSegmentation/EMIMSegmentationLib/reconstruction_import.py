"""Load a pretraining model's "look inside" outputs: masked inputs, reconstructions and the mask."""

from __future__ import annotations

from pathlib import Path

from emim.contract import MASK_OUTPUT, RECONSTRUCTION_OUTPUTS

from .errors import EMIMSegmentationError
from .i18n import tr
from .volumes_io import load_on_reference_grid, load_volume, place_beside


def import_reconstruction_outputs(outputs: list[dict], reference, prefix: str) -> dict:
    """Volumes from `output` events (kind masked|reconstruction|mask, with modality).

    Returns {"masked": {modality: node}, "reconstruction": {modality: node}, "mask": node or None}. Outputs on
    the reference grid get exactly its matrix; outputs on another grid (e.g. a crop) keep their own geometry,
    which still places them correctly in physical space.
    """
    result: dict = {"masked": {}, "reconstruction": {}, "mask": None}
    for event in outputs:
        kind = event.get("kind")
        if kind not in RECONSTRUCTION_OUTPUTS:
            continue
        path = Path(event["path"])
        modality = event.get("modality", "")
        name = reference.GetScene().GenerateUniqueName(f"{prefix} {modality} {kind}".replace("  ", " "))
        labelmap = kind == MASK_OUTPUT
        try:
            node = load_on_reference_grid(path, reference, name, labelmap=labelmap)
        except EMIMSegmentationError:
            node = load_volume(path, name, labelmap=labelmap)
        place_beside(node, reference)
        if labelmap:
            result["mask"] = node
        else:
            result[kind][modality] = node
    if not result["reconstruction"]:
        raise EMIMSegmentationError(tr("The engine reported no reconstruction outputs; see the log."))
    return result
