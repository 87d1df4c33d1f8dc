"""DICOM input: a case is a folder of DICOM series, one series per sequence, read with SimpleITK (GDCM).

Series are found in the folder and its subfolders and grouped by study: one case per StudyInstanceUID and PatientID
(two patients filed under one study stay apart), named after the folder when it holds one study, else
`<PatientID>_<StudyDate>_<end of the study UID>`. A series is assigned to a modality by its SeriesDescription, else
its ProtocolName, with the modality patterns that assign file names (the model's or the data set's, so they are
configured the same way: BraTS short names t1n/t1c/t2w/t2f and the usual scanner descriptions such as
"AX T1 POST GD", "T2 FLAIR" or "T2W TSE" match by default); series that match nothing (a localiser, DWI) and series
of another modality than MR (a SEG, an SR) are left out; two series matching one modality, or one series split
across folders, are refused.

A case's series are converted when the case is loaded (`convert_case`, from `load_case` and `check_case`), not when
it is found, so a study that cannot be read is that case's error and the rest of a batch goes on. Every series is
checked before any pixel is read (single-frame slices, one orientation, no gantry tilt, uniform slice spacing, at
least two slices, no damaged DICOM file beside its slices, a bounded size that each file can hold), then converted
once to NIfTI in a private temporary folder removed when the process ends (or, should it be killed, by the next
process), so the rest of the engine reads it as it reads any NIfTI input and outputs land on the series' grid
(SimpleITK's LPS geometry, written as the NIfTI affine). `Case.dicom` keeps which series stands behind each
modality: the run report names it, DICOM SEG output references it, and the preprocessing cache keys on it.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emim.data.modalities import ModalitySpec, match_modalities
from emim.errors import DataError, EmimError

TAGS = {"study": "0020|000d", "series": "0020|000e", "description": "0008|103e", "protocol": "0018|1030",
        "patient": "0010|0020", "date": "0008|0020", "position": "0020|0032", "orientation": "0020|0037",
        "frames": "0028|0008", "tilt": "0018|1120", "modality": "0008|0060", "bits": "0028|0100"}
SPACING_TOLERANCE = 0.01  # relative: slice gaps may differ by 1% (DICOM positions are rounded decimal strings)
# The reader allocates what the headers declare before it reads a pixel: a slice declaring 12000 x 12000 took 14 GB
# for a minute. An MR slice has at most about 1024 pixels a side, an MPRAGE at 0.5 mm about 105 M voxels.
MAX_SLICE_SIDE = 4096
MAX_SERIES_VOXELS = 2**28
# Transfer syntaxes whose pixel data is stored as is (implicit VR, explicit VR little and big endian): such a file
# holds at least Rows x Columns x SamplesPerPixel x BitsAllocated/8 bytes. A file without one is implicit VR.
UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
MR_IMAGES = ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1")  # MR and enhanced MR image SOP classes
PREAMBLE = 128  # bytes before "DICM" at the start of a DICOM file; then the file meta group (0002)
META_BYTES = 4096  # the file meta group is read from this many first bytes
LONG_VRS = (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
CONVERSIONS = "emim-dicom-"  # + process id: a process's conversion folder, in the temporary folder
CONVERSION_MARK = ".emim-dicom"  # in each conversion folder: only marked folders are ever removed by another process
RE_EXPORT = "re-export the series from the scanner or PACS"


@dataclass(frozen=True)
class DicomSeries:
    """One series: its identity, what it is called, its slice files in slice order, and DICOM image files in its
    folder that GDCM put in no series (damaged: reading the series without them would leave slices out)."""

    uid: str
    study: str
    description: str
    protocol: str
    patient: str
    date: str
    files: tuple[Path, ...]
    damaged: tuple[Path, ...] = ()

    @property
    def name(self) -> str:
        """What the modality patterns read: the description, else the protocol name."""
        return self.description or self.protocol

    def sha256(self) -> str:
        """One digest over the series' files in slice order (the run report's input checksum)."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def to_report(self) -> dict[str, object]:
        return {"series_instance_uid": self.uid, "series_description": self.description,
                "protocol_name": self.protocol, "folder": str(self.files[0].parent), "files": len(self.files),
                "sha256": self.sha256()}


def _reader(path: Path):
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise EmimError(f"DICOM file {path} cannot be read ({str(error).strip().splitlines()[-1]}). Remove it from "
                        "the folder, re-export the series, or convert it with dcm2niix.") from None
    return reader


