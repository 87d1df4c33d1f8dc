"""A corrected segmentation becomes a labelled training case (EMIMSegmentation Logic, real MRML on slicer-core)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from support.slicer_scene import REPO, slicer, slicer_app  # noqa: F401  (fixture)

from EMIMCommonLib.sample_data import sample_case_folder  # noqa: E402
from EMIMSegmentationLib.errors import EMIMSegmentationError  # noqa: E402
from EMIMSegmentationLib.logic import SegmentationLogic  # noqa: E402
from EMIMSegmentationLib.segmentation_import import import_label_file  # noqa: E402

MODEL = "EMIM-starter-tiny"


@pytest.fixture
def labelled_sample(slicer_app):
    """The sample case's four volumes and its reference label as a named segmentation, as after a correction."""
    logic = SegmentationLogic()
    inputs = logic.loadCase(sample_case_folder(), MODEL)
    info = logic.readModel(MODEL)
    label_file = next(sample_case_folder().glob("*-seg.nii.gz"))
    segmentation = import_label_file(label_file, inputs["t1n"], info.labels)
    return logic, inputs, segmentation, label_file


def test_the_corrected_case_is_written_in_the_engines_layout_with_the_models_label_values(labelled_sample, tmp_path):
    logic, inputs, segmentation, label_file = labelled_sample
    case = logic.addTrainingCase(inputs, segmentation, MODEL, tmp_path / "cases", "corrected-001")
    assert sorted(p.name for p in case.iterdir()) == sorted(
        [f"corrected-001-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f")] + ["corrected-001-seg.nii.gz"])
    written, original = nib.load(case / "corrected-001-seg.nii.gz"), nib.load(label_file)
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(original.dataobj))  # the round trip is exact
    assert np.allclose(written.affine, original.affine, atol=1e-4)
    assert [p.name for p in (tmp_path / "cases").iterdir()] == ["corrected-001"]  # no private folder left

    from emim.data.cases import find_cases

    assert [c.case_id for c in find_cases(tmp_path / "cases")] == ["corrected-001"]


def test_an_existing_case_is_never_overwritten_and_unknown_segments_are_refused(labelled_sample, tmp_path):
    logic, inputs, segmentation, _ = labelled_sample
    (tmp_path / "cases" / "taken").mkdir(parents=True)
    (tmp_path / "cases" / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(EMIMSegmentationError, match="never overwritten"):
        logic.addTrainingCase(inputs, segmentation, MODEL, tmp_path / "cases", "taken")
    assert (tmp_path / "cases" / "taken" / "notes.txt").read_text() == "mine"
    segments = segmentation.GetSegmentation()
    segments.GetSegment(segments.GetNthSegmentID(0)).SetName("my scribble")
    with pytest.raises(EMIMSegmentationError, match="'my scribble' are not labels of model"):
        logic.addTrainingCase(inputs, segmentation, MODEL, tmp_path / "cases", "new")
    with pytest.raises(EMIMSegmentationError, match="Case name"):
        logic.addTrainingCase(inputs, segmentation, MODEL, tmp_path / "cases", "../escape")
    assert sorted(p.name for p in (tmp_path / "cases").iterdir()) == ["taken"]


def test_segment_correct_add_adapt_and_segment_again_on_a_real_case(slicer_app, brats_mini, tmp_path):
    """The loop of issue #25 on one real mini case: the starter segments it, the labels are corrected (here: the
    reference labels painted over the result), the case is added, the starter is adapted to it for a few steps
    (Start from: model, the whole network) and the adapted model segments the case again. Whether adapting pays
    off is bench/label_efficiency.py's question; this test checks that the loop's parts fit."""
    import sys

    if str(REPO / "EMIMTraining") not in sys.path:
        sys.path.insert(0, str(REPO / "EMIMTraining"))
    from conftest import SMALLEST_CASE
    from EMIMTrainingLib.logic import TrainingLogic
    from EMIMTrainingLib.settings import START_MODEL, TrainingSettings

    logic = SegmentationLogic()
    inputs = logic.loadCase(brats_mini / SMALLEST_CASE, MODEL)
    result = logic.segment(inputs, MODEL, device="cpu")
    truth = next((brats_mini / SMALLEST_CASE).glob("*-seg.nii.gz"))
    corrected = import_label_file(truth, inputs["t1n"], logic.readModel(MODEL).labels, segmentation=result)
    case = logic.addTrainingCase(inputs, corrected, MODEL, tmp_path / "cases", "corrected-01404")
    assert np.array_equal(np.asarray(nib.load(case / "corrected-01404-seg.nii.gz").dataobj),
                          np.asarray(nib.load(truth).dataobj))
    training = TrainingLogic()
    settings = TrainingSettings(task="finetune", data=str(tmp_path / "cases"), run=str(tmp_path / "run"),
                                start_from=START_MODEL, steps=3, val_cases=0, device="cpu", eval_every=10,
                                checkpoint_every=3, learning_rate=2e-4)
    job = training.start(settings, waitForCompletion=True)
    assert job.state == "succeeded", job.error
    adapted = training.exportModel(tmp_path / "run", tmp_path / "adapted")
    again = logic.segment(inputs, adapted, device="cpu")
    assert logic.readModel(adapted).provenance["init"]["model"] == MODEL
    assert again.GetSegmentation().GetNumberOfSegments() == len(logic.readModel(adapted).labels)
