"""DICOM input: a case is a folder of DICOM series, one series per sequence, read with SimpleITK (GDCM).

Series are found in the folder and its subfolders and grouped by study: one case per StudyInstanceUID, named after
the folder when it holds one study, else `<PatientID>_<StudyDate>`. A series is assigned to a modality by its
SeriesDescription, else its ProtocolName, with the modality patterns that assign file names (the model's or the
data set's, so they are configured the same way: BraTS short names t1n/t1c/t2w/t2f and the usual scanner
descriptions such as "AX T1 POST GD", "T2 FLAIR" or "T2W TSE" match by default); series that match nothing (a
localiser, DWI) and series of another modality than MR (a SEG, an SR) are left out; two series matching one
modality, or one series split across folders, are refused.

Every matched series is checked before it is read (single-frame slices, one orientation, no gantry tilt, uniform
slice spacing, at least two slices), then converted once to NIfTI in a private temporary folder removed when the
process ends, so the rest of the engine reads it as it reads any NIfTI input and outputs land on the series'
grid (SimpleITK's LPS geometry, written as the NIfTI affine). `Case.dicom` keeps which series stands behind each
modality: the run report names it, and DICOM SEG output references it.
"""

from __future__ import annotations

import atexit
import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emim.data.modalities import ModalitySpec, match_modalities
from emim.errors import EmimError

TAGS = {"study": "0020|000d", "series": "0020|000e", "description": "0008|103e", "protocol": "0018|1030",
        "patient": "0010|0020", "date": "0008|0020", "position": "0020|0032", "orientation": "0020|0037",
        "frames": "0028|0008", "tilt": "0018|1120", "modality": "0008|0060"}
SPACING_TOLERANCE = 0.01  # relative: slice gaps may differ by 1% (DICOM positions are rounded decimal strings)


@dataclass(frozen=True)
class DicomSeries:
    """One series: its identity, what it is called, and its slice files in slice order."""

    uid: str
    study: str
    description: str
    protocol: str
    patient: str
    date: str
    files: tuple[Path, ...]

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


def find_series(folder: Path) -> list[DicomSeries]:
    """Every DICOM series under `folder` (GDCM's grouping per directory, files in GDCM's slice order)."""
    import SimpleITK as sitk

    series = []
    warnings = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # GDCM warns about every folder without a series
    try:
        for directory in sorted({folder, *(p for p in folder.rglob("*") if p.is_dir() and not p.name.startswith("."))}):
            for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory)):
                files = tuple(Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), uid))
                first = _reader(files[0])
                if _tag(first, "modality") not in ("", "MR"):  # a SEG, SR or other modality's series
                    continue
                series.append(DicomSeries(uid, _tag(first, "study"), _tag(first, "description"),
                                          _tag(first, "protocol"), _tag(first, "patient"), _tag(first, "date"), files))
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


def check_series(series: DicomSeries, case_id: str) -> None:
    """Refuse a series the engine would read wrongly: multi-frame, mixed orientations, gantry tilt, uneven
    slice spacing, a single slice. Only the headers are read."""
    fix = ("convert it with dcm2niix (it corrects tilt and uneven spacing or splits the series) and give the "
           "NIfTI file instead, or re-export the series from the scanner or PACS.")
    what = f"case {case_id}: DICOM series '{series.name}' ({series.uid}, {series.files[0].parent})"
    readers = [_reader(path) for path in series.files]
    if any(_numbers(_tag(r, "frames") or "1", 1) != [1] for r in readers):
        raise EmimError(f"{what} holds multi-frame (enhanced) images, which are not read. Fix: {fix}")
    if len(series.files) < 2:
        raise EmimError(f"{what} has a single slice; a 3D volume is needed. Fix: {fix}")
    orientations = {_tag(r, "orientation") for r in readers}
    if len(orientations) != 1:
        raise EmimError(f"{what} mixes {len(orientations)} slice orientations. Fix: {fix}")
    cosines = _numbers(orientations.pop(), 6)
    positions = [_numbers(_tag(r, "position"), 3) for r in readers]
    if cosines is None or any(p is None for p in positions):
        raise EmimError(f"{what} lacks the slice position or orientation (ImagePositionPatient, "
                        "ImageOrientationPatient), so its geometry is unknown; a secondary capture or screenshot "
                        f"series cannot be used. Fix: {fix}")
    tilt = _numbers(_tag(readers[0], "tilt") or "0", 1)
    if tilt is None or abs(tilt[0]) > 1e-3:
        raise EmimError(f"{what} was acquired with a gantry tilt ({_tag(readers[0], 'tilt')} degrees). Fix: {fix}")
    cosines = np.array(cosines).reshape(2, 3)
    normal = np.cross(cosines[0], cosines[1])
    positions = np.array(positions)
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    if np.abs(steps - along[:, None] * normal).max() > SPACING_TOLERANCE * max(np.abs(along).max(), 1e-6):
        raise EmimError(f"{what} has slices shifted within their plane (a gantry tilt or a sheared stack). "
                        f"Fix: {fix}")
    if np.abs(along).min() < 1e-6 or np.ptp(along) > SPACING_TOLERANCE * np.abs(along).mean():
        raise EmimError(f"{what} has uneven slice spacing ({np.abs(along).min():.3g} to {np.abs(along).max():.3g} "
                        f"mm). Fix: {fix}")


