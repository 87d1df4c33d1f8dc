"""EMIMSegmentation Logic on real MRML (slicer-core): loading, inputs, geometry, importing results, round trips."""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pytest

from support.slicer_scene import BRATS_LABELS, slicer, slicer_app, write_model_metadata  # noqa: F401  (fixture)

from EMIMSegmentationLib.errors import EMIMSegmentationError
from EMIMSegmentationLib.geometry import ijk_to_ras
from EMIMSegmentationLib.logic import SegmentationLogic
from EMIMSegmentationLib.metadata import read_model_info
from EMIMSegmentationLib.reconstruction_import import import_reconstruction_outputs
from EMIMSegmentationLib.classification import probabilities_table
from EMIMSegmentationLib.segmentation_import import import_label_file

from conftest import SMALLEST_CASE
from emim.bundled import STARTER_PRETRAINING

CASE = "BraTS-GLI-00360-000"


def _fingerprint(node) -> tuple:
    """Voxels and grid of a node, to prove inputs are never modified."""
    return slicer.util.arrayFromVolume(node).copy(), ijk_to_ras(node).copy(), node.GetName()


def _same(a: tuple, b: tuple) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.fixture
def case_inputs(slicer_app, brats_mini):
    return SegmentationLogic().loadCase(brats_mini / CASE)


def test_load_case_uses_slicer_reader_and_keeps_geometry(case_inputs, brats_mini):
    assert list(case_inputs) == ["t1n", "t1c", "t2w", "t2f"]
    for modality, node in case_inputs.items():
        image = nib.load(brats_mini / CASE / f"{CASE}-{modality}.nii.gz")
        assert node.GetName() == f"{CASE}-{modality}"
        assert np.array_equal(slicer.util.arrayFromVolume(node).transpose(2, 1, 0), np.asarray(image.dataobj))
        assert np.allclose(ijk_to_ras(node), image.affine, atol=1e-5)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    studies = {sh.GetItemParent(sh.GetItemByDataNode(n)) for n in case_inputs.values()}
    assert len(studies) == 1 and sh.GetItemName(studies.pop()) == CASE


def test_inputs_auto_assigned_from_volume_names_and_problems_explained(case_inputs, tmp_path):
    model = write_model_metadata(tmp_path / "model")
    for node, name in zip(case_inputs.values(), ["T1", "T1ce", "T2", "FLAIR"]):
        node.SetName(name)
    logic = SegmentationLogic()
    assigned = logic.autoAssignInputs(model)
    assert {k: v.GetName() for k, v in assigned.items()} == {"t1n": "T1", "t1c": "T1ce", "t2w": "T2", "t2f": "FLAIR"}
    assert logic.inputProblems(assigned, model) == []
    broken = dict(assigned, t2f=None, t2w=assigned["t1n"])
    problems = " ".join(logic.inputProblems(broken, model))
    assert "T2 FLAIR" in problems and "same volume" in problems and "T1 native" in problems


def test_real_label_map_imported_as_named_coloured_segmentation_with_round_trip(case_inputs, brats_mini, tmp_path):
    model = read_model_info(write_model_metadata(tmp_path / "model"))
    before = {k: _fingerprint(n) for k, n in case_inputs.items()}
    reference = case_inputs["t1n"]
    seg_file = brats_mini / CASE / f"{CASE}-seg.nii.gz"
    truth = np.asarray(nib.load(seg_file).dataobj)

    segmentation = import_label_file(seg_file, reference, model.labels, name="result")
    segments = segmentation.GetSegmentation()
    assert segments.GetNumberOfSegments() == len(BRATS_LABELS)
    for label in BRATS_LABELS:
        segment = segments.GetSegment(f"label_{label['value']}")
        assert segment.GetName() == label["name"]
        assert np.allclose(segment.GetColor(), np.array(label["color"]) / 255.0)
        assert label["terminology"]["type"]["CodeValue"] in segment.GetTerminology()
        voxels = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, f"label_{label['value']}",
                                                            reference).transpose(2, 1, 0)
        assert np.array_equal(voxels > 0, truth == label["value"])
    ref_string = segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
    assert ref_string == slicer.vtkSegmentationConverter.SerializeImageGeometry(_oriented(reference))
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    assert sh.GetItemParent(sh.GetItemByDataNode(segmentation)) == sh.GetItemParent(sh.GetItemByDataNode(reference))
    assert all(_same(before[k], _fingerprint(n)) for k, n in case_inputs.items())

    # .seg.nrrd round trip into a fresh scene: names, colours, label values and voxels survive.
    path = tmp_path / "result.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(segmentation)
    from EMIMCommonLib.headless import bootstrap

    bootstrap()
    reloaded = slicer.modules.segmentations.logic().LoadSegmentationFromFile(str(path), False, "reloaded")
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
        reloaded, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    assert np.array_equal(slicer.util.arrayFromVolume(labelmap).transpose(2, 1, 0), truth)
    assert np.allclose(ijk_to_ras(labelmap), nib.load(seg_file).affine, atol=1e-4)
    names = [reloaded.GetSegmentation().GetNthSegment(i).GetName() for i in range(3)]
    assert names == [label["name"] for label in BRATS_LABELS]


