"""What every inference command does with a case's files: check that its modalities are there, list its inputs,
and write its outputs all-or-nothing without touching an input (shared by segment, reconstruct and classify)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from emim.atomic_write import write_files
from emim.data.cases import Case
from emim.data.loading import LoadedCase, nifti_bytes
from emim.data.modalities import ModalitySpec
from emim.errors import EmimError
from emim.safepaths import check_outputs

NIFTI = ".nii.gz"


def check_modalities(case: Case, spec: ModalitySpec, hint: str = "") -> None:
    """Refuse a case whose files do not cover the model's modalities, naming what it has and what is missing."""
    missing = [m for m in spec.names if m not in case.images and m not in case.ambiguous]
    if missing:
        found = ", ".join(case.images) or "none of them"
        where = f" in {case.folder}" if case.folder else ""
        raise EmimError(f"case {case.case_id}: the model needs the modalities {', '.join(spec.names)} but the "
                        f"files{where} give {found}; missing {', '.join(missing)}. Add a file named like "
                        f"{case.case_id}-{missing[0]}.nii.gz, or use a model trained on the modalities you have."
                        + hint)


def case_files(case: Case) -> list[Path]:
    """Every input file of a case (images and label)."""
    return [*case.images.values(), *([case.label] if case.label else [])]


def check_case_outputs(outputs: Iterable[Path], root: Path, case: Case) -> None:
    """`safepaths.check_outputs` for this case's inputs, its folder and, for a DICOM case, the whole DICOM tree."""
    check_outputs(outputs, root, case_files(case), case.folder, case.folder if case.dicom else None)


def write_case_outputs(files: dict[Path, tuple[LoadedCase, np.ndarray, Any] | str | bytes], root: Path,
                       case: Case) -> None:
    """Check that every file stays inside `root` and replaces no input of `case` (see `safepaths`), then write
    each into a temporary (`atomic_write`: never through a planted link) and rename them all; on failure remove the
    temporaries. A value is a NIfTI file's (case, array, dtype), a text file's content or a binary file's bytes."""
    check_case_outputs(files, root, case)
    write_files({path: _file_content(path, content) for path, content in files.items()})


def _file_content(path: Path, content: tuple[LoadedCase, np.ndarray, Any] | str | bytes) -> str | bytes:
    """A NIfTI file's (case, array, dtype) as the bytes of a label or probability map on the case's grid."""
    if isinstance(content, (str, bytes)):
        return content
    loaded, array, dtype = content
    return nifti_bytes(loaded.image_like_reference(array, dtype), path)
