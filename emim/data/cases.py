"""Find the cases of a data set: which file is which modality, and which is the label.

Three layouts are accepted, so BraTS downloads work as they come and any other modality set can be described:

1. A folder of case folders, e.g. BraTS 2023 `DATA/CASE/CASE-t1n.nii.gz ... CASE-seg.nii.gz` or BraTS 2021
   `DATA/CASE/CASE_t1.nii.gz, _t1ce, _t2, _flair, _seg`. Files are assigned by the modality patterns.
2. One case folder (a folder that directly holds NIfTI files): one case named after the folder.
3. A MONAI-style datalist JSON (paths relative to the JSON file's folder):

       {"modalities": ["t2w", "adc", "hbv"],          # or [{"name", "title", "patterns"}]; default: BraTS
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},   # optional: the expected label values
        "training": [
          {"case_id": "p001", "image": ["p001/t2w.nii.gz", "p001/adc.nii.gz", "p001/hbv.nii.gz"],
           "label": "p001/seg.nii.gz"},
          {"image": {"t2w": "p002/t2w.nii.gz", "adc": "p002/adc.nii.gz", "hbv": "p002/hbv.nii.gz"}}]}

   A list `image` is in the order of `modalities`; a dict names them. Without `case_id` the case is named after
   the first image file (its modality suffix removed), or after its folder when file names repeat across cases.

Missing files are not errors here: the Case simply lacks them, and `check_dataset`/`load_case` report them with
the file name and the fix. Only NIfTI files (.nii, .nii.gz) are read here; a folder without any NIfTI file is
searched for DICOM series (`emim.data.dicom`: one case per study and patient, series matched by their
descriptions, converted when the case is loaded).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emim.data.modalities import BRATS, ModalitySpec, match_modalities, strip_extension, token
from emim.errors import DataError, EmimError
from emim.safepaths import check_safe_name

NIFTI_SUFFIXES = (".nii.gz", ".nii")
LABEL_PATTERN = token(r"seg|segmentation|label|labels|labelmap|gt")
BRATS_LABELS = (0, 1, 2, 3)  # BraTS 2023: 1 necrotic core, 2 oedema, 3 enhancing tumour


@dataclass
class Case:
    """One subject: its image file per modality and its label file, if any."""

    case_id: str
    images: dict[str, Path]
    label: Path | None = None
    # modality (or "label") -> the files that all matched it; the case cannot be used until one is chosen
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)
    folder: Path | None = None  # the case folder (folder layouts), where a missing file is expected
    dicom: dict[str, Any] = field(default_factory=dict)  # modality -> the DicomSeries its image is converted from
    # (what is wrong, the fix) of a case found but unusable as it is (a DICOM study whose series cannot be matched):
    # said when the case is loaded, checked or segmented, so the other cases of a folder go on
    problem: tuple[str, str] | None = None

    def check_usable(self) -> None:
        """Raise the problem the case was found with, if any, as this case's DataError."""
        if self.problem is not None:
            raise DataError(self.case_id, self.folder, "dicom", *self.problem)


def is_nifti(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.name.lower().endswith(NIFTI_SUFFIXES)


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_nifti(p))


def read_datalist(path: Path) -> dict[str, Any]:
    """The parsed datalist JSON, or an EmimError that names the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EmimError(f"cannot read the datalist {path}: {error}. Fix the file (it must be JSON).") from error
    if not isinstance(data, dict) or not isinstance(data.get("training"), list):
        raise EmimError(f"datalist {path} has no 'training' list. Write it as "
                        '{"modalities": [...], "training": [{"image": [...], "label": ...}, ...]}.')
    return data


def dataset_spec(path: str | Path) -> ModalitySpec:
    """The modality set a data set declares: a datalist's `modalities`, otherwise BraTS."""
    path = Path(path)
    if path.suffix.lower() == ".json" and path.is_file():
        items = read_datalist(path).get("modalities")
        if items:
            try:
                return ModalitySpec.from_metadata(items)
            except (ValueError, TypeError, re.error) as error:
                raise EmimError(f"datalist {path}: bad 'modalities' entry: {error}") from error
    return BRATS


def expected_labels(path: str | Path, spec: ModalitySpec) -> tuple[int, ...] | None:
    """Label values a data set should contain: a datalist's `labels` keys, BraTS's for BraTS modalities, else None."""
    path = Path(path)
    if path.suffix.lower() == ".json" and path.is_file():
        labels = read_datalist(path).get("labels")
        if labels:
            return tuple(sorted(int(k) for k in labels))
    return BRATS_LABELS if set(spec.names) <= set(BRATS.names) else None


