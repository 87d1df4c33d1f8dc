"""Global and lesion-wise Dice and HD95 per tumour region per case, with the BraTS conventions, for `emim evaluate`.

Regions: BraTS TC = labels {1,3}, WT = {1,2,3}, ET = {3}, or the regions of a model's metadata. Global Dice and
HD95 (and their empty-mask conventions) are defined in `emim.metrics`; the lesion-wise Dice and HD95 and the
TP/FP/FN lesion counts (BraTS formula, the official package's matching) in `emim.lesions`. The official
`brats-evaluation` package gives the same counts and global Dice (bench/brats_oracle.py; README).

Pairing (PRED and GT are each a file or a folder): a file's case id is its name without the extension and without
a trailing label suffix (-seg, _seg, -label, _gt, ...), so the prediction BraTS-GLI-00360-000.nii.gz or
BraTS-GLI-00360-000-seg.nii.gz pairs with the ground truth BraTS-GLI-00360-000-seg.nii.gz; a file named only
seg/label (p001/seg.nii.gz) takes its folder's name. In a folder (searched with its sub-folders) the label maps
are the NIfTI files named so; when none is, every NIfTI file directly in the folder is one. GT may also be a
datalist JSON (as for training). Two single files are paired whatever their names. Cases found on one side only
are reported and left out of the mean.

The prediction must be on the ground truth's exact voxel grid (shape and affine); it is never resampled to fit.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emim.data.cases import find_cases, is_nifti
from emim.data.geometry import Grid, grid_differences
from emim.data.loading import open_image, read_voxels
from emim.data.modalities import strip_extension
from emim.errors import EmimError
from emim.labels import BRATS_REGIONS, labels_to_regions, region_label_values
from emim.lesions import lesion_scores
from emim.metrics import dice, hd95

_LABEL_WORD = re.compile(r"seg|segmentation|label|labels|labelmap|gt", re.IGNORECASE)
_LABEL_SUFFIX = re.compile(rf"[-_.](?:{_LABEL_WORD.pattern})$", re.IGNORECASE)


def _is_label_name(path: Path) -> bool:
    stem = strip_extension(path.name)
    return bool(_LABEL_SUFFIX.search(stem) or _LABEL_WORD.fullmatch(stem))


def case_id(path: Path) -> str:
    """BraTS-GLI-00360-000-seg.nii.gz -> BraTS-GLI-00360-000; p001/seg.nii.gz -> p001 (rule: module docstring)."""
    stem = strip_extension(path.name)
    return path.parent.name if _LABEL_WORD.fullmatch(stem) else _LABEL_SUFFIX.sub("", stem)


def label_files(path: str | Path) -> dict[str, Path]:
    """case id -> label map file, for a file, a folder or (ground truth) a datalist JSON."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix.lower() == ".json":
        return {case.case_id: case.label for case in find_cases(path) if case.label is not None}
    if path.is_file():
        if not is_nifti(path):
            raise EmimError(f"{path} is not a NIfTI file (.nii or .nii.gz); give a label map or a folder of them.")
        return {case_id(path): path}
    if not path.is_dir():
        raise EmimError(f"{path} does not exist; give a label map file or a folder of label maps.")
    files = sorted(p for p in path.rglob("*") if is_nifti(p))
    labels = [p for p in files if _is_label_name(p)]
    if not labels:
        labels = [p for p in files if p.parent == path]
    found: dict[str, Path] = {}
    for file in labels:
        key = case_id(file)
        if key in found:
            raise EmimError(f"two label maps in {path} belong to case {key}: {found[key]} and {file}. "
                            "Keep one per case, or give the files one by one.")
        found[key] = file
    if not found:
        raise EmimError(f"no label maps (NIfTI files) found in {path}.")
    return found


@dataclass
class Pairing:
    """Matched (case, prediction, ground truth) triples, and the case ids found on one side only."""

    pairs: list[tuple[str, Path, Path]]
    only_pred: list[str] = field(default_factory=list)
    only_gt: list[str] = field(default_factory=list)


def pair_cases(pred: str | Path, gt: str | Path) -> Pairing:
    """Match prediction and ground-truth label maps by case id (two single files are simply paired)."""
    preds, gts = label_files(pred), label_files(gt)
    if Path(pred).is_file() and Path(gt).is_file() and Path(gt).suffix.lower() != ".json":
        (gt_id, gt_file), (_, pred_file) = next(iter(gts.items())), next(iter(preds.items()))
        return Pairing([(gt_id, pred_file, gt_file)])
    common = sorted(set(preds) & set(gts))
    if not common:
        raise EmimError(f"no case of {pred} matches a case of {gt} (predictions: {_some(preds)}; ground truth: "
                        f"{_some(gts)}). Name each prediction after its case, e.g. CASE.nii.gz or CASE-seg.nii.gz.")
    return Pairing([(c, preds[c], gts[c]) for c in common], sorted(set(preds) - set(gts)),
                   sorted(set(gts) - set(preds)))


