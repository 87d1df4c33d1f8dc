"""Translation helper with this module's context (the mechanism is EMIMCommonLib's; identity on slicer-core)."""

from __future__ import annotations

from EMIMCommonLib.i18n import translate

CONTEXT = "EMIMSegmentation"


def tr(text: str) -> str:
    """Every user-visible string goes through this so Slicer's translation tools pick it up."""
    return translate(CONTEXT, text)
