"""Tumour volumes: exact millilitres on an anisotropic, oblique grid, lesion counts, and the CSV text."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from emim.labels import BRATS_LABELS, BRATS_REGIONS
from emim.volumes import region_volumes, structure_volumes, volumes_csv, voxel_volume_mm3


def test_a_label_of_known_size_gives_its_exact_volume():
    label = np.zeros((40, 40, 20), np.uint8)
    label[5:15, 5:15, 5:10] = 2  # 500 voxels of edema...
    label[8:12, 8:12, 6:8] = 1  # ...32 of them necrotic core
    label[30:32, 30:32, 15:17] = 3  # a separate enhancing lesion: 8 voxels
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.5, 0.8, 3.0])  # 1.2 mm^3 voxels, axes swapped
    assert voxel_volume_mm3(affine) == pytest.approx(1.2)
    rows = {r["structure"]: r for r in structure_volumes("c", label, voxel_volume_mm3(affine), BRATS_LABELS,
                                                         BRATS_REGIONS)}
    assert rows["WT"]["voxels"] == 508 and rows["WT"]["volume_ml"] == pytest.approx(508 * 1.2 / 1000)
    assert rows["WT"]["lesions"] == 2 and rows["ET"]["lesions"] == 1 and rows["TC"]["voxels"] == 40
    assert rows["Peritumoral edema"]["voxels"] == 468 and rows["Necrotic tumor core"]["kind"] == "label"
    assert region_volumes(list(rows.values())) == {"TC": 0.048, "WT": 0.61, "ET": 0.01}
    written = list(csv.DictReader(io.StringIO(volumes_csv(list(rows.values())))))
    assert [r["structure"] for r in written] == ["TC", "WT", "ET", "Necrotic tumor core", "Peritumoral edema",
                                                 "Enhancing tumor"]
    assert written[1]["volume_ml"] == "0.610" and written[1]["labels"] == "1 2 3"