def _some(ids: dict[str, Path]) -> str:
    names = sorted(ids)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _read_label(path: Path, case: str, allowed: set[int]) -> tuple[np.ndarray, Grid]:
    """Voxels and grid of a label map, refusing values no region covers (e.g. BraTS <= 2021 used 4 for ET)."""
    image = open_image(path, case, "label map")
    array = read_voxels(image, path, case, "label map")
    if array.dtype.kind == "f" and not np.array_equal(array, np.rint(array)):
        raise EmimError(f"case {case}: {path} holds non-integer values; give a label map (one integer per voxel), "
                        "not a probability map.")
    outside = ~np.isin(array, sorted(allowed))
    if outside.any():
        values = np.unique(array[outside])
        raise EmimError(f"case {case}: {path} holds label values {values[:10].tolist()} that no region uses (known "
                        f"labels: {sorted(allowed)}). BraTS 2023 uses 3 for enhancing tumour (older BraTS used 4): "
                        "relabel the file, or give --labels-from a model whose labels match.")
    return array, Grid.from_affine(image.affine, array.shape)


def evaluate_case(case: str, pred_path: Path, gt_path: Path,
                  regions: list[dict[str, Any]] = BRATS_REGIONS) -> dict[str, Any]:
    """One row: case, the `score_labels` metrics, pred, gt."""
    allowed = region_label_values(regions) | {0}
    gt, gt_grid = _read_label(gt_path, case, allowed)
    pred, pred_grid = _read_label(pred_path, case, allowed)
    differences = grid_differences(pred_grid, gt_grid)
    if differences:
        raise EmimError(f"case {case}: the prediction {pred_path} is not on the grid of the ground truth {gt_path} "
                        f"({'; '.join(differences)}). Segment the case again so the output is written on the "
                        "ground truth's grid; emim never resamples label maps to make them match.")
    row = {"case": case, **score_labels(pred, gt, gt_grid.spacing, regions)}
    row.update(pred=str(pred_path), gt=str(gt_path))
    return row


def score_labels(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float, float],
                 regions: list[dict[str, Any]] = BRATS_REGIONS) -> dict[str, Any]:
    """Global and lesion-wise metrics of two label maps on one grid: {metric_region: value} (`metric_columns`)."""
    pred_regions, gt_regions = labels_to_regions(pred, regions), labels_to_regions(gt, regions)
    row: dict[str, Any] = {}
    for index, region in enumerate(regions):
        name, p, g = region["name"], pred_regions[index], gt_regions[index]
        lesion = lesion_scores(p, g, spacing)
        row.update({f"dice_{name}": dice(p, g), f"hd95_{name}": hd95(p, g, spacing),
                    f"lesion_dice_{name}": lesion.dice, f"lesion_hd95_{name}": lesion.hd95,
                    f"tp_{name}": lesion.tp, f"fp_{name}": lesion.fp, f"fn_{name}": lesion.fn})
    return row


GLOBAL_METRICS = ("dice", "hd95")
LESION_METRICS = ("lesion_dice", "lesion_hd95", "tp", "fp", "fn")


def metric_columns(regions: list[dict[str, Any]], metrics: tuple[str, ...] = GLOBAL_METRICS + LESION_METRICS
                   ) -> list[str]:
    return [f"{metric}_{region['name']}" for metric in metrics for region in regions]


def mean_row(rows: list[dict[str, Any]], regions: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-metric mean over cases (penalties for empty masks included, as in BraTS rankings; lesion counts
    become mean counts per case)."""
    return {"case": "mean", **{c: float(np.mean([r[c] for r in rows])) for c in metric_columns(regions)},
            "pred": "", "gt": ""}


def evaluate(pred: str | Path, gt: str | Path, regions: list[dict[str, Any]] = BRATS_REGIONS) -> list[dict[str, Any]]:
    """Rows for every matched case (see `pair_cases`), without the mean."""
    return [evaluate_case(c, p, g, regions) for c, p, g in pair_cases(pred, gt).pairs]


_TITLES = {"dice": "Dice", "hd95": "HD95", "lesion_dice": "lesDice", "lesion_hd95": "lesHD95", "tp": "TP",
           "fp": "FP", "fn": "FN"}


def format_header(regions: list[dict[str, Any]], width: int, metrics: tuple[str, ...] = GLOBAL_METRICS) -> str:
    names = [f"{_TITLES[m]} {r['name']}" for m in metrics for r in regions]
    return f"{'case':<{width}}" + "".join(f"{n:>11}" for n in names) + "   (HD95 in mm)"


def _cell(metric: str, value: float) -> str:
    if metric in ("tp", "fp", "fn"):
        return f"{value:>11g}" if float(value).is_integer() else f"{value:>11.1f}"
    return f"{value:>11.4f}" if "dice" in metric else f"{value:>11.2f}"


def format_row(row: dict[str, Any], regions: list[dict[str, Any]], width: int,
               metrics: tuple[str, ...] = GLOBAL_METRICS) -> str:
    return f"{row['case']:<{width}}" + "".join(_cell(m, row[f"{m}_{r['name']}"]) for m in metrics for r in regions)


def write_csv(rows: list[dict[str, Any]], path: str | Path, regions: list[dict[str, Any]]) -> Path:
    """CSV with one row per case and a final `mean` row; full float precision."""
    import io

    from emim.atomic_write import write_file

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=["case", *metric_columns(regions), "pred", "gt"])
    writer.writeheader()
    writer.writerows(rows)
    return write_file(Path(path), text.getvalue())