def _tag(reader, key: str) -> str:
    tag = TAGS[key]
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


def _file_meta(path: Path) -> dict[int, str] | None:
    """The file meta elements of a DICOM file as {element of group 0002: value} (0x02 the SOP class, 0x10 the
    transfer syntax), as far as they can be read; None when the file does not start like DICOM (a preamble and
    "DICM"). SimpleITK does not give them, and the group is always explicit VR little endian."""
    try:
        with open(path, "rb") as file:
            data = file.read(META_BYTES)
    except OSError:
        return None
    if data[PREAMBLE:PREAMBLE + 4] != b"DICM":
        return None
    meta, offset = {}, PREAMBLE + 4
    while offset + 8 <= len(data) and data[offset:offset + 2] == b"\x02\x00":
        element = int.from_bytes(data[offset + 2:offset + 4], "little")
        if data[offset + 4:offset + 6] in LONG_VRS:
            length, offset = int.from_bytes(data[offset + 8:offset + 12], "little"), offset + 12
        else:
            length, offset = int.from_bytes(data[offset + 6:offset + 8], "little"), offset + 8
        meta[element] = data[offset:offset + length].rstrip(b"\0 ").decode("ascii", "replace")
        offset += length
    return meta


def _damaged(path: Path) -> bool:
    """A file that starts like DICOM and is an MR image, or is cut before saying what it is: outside every series
    it can only be a damaged slice (reports, presentation states and DICOMDIR files are other SOP classes)."""
    meta = _file_meta(path)
    return meta is not None and (0x02 not in meta or meta[0x02] in MR_IMAGES)


def find_series(folder: Path) -> list[DicomSeries]:
    """Every DICOM series under `folder` (GDCM's grouping per directory, files in GDCM's slice order)."""
    import SimpleITK as sitk

    series = []
    warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns about every folder without a series
    try:
        for directory in sorted({folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.name.startswith("."))}):
            grouped = {uid: tuple(Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), uid))
                       for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory))}
            in_series = {path.name for files in grouped.values() for path in files}
            damaged = tuple(p for p in sorted(directory.iterdir())
                            if p.name not in in_series and p.is_file() and _damaged(p))
            if damaged and not grouped:  # no series to make it the error of
                raise EmimError(f"DICOM file {damaged[0]} is damaged or cut short, and no readable series is in its "
                                f"folder. Remove it, or {RE_EXPORT}.")
            for uid, files in grouped.items():
                first = _reader(files[0])
                if _tag(first, "modality") not in ("", "MR"):  # a SEG, SR or other modality's series
                    continue
                series.append(DicomSeries(uid, _tag(first, "study"), _tag(first, "description"),
                                          _tag(first, "protocol"), _tag(first, "patient"), _tag(first, "date"), files,
                                          damaged))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings)
    return series


def _numbers(text: str, count: int) -> list[float] | None:
    """A DICOM multi-value decimal string as `count` finite floats, or None when it is not one."""
    try:
        values = [float(v) for v in text.split("\\")]
    except ValueError:
        return None
    return values if len(values) == count and all(np.isfinite(values)) else None


def _check_sizes(series: DicomSeries, readers: Sequence, case_id: str, what: str) -> None:
    """Refuse slices that declare more pixels than any MR slice, a series past MAX_SERIES_VOXELS, and an
    uncompressed file shorter than its declared pixels: the reader would allocate it all, or read garbage."""
    voxels = 0
    for path, reader in zip(series.files, readers):
        columns, rows = reader.GetSize()[:2]
        if max(rows, columns) > MAX_SLICE_SIDE:
            raise DataError(case_id, path, "dicom", f"{what}: file {path} declares {rows} x {columns} pixels, more "
                            f"than the {MAX_SLICE_SIDE} x {MAX_SLICE_SIDE} accepted (an MR slice has about 1024 at "
                            "most); its header is damaged.", f"{RE_EXPORT}.")
        voxels += rows * columns
        syntax = (_file_meta(path) or {}).get(0x10, "")
        needed = rows * columns * reader.GetNumberOfComponents() * int(_tag(reader, "bits") or 0) // 8
        if (not syntax or syntax in UNCOMPRESSED) and path.stat().st_size < needed:
            raise DataError(case_id, path, "dicom", f"{what}: file {path} declares {rows} x {columns} pixels "
                            f"({needed} bytes uncompressed) but holds {path.stat().st_size} bytes: its header does "
                            "not match its pixel data.", f"{RE_EXPORT}.")
    if voxels > MAX_SERIES_VOXELS:
        raise DataError(case_id, series.files[0].parent, "dicom", f"{what} declares {voxels} voxels, more than the "
                        f"{MAX_SERIES_VOXELS} accepted.", f"{RE_EXPORT}, or convert it with dcm2niix, crop or "
                        "downsample the NIfTI file and give that instead.")