def _oriented(volume):
    image = slicer.vtkOrientedImageData()
    image.ShallowCopy(volume.GetImageData())
    image.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras(volume)))
    return image


def test_rerun_replaces_only_the_chosen_output(case_inputs, brats_mini, tmp_path):
    model = read_model_info(write_model_metadata(tmp_path / "model"))
    seg_file = brats_mini / CASE / f"{CASE}-seg.nii.gz"
    first = import_label_file(seg_file, case_inputs["t1n"], model.labels, name="first")
    second = import_label_file(seg_file, case_inputs["t1n"], model.labels, name="second")
    # A new label file with only edema: re-running into `second` replaces its content, `first` stays.
    data = (np.asarray(nib.load(seg_file).dataobj) == 2).astype(np.uint8) * 2
    edema_only = tmp_path / "edema.nii.gz"
    nib.save(nib.Nifti1Image(data, nib.load(seg_file).affine), edema_only)
    nodes_before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    again = import_label_file(edema_only, case_inputs["t1n"], model.labels, segmentation=second)
    assert again is second
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == nodes_before
    ncr = lambda node: slicer.util.arrayFromSegmentBinaryLabelmap(node, "label_1", case_inputs["t1n"]).sum()  # noqa: E731
    assert ncr(second) == 0 and ncr(first) == (np.asarray(nib.load(seg_file).dataobj) == 1).sum()


def test_label_file_off_the_input_grid_is_refused(case_inputs, brats_mini, tmp_path):
    model = read_model_info(write_model_metadata(tmp_path / "model"))
    image = nib.load(brats_mini / CASE / f"{CASE}-seg.nii.gz")
    shifted = image.affine.copy()
    shifted[:3, 3] += 2.0
    path = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted), path)
    with pytest.raises(EMIMSegmentationError, match="grid that differs"):
        import_label_file(path, case_inputs["t1n"], model.labels)


def test_mismatched_geometry_refused_or_resampled_in_physical_space(case_inputs, tmp_path):
    model = write_model_metadata(tmp_path / "model")
    logic = SegmentationLogic()
    t1c = case_inputs["t1c"]
    matrix = ijk_to_ras(t1c)
    matrix[:3, 3] += (5.0, 0.0, 3.0)
    t1c.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(matrix))
    before = {k: _fingerprint(n) for k, n in case_inputs.items()}

    report = logic.geometryMismatches(case_inputs, model)
    assert len(report) == 1 and "T1 contrast-enhanced" in report[0] and "origin 5.83 mm away" in report[0]
    with pytest.raises(EMIMSegmentationError, match="differs from the reference"):
        logic.segment(case_inputs, model)  # refused before any engine process starts

    resampled = logic.resampleInputs(case_inputs, model)
    assert resampled["t1n"] is case_inputs["t1n"] and resampled["t2w"] is case_inputs["t2w"]
    new = resampled["t1c"]
    assert new is not t1c and logic.geometryMismatches(resampled, model) == []
    # Every reference voxel holds the moving volume's value at the same RAS position (integer mm shifts here).
    moving = slicer.util.arrayFromVolume(t1c)
    values = slicer.util.arrayFromVolume(new)
    ref_matrix, moving_inverse = ijk_to_ras(case_inputs["t1n"]), np.linalg.inv(matrix)
    rng = np.random.default_rng(0)
    ijk = np.c_[rng.integers(10, 230, 300), rng.integers(10, 230, 300), rng.integers(10, 88, 300), np.ones(300)]
    moving_ijk = np.rint((moving_inverse @ ref_matrix @ ijk.T).T[:, :3]).astype(int)
    inside = np.all((moving_ijk >= 0) & (moving_ijk < np.array(moving.shape[::-1])), axis=1)
    assert inside.sum() > 200
    got = values[ijk[inside, 2].astype(int), ijk[inside, 1].astype(int), ijk[inside, 0].astype(int)]
    want = moving[moving_ijk[inside, 2], moving_ijk[inside, 1], moving_ijk[inside, 0]]
    assert np.array_equal(got, want)
    assert all(_same(before[k], _fingerprint(n)) for k, n in case_inputs.items())


