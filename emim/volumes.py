"""Tumour volumes: millilitres of each region (BraTS WT, TC, ET) and each label, and how many connected lesions,
from a label map on the case's own grid.

A voxel's volume is |det| of the affine's 3x3 part, so anisotropic and oblique grids are exact; lesions are
26-connected components, as the lesion-wise metrics count them (`emim.metrics.lesions`). One row per structure:
case, structure, kind (region or label), labels, voxels, volume_ml, lesions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

COLUMNS = ("case", "structure", "kind", "labels", "voxels", "volume_ml", "lesions")


def voxel_volume_mm3(affine: np.ndarray) -> float:
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))


def structure_volumes(case: str, label: np.ndarray, voxel_mm3: float, labels: Sequence[dict[str, Any]],
                      regions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (COLUMNS) for every region, then every label, of a model's metadata."""
    from emim.metrics import lesions

    structures = [(r["name"], "region", [int(v) for v in r["labels"]]) for r in regions]
    structures += [(lb["name"], "label", [int(lb["value"])]) for lb in labels]
    rows = []
    for name, kind, values in structures:
        mask = np.isin(label, values)
        voxels = int(np.count_nonzero(mask))
        rows.append({"case": case, "structure": name, "kind": kind, "labels": " ".join(map(str, values)),
                     "voxels": voxels, "volume_ml": voxels * voxel_mm3 / 1000.0, "lesions": lesions(mask)[1]})
    return rows


def volumes_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV text (volumes to 0.001 mL)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "volume_ml": f"{row['volume_ml']:.3f}"} for row in rows)
    return text.getvalue()


def region_volumes(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """{region: mL} of the region rows, for progress events."""
    return {row["structure"]: round(float(row["volume_ml"]), 3) for row in rows if row["kind"] == "region"}