def check_series(series: DicomSeries, case_id: str) -> None:
    """Refuse a series the engine would read wrongly: a damaged file beside its slices, sizes its files cannot hold,
    multi-frame, mixed orientations, gantry tilt, uneven slice spacing, a single slice. Only headers are read."""
    fix = ("convert it with dcm2niix (it corrects tilt and uneven spacing or splits the series) and give the "
           f"NIfTI file instead, or {RE_EXPORT}.")
    folder = series.files[0].parent
    what = f"DICOM series '{series.name}' ({series.uid}, {folder})"
    if series.damaged:
        raise DataError(case_id, series.damaged[0], "dicom", f"{what}: the DICOM image file {series.damaged[0]} "
                        "beside its slices is in no readable series: it is damaged or cut short, and the series "
                        "read without it would miss a slice.", f"remove it if it is no slice of this series, or "
                        f"{RE_EXPORT}.")
    readers = [_reader(path) for path in series.files]
    _check_sizes(series, readers, case_id, what)

    def refuse(problem: str) -> DataError:
        return DataError(case_id, folder, "dicom", f"{what} {problem}", fix)

    if any(_numbers(_tag(r, "frames") or "1", 1) != [1] for r in readers):
        raise refuse("holds multi-frame (enhanced) images, which are not read.")
    if len(series.files) < 2:
        raise refuse("has a single slice; a 3D volume is needed.")
    orientations = {_tag(r, "orientation") for r in readers}
    if len(orientations) != 1:
        raise refuse(f"mixes {len(orientations)} slice orientations.")
    cosines = _numbers(orientations.pop(), 6)
    positions = [_numbers(_tag(r, "position"), 3) for r in readers]
    if cosines is None or any(p is None for p in positions):
        raise refuse("lacks the slice position or orientation (ImagePositionPatient, ImageOrientationPatient), so "
                     "its geometry is unknown; a secondary capture or screenshot series cannot be used.")
    tilt = _numbers(_tag(readers[0], "tilt") or "0", 1)
    if tilt is None or abs(tilt[0]) > 1e-3:
        raise refuse(f"was acquired with a gantry tilt ({_tag(readers[0], 'tilt')} degrees).")
    cosines = np.array(cosines).reshape(2, 3)
    normal = np.cross(cosines[0], cosines[1])
    positions = np.array(positions)
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    if np.abs(steps - along[:, None] * normal).max() > SPACING_TOLERANCE * max(np.abs(along).max(), 1e-6):
        raise refuse("has slices shifted within their plane (a gantry tilt or a sheared stack).")
    if np.abs(along).min() < 1e-6 or np.ptp(along) > SPACING_TOLERANCE * np.abs(along).mean():
        raise refuse(f"has uneven slice spacing ({np.abs(along).min():.3g} to {np.abs(along).max():.3g} mm).")


def _sweep_conversions() -> None:
    """Remove the conversion folders that processes killed before their exit handler (kill -9) left behind: only
    marked folders named after a process that no longer runs, never anything else in the temporary folder."""
    import psutil

    for folder in Path(tempfile.gettempdir()).glob(f"{CONVERSIONS}*"):
        owner = re.fullmatch(rf"{re.escape(CONVERSIONS)}(\d+)-.+", folder.name)
        try:
            marked = not folder.is_symlink() and (folder / CONVERSION_MARK).is_file()
        except OSError:  # another user's private folder
            continue
        if owner and marked and not psutil.pid_exists(int(owner.group(1))):
            shutil.rmtree(folder, ignore_errors=True)


_converted: Path | None = None


def _conversion_folder() -> Path:
    """This process's private folder for converted series, removed when it ends; named after the process and
    marked, so that the next process removes it should this one be killed."""
    global _converted
    if _converted is None:
        _sweep_conversions()
        _converted = Path(tempfile.mkdtemp(prefix=f"{CONVERSIONS}{os.getpid()}-"))
        (_converted / CONVERSION_MARK).touch()
        atexit.register(shutil.rmtree, _converted, True)
    return _converted