def _case_from_folder(folder: Path, spec: ModalitySpec) -> Case:
    """Assign the NIfTI files of one folder; the case id is removed from file names before matching."""
    case_id = folder.name
    files = _nifti_files(folder)
    labels = [f for f in files if re.search(LABEL_PATTERN, _short_name(f, case_id), re.IGNORECASE)]
    by_name = {_short_name(f, case_id): f for f in files if f not in labels}
    ambiguous: dict[str, list[Path]] = {}
    images: dict[str, Path] = {}
    for modality, names in match_modalities(list(by_name), spec).items():
        if len(names) == 1:
            images[modality] = by_name[names[0]]
        elif names:
            ambiguous[modality] = [by_name[n] for n in names]
    if len(labels) > 1:
        ambiguous["label"] = labels
    return Case(case_id, images, labels[0] if len(labels) == 1 else None, ambiguous, folder)


def _short_name(path: Path, case_id: str) -> str:
    name = strip_extension(path.name)
    return name[len(case_id):] if name.lower().startswith(case_id.lower()) and len(name) > len(case_id) else name


def without_suffix(stem: str, modality: str) -> str:
    """"p001_t2w" -> "p001": the case part of a file name that ends with its modality."""
    return re.sub(rf"[-_. ]?{re.escape(modality)}$", "", stem, flags=re.IGNORECASE) or stem


def _cases_from_datalist(path: Path) -> list[Case]:
    data = read_datalist(path)
    order = dataset_spec(path).names
    root = path.parent
    cases: list[Case] = []
    for index, entry in enumerate(data["training"]):
        where = f"datalist {path}, training entry {index}"
        if not isinstance(entry, dict) or "image" not in entry:
            raise EmimError(f"{where} has no 'image'. Give each entry an 'image' list or dict.")
        image = entry["image"]
        image = [image] if isinstance(image, str) else image
        if isinstance(image, list):
            if len(image) != len(order):
                raise EmimError(f"{where} lists {len(image)} images but the data set has {len(order)} modalities "
                                f"{list(order)}. List one file per modality, in that order, or use a dict.")
            image = dict(zip(order, image))
        if not isinstance(image, dict):
            raise EmimError(f"{where}: 'image' must be a list or a dict of modality -> file.")
        images = {str(m): root / str(f) for m, f in image.items()}
        label = root / str(entry["label"]) if entry.get("label") else None
        case_id = entry.get("case_id") or entry.get("id")
        if case_id:
            check_safe_name(str(case_id), f"{where}: case_id", "Give the case a plain id such as 'p001'.")
        cases.append(Case(str(case_id) if case_id else "", images, label))
    _name_cases(cases, path)
    return cases


def _name_cases(cases: list[Case], path: Path) -> None:
    """Give unnamed datalist cases a name from their first file, or from its folder when file names repeat."""
    unnamed = [c for c in cases if not c.case_id]
    for case in unnamed:
        modality, first = next(iter(case.images.items()))
        case.case_id = without_suffix(strip_extension(first.name), modality)
    if len({c.case_id for c in unnamed}) < len(unnamed):
        for case in unnamed:
            case.case_id = next(iter(case.images.values())).parent.name
    ids = [c.case_id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise EmimError(f"datalist {path}: case ids {duplicates} appear more than once. "
                        "Give every entry a unique 'case_id'.")


def find_cases(path: str | Path, spec: ModalitySpec | None = None) -> list[Case]:
    """The cases under `path` (folder of case folders, one case folder, or datalist JSON), sorted by case id.

    `spec` (default: `dataset_spec(path)`) assigns folder files to modalities; a datalist names them itself.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise EmimError(f"{path} does not exist. Give a folder of case folders, one case folder or a datalist JSON.")
    spec = spec or dataset_spec(path)
    if path.is_file():
        if path.suffix.lower() != ".json":
            raise EmimError(f"{path} is a file but not a datalist JSON. Give the folder that holds the cases.")
        cases = _cases_from_datalist(path)
    elif _nifti_files(path):
        cases = [_case_from_folder(path, spec)]
    else:
        cases = [_case_from_folder(d, spec) for d in path.iterdir()
                 if d.is_dir() and not d.name.startswith(".") and _nifti_files(d)]
    if not cases:
        from emim.data.dicom import dicom_cases

        cases = [Case(found.case_id, found.images, folder=path, dicom=found.series, problem=found.problem)
                 for found in dicom_cases(path, spec)]
    if not cases:
        raise EmimError(f"no cases found in {path}: expected case folders with NIfTI files (CASE/CASE-t1n.nii.gz, "
                        "...), one such folder, a folder of DICOM series (one series per sequence) or a datalist "
                        "JSON.")
    return sorted(cases, key=lambda c: c.case_id)
