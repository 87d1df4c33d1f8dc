"""Load one case as a normalised multi-channel array in canonical voxel order, and write results back on its grid.

Geometry contract: the arrays a model sees are in canonical RAS voxel order (flips and axis swaps only, see
`geometry`), and `LoadedCase.to_reference` / `image_like_reference` put results back exactly on the reference
file's voxel grid, affine and header. Modalities on other grids are refused unless `resample=True`, which
resamples them onto the reference in physical space; arrays are never resized to make grids match.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from emim.contract import DEFAULT_NORMALIZATION, NORMALIZATIONS
from emim.data.cases import Case
from emim.data.geometry import Grid, canonical_grid, from_canonical, grid_differences, to_canonical
from emim.data.geometry import resample as resample_onto
from emim.data.dicom import convert_case
from emim.errors import DataError, EmimError

# Voxel values above this overflow in float32 arithmetic (normalisation squares them): refused on reading.
FLOAT32_LIMIT = float(np.sqrt(np.finfo(np.float32).max))


def missing_error(case: Case, modality: str) -> DataError:
    """The problem of a modality without a file: where it was expected and how to name it."""
    fix = ("add it as a 3D NIfTI file (.nii or .nii.gz), or check only the modalities you have "
           "with --modalities.")
    if case.folder is not None:
        expected = case.folder / f"{case.case_id}-{modality}.nii.gz"
        return DataError(case.case_id, expected, "missing", f"{modality} file missing: no file in {case.folder} "
                         f"matches {modality} (expected e.g. {expected}).", fix)
    return DataError(case.case_id, None, "missing", f"the datalist gives no {modality} image for this case.",
                     f"add a {modality!r} entry to its 'image', or choose other modalities with --modalities.")


def open_image(path: Path, case_id: str, what: str) -> nib.Nifti1Image:
    """The NIfTI image object (header only; voxels are read lazily)."""
    if not Path(path).is_file():
        raise DataError(case_id, path, "missing", f"{what} file {path} does not exist.",
                        "correct the path in the datalist, or add the file (3D NIfTI, .nii or .nii.gz).")
    try:
        image = nib.load(str(path))
        affine = np.asarray(image.affine, dtype=np.float64)
    except Exception as error:  # nibabel raises many types for corrupt headers
        raise DataError(case_id, path, "unreadable", f"{what} file {path} cannot be read ({error}).",
                        "re-export or re-download the file; it must be a valid NIfTI image.") from error
    problem = affine_problem(affine)
    if problem:
        raise DataError(case_id, path, "affine", f"{what} file {path} has an unusable voxel-to-world affine "
                        f"({problem}), so its voxels have no place in space.",
                        "re-export it from the scanner data or the converter (dcm2niix) so that the header holds "
                        "its real orientation, spacing and origin.")
    return image


def affine_problem(affine: np.ndarray) -> str | None:
    """Why a voxel-to-world affine cannot place voxels in space, or None: non-finite values, a zero voxel size,
    or axes that do not span 3D."""
    if not np.isfinite(affine).all():
        return "it holds NaN or infinite values"
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if (sizes < 1e-6).any():
        return f"voxel size {' x '.join(f'{s:g}' for s in sizes)} mm"
    if abs(np.linalg.det(affine[:3, :3] / sizes)) < 1e-6:
        return "its axes are parallel (singular)"
    return None


def spatial_shape(image: nib.Nifti1Image, path: Path, case_id: str, what: str) -> tuple[int, int, int]:
    """The 3D size of a volume; trailing length-1 dimensions (X, Y, Z, 1) are accepted as 3D."""
    shape = tuple(int(s) for s in image.shape)
    if len(shape) > 3 and any(s != 1 for s in shape[3:]):
        raise DataError(case_id, path, "4D", f"{what} file {path} is 4D {shape}, expected one 3D volume.",
                        "split it into one 3D file per modality (or per time point) and list them separately.")
    if len(shape) < 3 or any(s < 2 for s in shape[:3]):
        raise DataError(case_id, path, "2D", f"{what} file {path} is 2D {shape}, expected a 3D volume.",
                        "use the full 3D volume (all slices), not a single slice.")
    return shape[:3]  # type: ignore[return-value]


def _slope(path: Path) -> str:
    try:
        return f"{float(nib.load(str(path)).dataobj.slope):g}"
    except (AttributeError, TypeError, ValueError):
        return "unknown"


def read_voxels(image: nib.Nifti1Image, path: Path, case_id: str, what: str) -> np.ndarray:
    """The voxels as stored (integer types stay integer), reshaped to 3D; colour (RGB) voxels are refused."""
    shape = spatial_shape(image, path, case_id, what)
    if image.get_data_dtype().fields:  # NIfTI RGB24/RGBA32: a screenshot-like export, not an MR intensity
        raise DataError(case_id, path, "colour", f"{what} file {path} holds colour (RGB) voxels, not intensities.",
                        "export the sequence as a single-channel (greyscale) NIfTI from the scanner's or "
                        "viewer's original data.")
    try:
        return np.asanyarray(image.dataobj).reshape(shape)
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise DataError(case_id, path, "unreadable", f"{what} file {path} is truncated or corrupt ({error}).",
                        "re-export or re-download the file.") from error


def check_values(array: np.ndarray, path: Path, case_id: str, what: str, allow_empty: bool = False) -> None:
    """Refuse NaN/Inf and all-zero images, which would poison the normalisation and the loss.

    A label may be empty (a case without tumour), so `allow_empty` is set for labels.
    """
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        count = int(array.size - np.isfinite(array).sum())
        raise DataError(case_id, path, "non-finite", f"{what} file {path} has {count} NaN or infinite voxels.",
                        "replace them (e.g. with 0) in the tool that produced the file, then re-export it.")
    peak = float(np.abs(array).max()) if array.dtype.kind == "f" and array.size else 0.0
    if peak > FLOAT32_LIMIT:
        raise DataError(case_id, path, "overflow", f"{what} file {path} has values up to "
                        f"{peak:.3g}, too large for float32 arithmetic (the header's scl_slope "
                        f"is {_slope(path)}).", "re-export the file with its real intensity scaling "
                        "(scl_slope 1 or the scanner's value).")
    if not allow_empty and not array.any():
        raise DataError(case_id, path, "empty", f"{what} file {path} is empty (every voxel is 0).",
                        "re-export the volume; an all-zero file usually means a failed conversion.")


def copy_error(case: Case, modality: str, voxels: np.ndarray, digests: dict[str, str]) -> DataError | None:
    """The error for a sequence whose file holds the voxels of one read before it (a copy, which a model reads as
    tumour), or None; `digests` (modality -> SHA-256 of its voxels) gains this one's."""
    digest = hashlib.sha256(np.ascontiguousarray(voxels).data).hexdigest()
    copied = next((m for m, seen in digests.items() if seen == digest), None)
    digests[modality] = digest
    if copied is None:
        return None
    path = case.images[modality]
    return DataError(case.case_id, path, "identical", f"{modality} file {path} holds the same voxels as the "
                     f"{copied} file {case.images[copied]}: one sequence was copied over another.",
                     f"give the real {modality} file, or leave it out (a model that takes a missing sequence, "
                     "--missing or --fill-missing, segments without it).")


