"""The module's shipped sample case and its self-test, on real MRML from slicer-core.

Sample Data itself is a Slicer module (absent here), so the tests do with the registered source what Sample
Data does with any source (`fetch_sample_source`: copy each URI into a cache, verify its SHA256, load it as a
volume). The self-test's checks then run on those nodes, and the module's own ScriptedLoadableModuleTest runs
whole in a child process through Testing/support/slicer_app_standin.py.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from support.slicer_app_standin import REPO, fetch_sample_source
from support.slicer_scene import MODULE_DIR, slicer, slicer_app  # noqa: F401  (fixture)

from EMIMSegmentationLib.logic import SegmentationLogic
from EMIMCommonLib.sample_data import (CASE_ID, MODALITIES, SAMPLE_FOLDER, sample_case_folder,
                                             sample_data_source, sample_files)
from EMIMSegmentationLib.self_test import segmentation_problems, self_test_model

from emim.sample import make_sample_cases

ICON = MODULE_DIR / "Resources" / "Icons" / "EMIMSegmentation.png"
DICE_WT_FLOOR = 0.8  # a regression guard: the shipped starter model scores WT Dice 0.864 on the sample case


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_shipped_file_matches_its_checksum():
    files = sample_files()
    assert set(files) == {*MODALITIES, "seg"}
    for key, sample in files.items():
        assert _sha256(sample.path) == sample.sha256, key
    shipped = {p.name for p in sample_case_folder().iterdir()}
    assert shipped == {f"{CASE_ID}-{key}.nii.gz" for key in files}


def test_a_changed_or_unlisted_file_is_refused(slicer_app, tmp_path):
    copy = tmp_path / "SampleData"
    shutil.copytree(SAMPLE_FOLDER, copy)
    changed = sample_case_folder(copy) / f"{CASE_ID}-t1c.nii.gz"
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ValueError, match="checksum of EMIMSample-.*t1c"):
        fetch_sample_source(sample_data_source(ICON, copy), cache)
    manifest = copy / f"{CASE_ID}.sha256"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(line for line in lines if "-t2f." not in line) + "\n")
    with pytest.raises(FileNotFoundError, match="t2f"):
        sample_files(copy)


def test_shipped_case_is_what_the_generator_makes(tmp_path):
    """Provenance: `emim make-sample --cases 1 --seed 2026 --size small` rebuilds the shipped voxels and grid."""
    folder = make_sample_cases(tmp_path, 1, 2026, size="small")[0]
    for key in (*MODALITIES, "seg"):
        shipped = nib.load(sample_case_folder() / f"{CASE_ID}-{key}.nii.gz")
        made = nib.load(folder / f"{CASE_ID}-{key}.nii.gz")
        np.testing.assert_array_equal(shipped.affine, made.affine)
        difference = np.abs(np.asarray(shipped.dataobj, np.int32) - np.asarray(made.dataobj, np.int32))
        # equal bytes with this project's pinned packages; other numpy/scipy builds may round a few voxels apart
        assert (difference > 1).mean() < 1e-3, key


def test_sample_data_source_loads_four_named_volumes_on_the_brats_grid(slicer_app, tmp_path):
    source = sample_data_source(ICON)
    assert source["category"] == "E-MIM" and Path(source["thumbnailFileName"]).is_file()
    nodes = fetch_sample_source(source, tmp_path)
    assert [node.GetName() for node in nodes] == [f"{CASE_ID}-{m}" for m in MODALITIES]
    affine = nib.load(sample_case_folder() / f"{CASE_ID}-t1n.nii.gz").affine
    for node in nodes:
        assert node.GetImageData().GetDimensions() == (120, 120, 78)
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(_ijk_to_ras(node)), affine, atol=1e-5)

    inputs = SegmentationLogic().loadCase(sample_case_folder())
    assert list(inputs) == list(MODALITIES)


def test_self_test_reports_a_missing_modality(slicer_app, tmp_path):
    nodes = fetch_sample_source(sample_data_source(ICON), tmp_path)
    problems = segmentation_problems(SegmentationLogic(), nodes[:3], self_test_model())
    assert problems and "FLAIR" in " ".join(problems)


def _ijk_to_ras(node):
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix


@pytest.mark.parametrize("module", ["EMIMSegmentation", "EMIMTraining"])
def test_the_modules_own_self_test_passes(module):
    """The module file's Test class, run as Slicer's test runner would, on the panel harness."""
    import subprocess
    import sys

    from support.slicer_gui import unavailable

    if unavailable():
        pytest.skip(unavailable())

    standin = REPO / "Testing" / "support" / "slicer_app_standin.py"
    result = subprocess.run([sys.executable, str(standin), module], cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed" in result.stdout and "OK" in result.stderr


def test_the_starter_model_is_the_panels_default_and_finds_the_sample_tumour(slicer_app, tmp_path):
    """Press Apply on the Sample Data case without training anything: the shipped model, chosen by default."""
    from emim.bundled import STARTER_MODEL

    logic = SegmentationLogic()
    default = logic.defaultModelPath()  # the panel chooses models by name
    assert default == STARTER_MODEL and logic.bundledModels()[0].name == default
    assert self_test_model() == default  # what the module's own self-test segments with (segmentation_problems)
    assert logic.readModel(STARTER_MODEL).task == "segmentation"  # the engine's name for it works here too
    nodes = fetch_sample_source(sample_data_source(ICON), tmp_path)
    assert segmentation_problems(logic, nodes, default) == []
    (segmentation,) = slicer.util.getNodesByClass("vtkMRMLSegmentationNode")
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
        segmentation, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    predicted = slicer.util.arrayFromVolume(labelmap).transpose(2, 1, 0) > 0
    truth = np.asarray(nib.load(sample_case_folder() / f"{CASE_ID}-seg.nii.gz").dataobj) > 0
    dice = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert dice > DICE_WT_FLOOR, dice
