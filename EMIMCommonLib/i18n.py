"""Translation helper: Slicer's `translate` inside the application, the identity in plain Python (tests, batch).

Each module has its own context (its `Lib.i18n.tr`); strings of this shared package use "EMIM"."""

from __future__ import annotations

CONTEXT = "EMIM"

try:
    from slicer.i18n import translate
except ImportError:  # slicer-core has no slicer.i18n; strings stay English

    def translate(context: str, text: str) -> str:
        return text


def tr(text: str) -> str:
    """Every user-visible string goes through this so Slicer's translation tools pick it up."""
    return translate(CONTEXT, text)