def test_reconstruction_outputs_loaded_beside_the_inputs(case_inputs, brats_mini, tmp_path):
    affine = nib.load(brats_mini / CASE / f"{CASE}-t1n.nii.gz").affine
    reference = case_inputs["t1n"]
    shape = slicer.util.arrayFromVolume(reference).shape[::-1]
    mask = np.zeros(shape, np.uint8)
    mask[::32, ::32, :] = 1
    outputs = [{"event": "output", "kind": "mask", "path": str(tmp_path / "mask.nii.gz")}]
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "mask.nii.gz")
    for modality, node in case_inputs.items():
        data = slicer.util.arrayFromVolume(node).transpose(2, 1, 0).astype(np.float32)
        for kind, values in (("masked", data * (1 - mask)), ("reconstruction", data * 0.5)):
            path = tmp_path / f"{modality}_{kind}.nii.gz"
            nib.save(nib.Nifti1Image(values, affine), path)
            outputs.append({"event": "output", "kind": kind, "modality": modality, "path": str(path)})
    result = import_reconstruction_outputs(outputs, reference, "look inside")
    assert set(result["reconstruction"]) == set(case_inputs) == set(result["masked"])
    assert result["mask"].IsA("vtkMRMLLabelMapVolumeNode")
    assert np.array_equal(slicer.util.arrayFromVolume(result["mask"]).transpose(2, 1, 0), mask)
    recon = slicer.util.arrayFromVolume(result["reconstruction"]["t2f"])
    assert np.allclose(recon, slicer.util.arrayFromVolume(case_inputs["t2f"]) * 0.5)
    assert np.array_equal(ijk_to_ras(result["masked"]["t1c"]), ijk_to_ras(reference))


def test_classification_probabilities_table(slicer_app):
    table = probabilities_table({"IDH wild-type": 0.2, "IDH mutant": 0.8}, slicer.mrmlScene)
    assert table.GetNumberOfRows() == 2
    assert table.GetCellText(0, 0) == "IDH mutant" and float(table.GetCellText(0, 1)) == pytest.approx(0.8)


def test_model_metadata_errors_name_the_file(tmp_path):
    with pytest.raises(EMIMSegmentationError, match="No metadata.json"):
        read_model_info(tmp_path)
    (tmp_path / "metadata.json").write_text('{"task": "segmentation"}')
    with pytest.raises(EMIMSegmentationError, match="metadata.json is not a valid"):
        read_model_info(tmp_path)


def test_segment_runs_the_engine_and_returns_a_segmentation_on_the_input_grid(case_inputs, tiny_segmentation_model,
                                                                             tmp_path):
    """Acceptance: loaded volumes -> engine subprocess -> named, coloured segments on the input's grid. A "Fill
    missing with" path left in the panel (here one that no longer exists) is not used when no input is empty."""
    before = {k: _fingerprint(n) for k, n in case_inputs.items()}
    progress: list[float] = []
    logged: list[str] = []
    logic = SegmentationLogic()
    segmentation = logic.segment(case_inputs, tiny_segmentation_model, device="cpu", overlap=0.0,
                                 fillMissing=str(tmp_path / "deleted-pretraining"), waitForCompletion=True,
                                 progressCallback=progress.append, logCallback=logged.append)
    assert not any("--fill-missing" in line for line in logged) and any("--model" in line for line in logged)
    reference = case_inputs["t1n"]
    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName()
             for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
    assert set(names) <= {label["name"] for label in BRATS_LABELS}
    ref_string = segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
    assert ref_string == slicer.vtkSegmentationConverter.SerializeImageGeometry(_oriented(reference))
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
        segmentation, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    assert slicer.util.arrayFromVolume(labelmap).shape == slicer.util.arrayFromVolume(reference).shape
    assert np.allclose(ijk_to_ras(labelmap), ijk_to_ras(reference), atol=1e-4)
    assert progress and max(progress) > 0
    assert all(_same(before[k], _fingerprint(n)) for k, n in case_inputs.items())
    # the volume table beside it: the label map's voxels counted by hand (1 mm^3 voxels), in the same study
    from EMIMSegmentationLib.volumes_table import VOLUMES_REFERENCE

    table = segmentation.GetNodeReference(VOLUMES_REFERENCE)
    rows = {table.GetCellText(r, 0): r for r in range(table.GetNumberOfRows())}
    assert set(rows) == {"TC", "WT", "ET"} | {label["name"] for label in BRATS_LABELS}
    exported = slicer.util.arrayFromVolume(labelmap)
    assert float(table.GetCellText(rows["WT"], 3)) == pytest.approx((exported > 0).sum() / 1000, abs=5e-4)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(segmentation))
    assert sh.GetItemParent(sh.GetItemByDataNode(table)) == parent