LABEL_LIKE_VALUES = 8  # an MR image has hundreds of distinct values; a label map (a `-seg` file) a handful


def check_image_values(array: np.ndarray, path: Path, case_id: str, what: str) -> None:
    """Refuse what cannot be an MR image of the case: one value everywhere, or a handful of whole numbers (a label
    map given as a sequence). Both were segmented as tens of mL of tumour."""
    check_values(array, path, case_id, what)
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise DataError(case_id, path, "constant", f"{what} file {path} holds one value ({low:g}) everywhere, not "
                        "an image.", "re-export the sequence; a constant volume usually means a failed conversion.")
    sample = np.unique(array.ravel()[::97])  # a cheap first look; the whole volume only when it looks like labels
    if sample.size <= LABEL_LIKE_VALUES and np.array_equal(sample, np.rint(sample)):
        values = np.unique(array)
        if values.size <= LABEL_LIKE_VALUES and np.array_equal(values, np.rint(values)):
            raise DataError(case_id, path, "label-like", f"{what} file {path} holds only the values "
                            f"{', '.join(f'{v:g}' for v in values)}: a label map (segmentation), not an MR image.",
                            f"give the {what} image file; a label map is the case's -seg file.")


def normalize(array: np.ndarray, method: str = DEFAULT_NORMALIZATION) -> np.ndarray:
    """Per-modality intensity normalisation (float32).

    zscore-nonzero: mean/std over non-zero voxels only, so the zero background of skull-stripped BraTS volumes
    does not shift the statistics, and zeros stay 0. zscore: over all voxels. max: divide by the maximum (as
    the paper authors' code does). none: unchanged.
    """
    array = array.astype(np.float32, copy=True)
    if method == "none":
        return array
    if method == "max":
        peak = float(np.abs(array).max())
        return array / peak if peak > 0 else array
    if method == "zscore":
        return (array - array.mean()) / max(float(array.std()), 1e-8)
    if method == "zscore-nonzero":
        inside = array != 0
        values = array[inside]
        array[inside] = (values - values.mean()) / max(float(values.std()), 1e-8)
        return array
    raise EmimError(f"unknown normalisation {method!r}; choose one of {NORMALIZATIONS}.")


