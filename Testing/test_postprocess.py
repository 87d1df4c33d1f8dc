"""Label-map cleaning: the brain mask, nested regions, lesion size in mm^3 (not voxels), the largest lesion, the
model's recorded settings and their refusal when malformed."""

from __future__ import annotations

import numpy as np
import pytest

from emim.errors import EmimError
from emim.inference.postprocess import DEFAULT, NONE, PostProcess, clean_regions, label_map
from emim.labels import BRATS_REGIONS, labels_to_regions

TC, WT, ET = 0, 1, 2  # channel order of BRATS_REGIONS


def _probabilities(shape=(40, 40, 40)) -> np.ndarray:
    probs = np.zeros((3, *shape), np.float32)
    probs[WT, 5:25, 5:25, 5:25] = 0.9  # the tumour: 20^3 voxels
    probs[TC, 10:20, 10:20, 10:20] = 0.9
    probs[ET, 12:18, 12:18, 12:18] = 0.9
    probs[WT, 30:32, 30:32, 30:32] = 0.9  # a speck of 8 voxels
    probs[ET, 35, 35, 35] = 0.9  # enhancing outside any whole tumour
    return probs


def test_specks_go_by_their_size_in_cubic_millimetres():
    probs, brain = _probabilities(), np.ones((40, 40, 40), bool)
    kept = labels_to_regions(label_map(probs, brain, (1, 1, 1), BRATS_REGIONS, PostProcess(50.0)))
    assert kept[WT].sum() == 20**3 and not kept[WT, 30:32, 30:32, 30:32].any()
    coarse = labels_to_regions(label_map(probs, brain, (2, 2, 2), BRATS_REGIONS, PostProcess(50.0)))
    assert coarse[WT, 30:32, 30:32, 30:32].all()  # 8 voxels of 8 mm^3 = 64 mm^3 stays


def test_inner_regions_stay_inside_outer_ones_and_largest_keeps_one_lesion():
    probs, brain = _probabilities(), np.ones((40, 40, 40), bool)
    masks = clean_regions(probs > 0.5, BRATS_REGIONS, (1, 1, 1), NONE)
    assert not masks[ET, 35, 35, 35] and masks[ET, 12:18, 12:18, 12:18].all()
    largest = clean_regions(probs > 0.5, BRATS_REGIONS, (1, 1, 1), PostProcess(0.0, ("WT",)))
    assert largest[WT].sum() == 20**3
    with pytest.raises(EmimError, match="NOPE"):
        clean_regions(probs > 0.5, BRATS_REGIONS, (1, 1, 1), PostProcess(0.0, ("NOPE",)))


def test_nothing_is_labelled_outside_the_brain():
    probs = np.full((3, 20, 20, 20), 0.9, np.float32)
    brain = np.zeros((20, 20, 20), bool)
    brain[4:16, 4:16, 4:16] = True
    labels = label_map(probs, brain, (1, 1, 1), BRATS_REGIONS, NONE)
    assert labels[4:16, 4:16, 4:16].all() and labels.sum() == labels[4:16, 4:16, 4:16].sum()


def test_recorded_settings_are_read_and_bad_ones_refused():
    assert PostProcess.from_metadata(None) == DEFAULT
    assert PostProcess.from_metadata({"min_lesion_mm3": 20, "largest": ["WT"]}) == PostProcess(20.0, ("WT",))
    assert PostProcess.from_metadata(PostProcess(5.0).to_metadata()) == PostProcess(5.0)
    for bad in ({"min_lesion_mm3": "lots"}, {"min_lesion_mm3": -1}, {"largest": 3}):
        with pytest.raises(EmimError, match="postprocess"):
            PostProcess.from_metadata(bad)


def test_command_line_options_lay_over_the_models_settings():
    from argparse import Namespace

    from emim.commands.segment import postprocess_settings

    recorded = PostProcess(100.0, ("WT",))
    options = {"postprocess": "model", "min_lesion_mm3": None, "keep_largest": None}
    assert postprocess_settings(Namespace(**options), recorded) == recorded
    assert postprocess_settings(Namespace(**{**options, "postprocess": "none"}), recorded) == NONE
    assert postprocess_settings(Namespace(**{**options, "min_lesion_mm3": 30.0}),
                                recorded) == PostProcess(30.0, ("WT",))
    assert postprocess_settings(Namespace(**{**options, "postprocess": "none", "keep_largest": ["TC"]}),
                                recorded) == PostProcess(0.0, ("TC",))
    with pytest.raises(EmimError, match="--min-lesion-mm3"):
        postprocess_settings(Namespace(**{**options, "min_lesion_mm3": -5.0}), recorded)


def test_a_region_the_model_lacks_is_refused_before_any_inference(tiny_segmentation_model, brats_mini, tmp_path,
                                                                  emim):

    done = emim("segment", "--model", str(tiny_segmentation_model), "--output", str(tmp_path / "out"), "--keep-largest",
                "wt", "--device", "cpu", str(brats_mini / "BraTS-GLI-01404-000"))
    assert done.returncode != 0 and "wt" in done.stderr and "TC, WT, ET" in done.stderr
    assert not (tmp_path / "out").exists()