def test_a_case_at_another_spacing_comes_back_on_its_own_grid_and_native_spacing_is_said_aloud(
        slicer_app, tiny_segmentation_model):
    """The shipped 2 mm sample with the 1 mm test model: the engine runs at 1 mm, the segments land on the 2 mm
    input grid; asking for the native spacing instead gives the spacing warning in the log."""
    from EMIMCommonLib.sample_data import sample_case_folder

    logic = SegmentationLogic()
    inputs = logic.loadCase(sample_case_folder(), tiny_segmentation_model)
    reference = inputs["t1n"]
    for native in (False, True):
        logs: list[str] = []
        segmentation = logic.segment(inputs, tiny_segmentation_model, device="cpu", overlap=0.0,
                                     nativeSpacing=native, logCallback=logs.append)
        geometry = segmentation.GetSegmentation().GetConversionParameter("Reference image geometry")
        assert geometry == slicer.vtkSegmentationConverter.SerializeImageGeometry(_oriented(reference))
        warned = [line for line in logs if line.startswith("Warning:") and "--native-spacing" in line]
        assert bool(warned) == native, logs


def test_a_dropout_model_segments_with_one_input_left_empty_and_others_refuse(slicer_app, brats_mini,
                                                                              dropout_model, tiny_segmentation_model):
    """The panel's Logic on real MRML: the FLAIR selector left empty; the segments land on the first given input's
    grid. A model fine-tuned without modality dropout keeps asking for the volume."""
    inputs = SegmentationLogic().loadCase(brats_mini / SMALLEST_CASE)
    inputs["t2f"] = None
    logic = SegmentationLogic()
    assert logic.inputProblems(inputs, dropout_model) == []
    refused = logic.inputProblems(inputs, tiny_segmentation_model)
    assert any("FLAIR" in p for p in refused) and any(STARTER_PRETRAINING in p for p in refused)  # and the way out
    logged: list[str] = []
    segmentation = logic.segment(inputs, dropout_model, device="cpu", overlap=0.0, waitForCompletion=True,
                                 logCallback=logged.append)
    assert any("--missing t2f" in line for line in logged) and any("no t2f" in line for line in logged)
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    assert slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
        segmentation, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
    assert slicer.util.arrayFromVolume(labelmap).shape == slicer.util.arrayFromVolume(inputs["t1n"]).shape
    assert np.allclose(ijk_to_ras(labelmap), ijk_to_ras(inputs["t1n"]), atol=1e-4)
    with pytest.raises(EMIMSegmentationError, match="FLAIR"):
        logic.segment(inputs, tiny_segmentation_model, device="cpu", waitForCompletion=True)


