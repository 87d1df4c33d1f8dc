"""Case-level class labels from a CSV (`case_id,label` with a header), checked against the cases of the data set.

Labels may be words ("IDH-mutant") or integers (0/1); classes are numbered in sorted order (numeric order when
every label is an integer), so the same CSV always gives the same class indices and the names are kept for the
model's metadata. Every case of the data set needs exactly one label and every labelled case must exist: a silent
mismatch would train on the wrong pairs.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emim.errors import EmimError

CASE_COLUMNS = ("case_id", "case", "id")
LABEL_COLUMNS = ("label", "class")


@dataclass(frozen=True)
class ClassLabels:
    names: tuple[str, ...]       # class index -> name
    targets: dict[str, int]      # case id -> class index


def _column(header: list[str], choices: Sequence[str], path: Path) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in choices:
        if name in lowered:
            return lowered.index(name)
    raise EmimError(f"{path} has no {choices[0]!r} column (header: {', '.join(header)}); the first line must be "
                    "a header such as `case_id,label`")


def _sort_key(names: set[str]):
    if all(name.lstrip("+-").isdigit() for name in names):
        return lambda name: (int(name), name)
    return lambda name: name


def read_class_labels(path: str | Path, case_ids: Sequence[str]) -> ClassLabels:
    """Labels of `case_ids` from the CSV at `path`; refuses unknown, missing or repeated cases and a single class."""
    path = Path(path).expanduser()
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as error:
        raise EmimError(f"cannot read the labels CSV {path} ({error}); give a UTF-8 text file `case_id,label`") \
            from None
    if not rows:
        raise EmimError(f"the labels CSV {path} is empty; write a header `case_id,label` and one line per case")
    case_col = _column(rows[0], CASE_COLUMNS, path)
    label_col = _column(rows[0], LABEL_COLUMNS, path)
    labels: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) <= max(case_col, label_col) or not row[case_col].strip() or not row[label_col].strip():
            raise EmimError(f"{path} line {line} lacks a case id or a label: {','.join(row)!r}")
        case, label = row[case_col].strip(), row[label_col].strip()
        if case in labels:
            raise EmimError(f"{path} labels case {case} twice (line {line}); keep one line per case")
        labels[case] = label
    known = set(case_ids)
    unknown = sorted(set(labels) - known)
    if unknown:
        raise EmimError(f"{path} labels case(s) not in the data set: {', '.join(unknown)}; remove those lines or "
                        "fix their ids (the case id is the case folder's name)")
    missing = sorted(known - set(labels))
    if missing:
        raise EmimError(f"{path} has no label for case(s) {', '.join(missing)}; add a line `case_id,label` for each, "
                        "or remove the case from the data set")
    names = tuple(sorted(set(labels.values()), key=_sort_key(set(labels.values()))))
    if len(names) < 2:
        raise EmimError(f"{path} has only one class ({names[0]}); a classifier needs at least two")
    index = {name: i for i, name in enumerate(names)}
    return ClassLabels(names, {case: index[label] for case, label in labels.items()})
