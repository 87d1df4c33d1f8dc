"""Turn a label's `terminology` entry from metadata.json into Slicer's serialized terminology string.

The entry is the engine's format (docs/engine-interface.md, as in Slicer's .term.json lists): `contextName`,
`category`, `type`, optional `typeModifier`, `anatomicContextName`, `anatomicRegion`, `anatomicRegionModifier`, each
code a {CodingSchemeDesignator, CodeValue, CodeMeaning} dict; a ready serialized string is passed through. Slicer's
own serializer writes the string, so it always matches the running Slicer version.
"""

from __future__ import annotations

import slicer

CODE_SETTERS = (("category", "GetCategoryObject"), ("type", "GetTypeObject"),
                ("typeModifier", "GetTypeModifierObject"), ("anatomicRegion", "GetAnatomicRegionObject"),
                ("anatomicRegionModifier", "GetAnatomicRegionModifierObject"))


def terminology_string(entry: dict | str | None) -> str | None:
    """The string `vtkSegment.SetTerminology` takes, or None when the label carries no terminology."""
    if entry is None or isinstance(entry, str):
        return entry
    term = slicer.vtkSlicerTerminologyEntry()
    term.SetTerminologyContextName(entry.get("contextName", ""))
    term.SetAnatomicContextName(entry.get("anatomicContextName", ""))
    for key, getter in CODE_SETTERS:
        code = entry.get(key)
        if code:
            target = getattr(term, getter)()
            target.SetCodingSchemeDesignator(code["CodingSchemeDesignator"])
            target.SetCodeValue(code["CodeValue"])
            target.SetCodeMeaning(code["CodeMeaning"])
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(term)
