"""Turn a label's `terminology` entry from metadata.json into Slicer's serialized terminology string.

metadata.json may give a ready string, or a dict whose parts are [scheme, value, meaning] triples (or dicts with
those keys): `category`, `type`, optional `type_modifier`, `anatomic_region`, `anatomic_region_modifier`, and
optional `context` / `anatomic_context` names. Codes are public standard codes (e.g. SNOMED CT).
"""

from __future__ import annotations

import slicer

DEFAULT_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
DEFAULT_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


def _code(part) -> tuple[str, str, str]:
    if isinstance(part, dict):
        return str(part["scheme"]), str(part["value"]), str(part["meaning"])
    scheme, value, meaning = part
    return str(scheme), str(value), str(meaning)


def _set(code_object, part) -> None:
    scheme, value, meaning = _code(part)
    code_object.SetCodingSchemeDesignator(scheme)
    code_object.SetCodeValue(value)
    code_object.SetCodeMeaning(meaning)


def terminology_string(entry: dict | str | None) -> str | None:
    """The string `vtkSegment.SetTerminology` takes, or None when the label carries no terminology."""
    if entry is None or isinstance(entry, str):
        return entry
    term = slicer.vtkSlicerTerminologyEntry()
    term.SetTerminologyContextName(entry.get("context", DEFAULT_CONTEXT))
    _set(term.GetCategoryObject(), entry["category"])
    _set(term.GetTypeObject(), entry["type"])
    if "type_modifier" in entry:
        _set(term.GetTypeModifierObject(), entry["type_modifier"])
    if "anatomic_region" in entry:
        term.SetAnatomicContextName(entry.get("anatomic_context", DEFAULT_ANATOMIC_CONTEXT))
        _set(term.GetAnatomicRegionObject(), entry["anatomic_region"])
        if "anatomic_region_modifier" in entry:
            _set(term.GetAnatomicRegionModifierObject(), entry["anatomic_region_modifier"])
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(term)