def convert_series(series: DicomSeries, path: Path, case_id: str) -> Path:
    """Read the series with SimpleITK and write it as one NIfTI volume on its own grid."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise DataError(case_id, series.files[0].parent, "dicom", f"DICOM series '{series.name}' "
                        f"({series.files[0].parent}) cannot be read ({str(error).strip().splitlines()[-1]}).",
                        "re-export it, or convert it with dcm2niix.") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}")  # renamed once written whole: a failed write is no conversion
    sitk.WriteImage(image, str(partial))
    partial.replace(path)
    return path


def convert_case(case_id: str, images: Mapping[str, Path], dicom: Mapping[str, DicomSeries],
                 modalities: Sequence[str]) -> None:
    """Check, then convert, a case's DICOM series (`Case.dicom`) of `modalities` that are not converted yet to the
    files its `images` name (nothing for a NIfTI case). Run when the case is loaded, so that a study that cannot be
    read is that case's error; every series is checked before any is read."""
    pending = {m: dicom[m] for m in modalities if m in dicom and not images[m].exists()}
    for series in pending.values():
        check_series(series, case_id)
    for modality, series in pending.items():
        convert_series(series, images[modality], case_id)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"


@dataclass(frozen=True)
class DicomCase:
    """One study of one patient as a case: its id, the NIfTI file each modality is converted to when the case is
    loaded (`convert_case`), and the series behind each."""

    case_id: str
    images: dict[str, Path]
    series: dict[str, DicomSeries]
    problem: tuple[str, str] | None = None  # (what is wrong, the fix) when the study's series cannot be matched


def dicom_cases(folder: Path, spec: ModalitySpec) -> list[DicomCase]:
    """The DICOM cases under `folder` (see the module docstring); [] when it holds no DICOM series."""
    studies: dict[tuple[str, str], list[DicomSeries]] = {}
    for series in find_series(folder):
        studies.setdefault((series.study, series.patient), []).append(series)
    cases = []
    for study in sorted(studies.values(), key=lambda s: (s[0].date, s[0].study, s[0].patient)):
        first = study[0]
        case_id = _safe(folder.name) if len(studies) == 1 else _safe(f"{first.patient}_{first.date}_{first.study[-8:]}")
        chosen, problem = _match_study(study, spec, folder)
        if problem is not None:  # this study's error, said when it is used; the other studies go on
            cases.append(DicomCase(case_id, {}, {}, problem))
            continue
        target = Path(tempfile.mkdtemp(dir=_conversion_folder())) / case_id  # one folder per call: never reused
        cases.append(DicomCase(case_id, {m: target / f"{case_id}-{m}.nii.gz" for m in chosen}, chosen))
    return cases


def _match_study(study: Sequence[DicomSeries], spec: ModalitySpec, folder: Path
                 ) -> tuple[dict[str, DicomSeries], tuple[str, str] | None]:
    """The series of each modality, or why the study cannot be matched: (what is wrong, the fix)."""
    chosen: dict[str, DicomSeries] = {}
    for modality, names in match_modalities(sorted({s.name for s in study}), spec).items():
        candidates = [s for s in study if s.name in names]  # two series may share one description
        if len(candidates) > 1 and len({c.uid for c in candidates}) == 1:  # found once per folder it is in
            return {}, (f"DICOM series '{candidates[0].name}' ({candidates[0].uid}) is split across the folders "
                        f"{', '.join(str(c.files[0].parent) for c in candidates)}.", "move all its files into one "
                        "folder.")
        if len(candidates) > 1:
            listed = "; ".join(f"'{c.name}' ({c.uid}, {c.files[0].parent})" for c in candidates)
            return {}, (f"several DICOM series match {modality}: {listed}.", "keep one of them in the folder, or "
                        "give the files explicitly (--image NAME=FILE after converting).")
        if candidates:
            chosen[modality] = candidates[0]
    if not chosen:
        found = ", ".join(f"'{s.name}'" for s in study) or "none"
        return {}, (f"no DICOM series in {folder} matches a modality ({', '.join(spec.names)}); the series are "
                    f"called {found}.", "give each series a description that names its sequence (e.g. 'AX T1 POST "
                    "GD', 'T2 FLAIR'), or convert them to NIfTI and pass --image NAME=FILE.")
    return chosen, None