@dataclass
class LoadedCase:
    """A case ready for a model, plus what is needed to put results back on the reference file's grid."""

    case_id: str
    image: np.ndarray  # float32 (C, X, Y, Z), canonical voxel order, channels in the requested modality order
    label: np.ndarray | None  # uint8 (X, Y, Z), canonical voxel order
    reference: Path  # file of the reference modality
    affine: np.ndarray  # 4x4 affine of the reference file (its on-disk voxel order)
    spacing: tuple[float, float, float]  # canonical-order spacing in mm
    inside: np.ndarray | None = None  # bool (X, Y, Z): some modality's raw intensity is non-zero (the brain, for
    # skull-stripped data), read before normalisation so that it holds whatever the normalisation

    def to_reference(self, array: np.ndarray) -> np.ndarray:
        """Canonical-order (..., X, Y, Z) -> the reference file's on-disk voxel order."""
        return from_canonical(array, self.affine)

    def image_like_reference(self, array: np.ndarray, dtype=np.float32) -> nib.Nifti1Image:
        """A canonical (X, Y, Z) or (C, X, Y, Z) array as a NIfTI image on the reference grid.

        The reference's header is copied, so its qform and sform (and their codes) are kept exactly; channels
        become the 4th NIfTI dimension.
        """
        reference = nib.load(str(self.reference))
        data = self.to_reference(np.asarray(array))
        if data.shape[-3:] != tuple(reference.shape[:3]):
            raise ValueError(f"array of shape {np.shape(array)} does not match the reference grid {reference.shape}")
        if data.ndim == 4:
            data = np.moveaxis(data, 0, -1)
        header = reference.header.copy()
        header.set_data_dtype(dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"] = header["cal_max"] = 0
        return nib.Nifti1Image(np.asarray(data, dtype=dtype), None, header)

    def save_like_reference(self, array: np.ndarray, path: Path, dtype=np.float32) -> None:
        """Write `image_like_reference` to `path` (`atomic_write`); gzipped when the name ends in .gz."""
        from emim.atomic_write import write_file

        write_file(Path(path), nifti_bytes(self.image_like_reference(array, dtype), path))


def nifti_bytes(image: nib.Nifti1Image, path: Path) -> bytes:
    """The bytes of `image` as a file named `path`: gzipped when it ends in .gz, at nibabel's level 1 but with gzip
    time 0, so equal images give equal files. Bytes, because nibabel only writes to a name (following a planted
    link); `atomic_write` writes them."""
    data = image.to_bytes()
    return gzip.compress(data, compresslevel=1, mtime=0) if str(path).endswith(".gz") else data


def _load_volume(path: Path, case_id: str, what: str) -> tuple[np.ndarray, Grid]:
    """One 3D volume, checked, as float32 in canonical order, with its canonical grid."""
    image = open_image(path, case_id, what)
    voxels = read_voxels(image, path, case_id, what)
    if what == "label":
        check_values(voxels, path, case_id, what, allow_empty=True)
    else:
        check_image_values(voxels, path, case_id, what)
    affine = image.affine
    return to_canonical(voxels.astype(np.float32), affine), canonical_grid(affine, voxels.shape)


def _on_reference(array: np.ndarray, grid: Grid, target: Grid, path: Path, reference: Path, case_id: str,
                  what: str, do_resample: bool, nearest: bool) -> np.ndarray:
    """The array itself when grids match, resampled in physical space when asked, otherwise an error."""
    differences = grid_differences(grid, target)
    if not differences:
        return array
    if not do_resample:
        raise DataError(case_id, path, "grid", f"{what} file {path} is on another grid than the reference "
                        f"{reference} ({'; '.join(differences)}).",
                        "pass --resample (resample=True) to resample it onto the reference in physical space, "
                        "or register/resample the files so that they share one grid.")
    resampled = resample_onto(array, grid, target, nearest=nearest)
    if not resampled.any():
        raise DataError(case_id, path, "grid", f"{what} file {path} does not overlap the reference {reference} in "
                        "physical space; resampling leaves it empty.", "check that the files belong to the same "
                        "subject and are registered (their origins and directions must place them together).")
    return resampled


def load_case(case: Case, modalities: Sequence[str], normalization: str = DEFAULT_NORMALIZATION,
              resample: bool = False, with_label: bool = True) -> LoadedCase:
    """Read, check, reorient, (optionally) resample and normalise the requested modalities of one case.

    The first requested modality is the reference: its grid is the case's grid and its file is what outputs
    are saved like. Problems raise `DataError` (an EmimError) naming the case, the file and the fix. A DICOM case's
    series are converted here, on first use (`emim.data.dicom.convert_case`).
    """
    if normalization not in NORMALIZATIONS:
        raise EmimError(f"unknown normalisation {normalization!r}; choose one of {NORMALIZATIONS}.")
    if not modalities:
        raise EmimError("no modalities requested; give at least one, e.g. t1n,t1c,t2w,t2f.")
    for modality in modalities:
        if modality in case.ambiguous:
            files = ", ".join(str(f) for f in case.ambiguous[modality])
            raise DataError(case.case_id, None, "ambiguous", f"several files match modality {modality}: {files}.",
                            "rename or remove all but one of them.")
    case.check_usable()
    convert_case(case.case_id, case.images, case.dicom, modalities)
    reference = case.images.get(modalities[0])
    channels = []
    digests: dict[str, str] = {}  # modality -> SHA-256 of its voxels, to find a sequence copied over another
    inside: np.ndarray | None = None
    target: Grid | None = None
    for modality in modalities:
        path = case.images.get(modality)
        if path is None:
            raise missing_error(case, modality)
        array, grid = _load_volume(path, case.case_id, modality)
        if target is None:
            target = grid
        else:
            array = _on_reference(array, grid, target, path, reference, case.case_id, modality, resample, False)
        copied = copy_error(case, modality, array, digests)
        if copied is not None:
            raise copied
        inside = (array != 0) if inside is None else inside | (array != 0)
        channels.append(normalize(array, normalization))
    label = None
    if with_label and case.label is not None:
        array, grid = _load_volume(case.label, case.case_id, "label")
        array = _on_reference(array, grid, target, case.label, reference, case.case_id, "label", resample, True)
        label = _as_label(array, case.label, case.case_id)
    return LoadedCase(case.case_id, np.stack(channels), label, reference, nib.load(str(reference)).affine,
                      target.spacing, inside)


def _as_label(array: np.ndarray, path: Path, case_id: str) -> np.ndarray:
    rounded = np.rint(array)
    if np.any(np.abs(array - rounded) > 1e-3) or rounded.min() < 0 or rounded.max() > 255:
        raise DataError(case_id, path, "label-values", f"label file {path} has values that are not integers in "
                        "0..255.", "save the segmentation as an integer label map (one value per class).")
    return rounded.astype(np.uint8)
