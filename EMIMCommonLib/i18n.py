"""Translation helper: Slicer's `translate` inside the application, the identity in plain Python (tests, batch)."""

from __future__ import annotations

CONTEXT = "EMIMSegmentation"

try:
    from slicer.i18n import translate
except ImportError:  # slicer-core has no slicer.i18n; strings stay English

    def translate(context: str, text: str) -> str:
        return text


def tr(text: str) -> str:
    """Every user-visible string goes through this so Slicer's translation tools pick it up."""
    return translate(CONTEXT, text)
