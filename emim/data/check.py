"""Check a data set before training: every problem names its case, its file and the fix.

Headers are read for every file (cheap); voxels are read once per file to find NaN/Inf, empty volumes and label
values (that is what costs time: about 0.15 s per 240x240x98 BraTS case on this 2-core machine).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from emim.data.cases import Case, dataset_spec, expected_labels, find_cases
from emim.data.dicom import convert_case
from emim.data.geometry import Grid, canonical_grid, grid_differences
from emim.data.loading import (check_image_values, check_values, copy_error, missing_error, open_image, read_voxels,
                               spatial_shape)
from emim.data.modalities import ModalitySpec
from emim.errors import DataError


@dataclass
class Problem:
    case_id: str
    file: Path | None
    kind: str  # missing, ambiguous, unreadable, 4D, 2D, non-finite, empty, grid, label-grid, label-values
    message: str
    fix: str
    severity: str  # "error": the case cannot be used as is; "warning": usable, but look at it

    def to_dict(self) -> dict:
        return {"case_id": self.case_id, "file": None if self.file is None else str(self.file), "kind": self.kind,
                "message": self.message, "fix": self.fix, "severity": self.severity}


@dataclass
class CaseReport:
    case_id: str
    modalities: dict[str, Path]
    shape: tuple | None  # canonical size of the reference modality
    spacing: tuple | None  # canonical spacing (mm) of the reference modality
    has_label: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_dict(self) -> dict:
        return {"case_id": self.case_id, "usable": self.usable,
                "modalities": {m: str(f) for m, f in self.modalities.items()},
                "shape": None if self.shape is None else list(self.shape),
                "spacing": None if self.spacing is None else [round(s, 4) for s in self.spacing],
                "has_label": self.has_label, "problems": [p.to_dict() for p in self.problems]}


@dataclass
class DatasetReport:
    cases: list[CaseReport]
    path: str = ""
    modalities: tuple[str, ...] = ()

    def ok(self) -> bool:
        """True when every case can be used (warnings allowed)."""
        return all(c.usable for c in self.cases)

    def summary(self) -> dict:
        return {"cases": len(self.cases), "usable": sum(c.usable for c in self.cases),
                "with_errors": sum(not c.usable for c in self.cases),
                "with_warnings": sum(any(p.severity == "warning" for p in c.problems) for c in self.cases)}

    def to_dict(self) -> dict:
        return {"path": self.path, "modalities": list(self.modalities), "ok": self.ok(), "summary": self.summary(),
                "cases": [c.to_dict() for c in self.cases]}

    def table(self) -> str:
        """A per-case table, then every problem with its fix, then the summary line."""
        rows = [("case", "modalities", "size", "spacing (mm)", "label", "status")]
        for c in self.cases:
            errors = sum(p.severity == "error" for p in c.problems)
            warnings = len(c.problems) - errors
            status = "ok" if not c.problems else ", ".join(
                t for t in (f"{errors} error(s)" if errors else "", f"{warnings} warning(s)" if warnings else "") if t)
            rows.append((c.case_id, f"{len(c.modalities)}/{len(self.modalities)}",
                         "x".join(map(str, c.shape)) if c.shape else "-",
                         "x".join(f"{s:g}" for s in c.spacing) if c.spacing else "-",
                         "yes" if c.has_label else "no", status))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
        problems = [p for c in self.cases for p in c.problems]
        if problems:
            lines.append("")
            lines += [f"{p.severity.upper()} {p.case_id}: {p.message}\n    fix: {p.fix}" for p in problems]
        s = self.summary()
        lines += ["", f"{s['cases']} case(s): {s['usable']} usable, {s['with_errors']} with errors, "
                      f"{s['with_warnings']} with warnings"]
        return "\n".join(lines)


def _problem(error: DataError, severity: str = "error") -> Problem:
    return Problem(error.case_id, error.file, error.kind, error.message, error.fix, severity)


def _label_values(array: np.ndarray) -> np.ndarray:
    """Distinct values of a label map; bincount is much faster than sorting for small integer labels."""
    if array.dtype.kind in "iub" and array.size and 0 <= array.min() and array.max() < 65536:
        return np.flatnonzero(np.bincount(array.ravel().astype(np.int64, copy=False)))
    return np.unique(array)


def _check_label(case: Case, reference: str | None, grid_of_reference: Grid | None, resample: bool,
                 tolerance: float, expected: Sequence[int] | None) -> list[Problem]:
    path, cid = case.label, case.case_id
    try:
        image = open_image(path, cid, "label")
        grid = canonical_grid(image.affine, spatial_shape(image, path, cid, "label"))
        voxels = read_voxels(image, path, cid, "label")
        check_values(voxels, path, cid, "label", allow_empty=True)
    except DataError as error:
        return [_problem(error)]
    problems = []
    differences = grid_differences(grid, grid_of_reference, tolerance) if grid_of_reference is not None else []
    if differences:
        message = (f"label file {path} is on another grid than {reference} {case.images[reference]} "
                   f"({'; '.join(differences)}).")
        if resample:
            problems.append(Problem(cid, path, "label-grid", message + " It will be resampled (nearest neighbour).",
                                    "none needed; check the result, or register the label to the images.", "warning"))
        else:
            problems.append(Problem(cid, path, "label-grid", message, "pass --resample to resample it onto the "
                                    "reference in physical space, or save the label on the image grid.", "error"))
    values = _label_values(voxels)
    if np.any(values != np.rint(values)):
        problems.append(Problem(cid, path, "label-values", f"label file {path} has non-integer values.",
                                "save the segmentation as an integer label map.", "error"))
    elif expected is not None and {int(v) for v in values} - set(expected):
        extra = sorted({int(v) for v in values} - set(expected))
        fix = "check the label definition of this data set, or relabel."
        if 4 in extra and tuple(expected) == (0, 1, 2, 3):
            fix = ("BraTS 2021 and older use 4 for enhancing tumour where BraTS 2023 uses 3: relabel 4 -> 3; "
                   "in post-treatment data 4 is the resection cavity.")
        problems.append(Problem(cid, path, "label-values", f"label file {path} has values {extra} outside the "
                                f"expected {list(expected)}.", fix, "warning"))
    return problems


def _grid_problem(case: Case, modality: str, reference: str, differences: Sequence[str], resample: bool) -> Problem:
    """A modality on another grid than the reference: an error, or with `resample` a warning that it will be."""
    path = case.images[modality]
    message = (f"{modality} file {path} is on another grid than {reference} {case.images[reference]} "
               f"({'; '.join(differences)}).")
    if resample:
        return Problem(case.case_id, path, "grid", message + " It will be resampled (linear).",
                       "none needed; check the result.", "warning")
    return Problem(case.case_id, path, "grid", message, "pass --resample to resample it onto the reference in "
                   "physical space, or register/resample the files to one grid.", "error")


def check_case(case: Case, spec: ModalitySpec, resample: bool = False, tolerance: float = 1e-3,
               label_values: Sequence[int] | None = None) -> CaseReport:
    """All problems of one case; the first modality of `spec` that opens is the reference grid."""
    cid = case.case_id
    problems = [Problem(cid, None, "ambiguous", f"several files match {what}: {', '.join(map(str, files))}.",
                        "rename or remove all but one of them.", "error")
                for what, files in case.ambiguous.items() if what in spec.names or what == "label"]
    try:
        case.check_usable()
        convert_case(cid, case.images, case.dicom, spec.names)
    except DataError as error:  # a DICOM study that cannot be matched or read: no file to check
        return CaseReport(cid, dict(case.images), None, None, case.label is not None, problems + [_problem(error)])
    images, grids = {}, {}
    for modality in spec.names:
        if modality in case.ambiguous:
            continue
        path = case.images.get(modality)
        if path is None:
            problems.append(_problem(missing_error(case, modality)))
            continue
        try:
            images[modality] = open_image(path, cid, modality)
            grids[modality] = canonical_grid(images[modality].affine,
                                             spatial_shape(images[modality], path, cid, modality))
        except DataError as error:
            images.pop(modality, None)
            problems.append(_problem(error))
    reference = next(iter(grids), None)
    digests: dict[str, str] = {}  # modality -> SHA-256 of its voxels
    for modality, grid in grids.items():
        differences = grid_differences(grid, grids[reference], tolerance)
        if differences:
            problems.append(_grid_problem(case, modality, reference, differences, resample))
        try:
            voxels = read_voxels(images[modality], case.images[modality], cid, modality)
            check_image_values(voxels, case.images[modality], cid, modality)
            copied = copy_error(case, modality, voxels, digests)
            if copied is not None:
                problems.append(_problem(copied))
        except DataError as error:
            problems.append(_problem(error))
    if case.label is not None and "label" not in case.ambiguous:
        problems += _check_label(case, reference, grids.get(reference), resample, tolerance, label_values)
    ref_grid = grids.get(reference)
    return CaseReport(cid, {m: case.images[m] for m in spec.names if m in case.images}, ref_grid and ref_grid.shape,
                      ref_grid and ref_grid.spacing, case.label is not None, problems)


def _checked(case: Case, spec: ModalitySpec, resample: bool, tolerance: float,
             expected: Sequence[int] | None) -> CaseReport:
    """`check_case`, with an unforeseen failure reported as the case's error, so every other case is still checked."""
    try:
        return check_case(case, spec, resample, tolerance, expected)
    except Exception as error:  # noqa: BLE001  (one odd file must not end the data set's check)
        problem = Problem(case.case_id, None, "unexpected", f"case {case.case_id} could not be checked: "
                          f"{type(error).__name__}: {error}.", "open its files in a viewer to see what is wrong, "
                          "or remove the case.", "error")
        return CaseReport(case.case_id, dict(case.images), None, None, case.label is not None, [problem])


def check_dataset(path: str | Path, spec: ModalitySpec | None = None, resample: bool = False,
                  tolerance: float = 1e-3, label_values: Sequence[int] | None = None,
                  on_case: Callable[[int, int, CaseReport], None] | None = None) -> DatasetReport:
    """Check every case under `path` (see `find_cases`); `label_values` default: the data set's own or BraTS's.

    `on_case(done, total, report)` is called after each case, for progress reporting.
    """
    spec = spec or dataset_spec(path)
    expected = label_values if label_values is not None else expected_labels(path, spec)
    cases = find_cases(path, spec)
    reports = []
    for case in cases:
        reports.append(_checked(case, spec, resample, tolerance, expected))
        if on_case is not None:
            on_case(len(reports), len(cases), reports[-1])
    return DatasetReport(reports, str(path), spec.names)