def test_a_model_without_dropout_segments_with_a_synthesised_flair_which_comes_into_the_scene(
        slicer_app, brats_mini, tiny_segmentation_model, tiny_pretraining):
    """--fill-missing from the Logic: the FLAIR selector left empty, a pretraining fills it; the stand-in is a
    volume on the reference's grid in its study, named as synthetic and referenced from the segmentation."""
    from EMIMSegmentationLib.synthetic_import import SYNTHETIC_ATTRIBUTE, SYNTHETIC_REFERENCE

    inputs = SegmentationLogic().loadCase(brats_mini / SMALLEST_CASE)
    inputs["t2f"] = None
    logic = SegmentationLogic()
    assert logic.inputProblems(inputs, tiny_segmentation_model, fillMissing=True) == []
    segmentation = logic.segment(inputs, tiny_segmentation_model, device="cpu", overlap=0.0,
                                 fillMissing=tiny_pretraining)
    assert segmentation.GetNumberOfNodeReferences(SYNTHETIC_REFERENCE) == 1
    synthetic = segmentation.GetNthNodeReference(SYNTHETIC_REFERENCE, 0)
    assert "t2f (synthetic, E-MIM)" in synthetic.GetName()
    assert synthetic.GetAttribute(SYNTHETIC_ATTRIBUTE) == str(tiny_pretraining)
    reference = inputs["t1n"]
    assert slicer.util.arrayFromVolume(synthetic).shape == slicer.util.arrayFromVolume(reference).shape
    assert np.allclose(ijk_to_ras(synthetic), ijk_to_ras(reference), atol=1e-4)
    assert slicer.util.arrayFromVolume(synthetic).std() > 0
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    assert sh.GetItemParent(sh.GetItemByDataNode(synthetic)) == sh.GetItemParent(sh.GetItemByDataNode(reference))


def test_the_panel_text_for_a_missing_input_names_it_says_what_happens_and_gives_the_measured_cost(
        slicer_app, tmp_path):
    from emim.contract import MISSING_DICE

    measured = {"cases": "the 3 real BraTS mini cases", "all": {"WT": 0.80, "TC": 0.60, "ET": 0.50},
                "drop": {"t2f": {"WT": 0.50, "TC": 0.62, "ET": 0.51}},
                "fill": {"t2f": {"WT": 0.70, "TC": 0.55, "ET": 0.45}}, "fill_pretraining": "pretrain"}
    model = write_model_metadata(tmp_path / "model", inference={"missing_modalities": {"supported": True}},
                                 provenance={MISSING_DICE: measured})
    logic = SegmentationLogic()
    inputs = {"t1n": object(), "t1c": object(), "t2w": object(), "t2f": None}
    dropped = logic.missingSummary(inputs, model)
    assert "Missing: T2 FLAIR" in dropped and "without it" in dropped
    assert "WT -0.30, TC +0.02, ET +0.01" in dropped and "the 3 real BraTS mini cases" in dropped
    filled = logic.missingSummary(inputs, model, fillMissing=str(tmp_path / "pretrain"))
    assert "synthesised by the pretraining pretrain" in filled and "WT -0.10, TC -0.05, ET -0.05" in filled
    other = logic.missingSummary(inputs, model, fillMissing=str(tmp_path / "my-pretraining"))
    assert "not measured" in other and "-0.10" not in other  # costs hold only for the pretraining measured
    unmeasured = logic.missingSummary({**inputs, "t1c": None}, model)
    assert "T1 contrast-enhanced, T2 FLAIR" in unmeasured and "not measured" in unmeasured
    assert logic.missingSummary({**inputs, "t2f": object()}, model) == ""


def test_volumes_in_a_dicom_patient_and_study_keep_their_hierarchy(slicer_app, brats_mini, tiny_segmentation_model):
    """Volumes loaded through Slicer's DICOM module sit under a patient and a study item carrying DICOM UIDs; the
    segmentation and its volume table go into that study, which keeps its patient, UIDs and volumes."""
    from EMIMSegmentationLib.volumes_table import VOLUMES_REFERENCE

    inputs = SegmentationLogic().loadCase(brats_mini / SMALLEST_CASE)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Test^Patient")
    sh.SetItemUID(patient, "DICOM", "EMIM-TEST")
    study = sh.CreateStudyItem(patient, "MR brain 20260101")
    sh.SetItemUID(study, "DICOM", "1.2.826.0.1.3680043.10.1234.1")
    for node in inputs.values():
        sh.SetItemParent(sh.GetItemByDataNode(node), study)
    segmentation = SegmentationLogic().segment(inputs, tiny_segmentation_model, device="cpu", overlap=0.0)
    table = segmentation.GetNodeReference(VOLUMES_REFERENCE)
    for node in (segmentation, table):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study
    assert sh.GetItemParent(study) == patient and sh.GetItemUID(study, "DICOM") == "1.2.826.0.1.3680043.10.1234.1"
    assert all(sh.GetItemParent(sh.GetItemByDataNode(n)) == study for n in inputs.values())