_converted: Path | None = None


def _conversion_folder() -> Path:
    """This process's private folder for converted series, removed when it ends."""
    global _converted
    if _converted is None:
        _converted = Path(tempfile.mkdtemp(prefix="emim-dicom-"))
        atexit.register(shutil.rmtree, _converted, True)
    return _converted


def convert_series(series: DicomSeries, path: Path) -> Path:
    """Read the series with SimpleITK and write it as one NIfTI volume on its own grid."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in series.files])
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise EmimError(f"DICOM series '{series.name}' ({series.files[0].parent}) cannot be read "
                        f"({str(error).strip().splitlines()[-1]}). Re-export it, or convert it with dcm2niix.") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "case"


@dataclass(frozen=True)
class DicomCase:
    """One study as a case: its id, the converted NIfTI file per modality, and the series behind each."""

    case_id: str
    images: dict[str, Path]
    series: dict[str, DicomSeries]


def dicom_cases(folder: Path, spec: ModalitySpec) -> list[DicomCase]:
    """The DICOM cases under `folder` (see the module docstring); [] when it holds no DICOM series."""
    studies: dict[str, list[DicomSeries]] = {}
    for series in find_series(folder):
        studies.setdefault(series.study, []).append(series)
    cases = []
    for study in sorted(studies.values(), key=lambda s: (s[0].date, s[0].study)):
        first = study[0]
        case_id = _safe(folder.name) if len(studies) == 1 else _safe(f"{first.patient}_{first.date}_{first.study[-8:]}")
        matched = match_modalities(sorted({s.name for s in study}), spec)
        chosen: dict[str, DicomSeries] = {}
        for modality, names in matched.items():
            candidates = [s for s in study if s.name in names]  # two series may share one description
            if len(candidates) > 1 and len({c.uid for c in candidates}) == 1:  # found once per folder it is in
                raise EmimError(f"case {case_id}: DICOM series '{candidates[0].name}' ({candidates[0].uid}) is split "
                                f"across the folders {', '.join(str(c.files[0].parent) for c in candidates)}; move "
                                "all its files into one folder.")
            if len(candidates) > 1:
                listed = "; ".join(f"'{c.name}' ({c.uid}, {c.files[0].parent})" for c in candidates)
                raise EmimError(f"case {case_id}: several DICOM series match {modality}: {listed}. Keep one of them "
                                "in the folder, or give the files explicitly (--image NAME=FILE after converting).")
            if candidates:
                chosen[modality] = candidates[0]
        target = Path(tempfile.mkdtemp(dir=_conversion_folder())) / case_id  # one folder per call: never reused
        images = {}
        for modality, series in chosen.items():
            check_series(series, case_id)
            images[modality] = convert_series(series, target / f"{case_id}-{modality}.nii.gz")
        if not images:
            found = ", ".join(f"'{s.name}'" for s in study) or "none"
            raise EmimError(f"case {case_id} ({folder}): no DICOM series matches a modality ({', '.join(spec.names)});"
                            f" the series are called {found}. Give each series a description that names its sequence "
                            "(e.g. 'AX T1 POST GD', 'T2 FLAIR'), or convert them to NIfTI and pass --image NAME=FILE.")
        cases.append(DicomCase(case_id, images, chosen))
    return cases
