"""Load the stand-ins the engine synthesised for missing sequences (`emim segment --fill-missing`) into the scene.

Each becomes a scalar volume on the reference's exact grid, in the reference's study, named so that nobody takes it
for an acquired sequence, and referenced from the segmentation it was used for (`SYNTHETIC_REFERENCE`)."""

from __future__ import annotations

from pathlib import Path

from emim.contract import SYNTHETIC_OUTPUT

from .i18n import tr
from .volumes_io import load_on_reference_grid, place_beside

SYNTHETIC_REFERENCE = "EMIMSynthetic"  # node reference role: segmentation -> each synthesised input volume
SYNTHETIC_ATTRIBUTE = "EMIM.SynthesisedFrom"  # on the volume: the pretraining that made it


def import_synthetic_volumes(outputs: list[dict], reference, segmentation, pretraining: str) -> list:
    """Volume nodes for the `output` events of kind synthetic; returns them in event order."""
    nodes = []
    for event in outputs:
        if event.get("kind") != SYNTHETIC_OUTPUT:
            continue
        name = reference.GetScene().GenerateUniqueName(
            tr("{case} {modality} (synthetic, E-MIM)").format(case=reference.GetName(), modality=event["modality"]))
        node = load_on_reference_grid(Path(event["path"]), reference, name, labelmap=False)
        node.SetAttribute(SYNTHETIC_ATTRIBUTE, pretraining)
        place_beside(node, reference)
        segmentation.AddNodeReferenceID(SYNTHETIC_REFERENCE, node.GetID())
        nodes.append(node)
    return nodes
