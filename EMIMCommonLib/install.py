"""First-use dependency install inside Slicer (never at import): torch via the PyTorch extension, the rest by pip.

Only the engine's child process needs these packages; we install them into Slicer's Python because that is the
interpreter (PythonSlicer) that runs the engine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import EMIMError
from .i18n import tr

REQUIREMENTS = Path(__file__).resolve().parent.parent / "Resources" / "requirements.txt"


def missing_packages() -> list[str]:
    """Import names of the engine's dependencies that are not installed (found without importing them)."""
    return [name for name in ("torch", "monai", "nibabel", "safetensors", "einops", "psutil")
            if importlib.util.find_spec(name) is None]


def ensure_dependencies(confirm: bool = True) -> bool:
    """Install what is missing after asking; returns False when the user declines. Slicer only."""
    import slicer

    missing = missing_packages()
    if not missing:
        return True
    if confirm and not slicer.util.confirmOkCancelDisplay(
            tr("E-MIM needs these Python packages, which will be downloaded and installed now (this can take "
               "several minutes): {packages}.").format(packages=", ".join(missing))):
        return False
    try:
        if "torch" in missing:
            _install_torch()
        packaging = getattr(slicer, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            packaging.pip_ensure(requirements=str(REQUIREMENTS))
        else:
            slicer.util.pip_install(f"-r {REQUIREMENTS}")
    except Exception as error:  # pip and the PyTorch installer raise many types; the user needs one message
        raise EMIMError(tr("Installing the E-MIM dependencies failed: {error}. Check the internet "
                                       "connection, then restart Slicer and try again; torch can also be installed "
                                       "from the PyTorch Utils module.").format(error=error)) from error
    return not missing_packages()


def _install_torch() -> None:
    """The PyTorch extension picks the CUDA build that fits the driver; without it, a plain pip install."""
    import slicer

    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.pip_install("torch")
        return
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False) is None:
        raise EMIMError(tr("PyTorch was not installed; install it from the PyTorch Utils module."))
