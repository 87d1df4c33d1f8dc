"""Byte-reproducible NIfTI writing: same arrays, same file bytes.

nibabel's .nii.gz writer stamps the gzip header with the current time, so two runs of one seed would differ.
Here the header and data are serialised by nibabel and compressed with mtime 0 and no file name
(`emim.data.loading.nifti_bytes`), and written like every emim output (`emim.atomic_write`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_nifti_gz(array: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """Write `array` with `affine` as qform and sform (code 1, "scanner", as in BraTS)."""
    import nibabel as nib

    from emim.atomic_write import write_file
    from emim.data.loading import nifti_bytes

    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_data_dtype(array.dtype)
    return write_file(path, nifti_bytes(image, path))
