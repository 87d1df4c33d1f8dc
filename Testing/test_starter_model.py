"""The starter model that ships in Resources/Models: found by name, checksum-verified, trained on generated data
only (its metadata says how), small enough to ship, and it segments a real case onto the case's exact grid with
nothing outside the brain."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from emim.bundled import MODELS_DIR, STARTER_MODEL, bundled_model, bundled_models
from emim.modelfile import load_metadata, load_model

# the FLAIR stand-in of BraTS-GLI-00500-001 correlates 0.29 with the real FLAIR inside the brain
# (bench/missing_modality.py, 2026-12-03); a constant or unrelated image gives about 0
MIN_FLAIR_CORRELATION = 0.15


def test_the_starter_model_is_shipped_first_and_loads_by_name():
    assert bundled_models()[0] == MODELS_DIR / STARTER_MODEL == bundled_model(STARTER_MODEL)
    assert bundled_model("../Resources/Models/" + STARTER_MODEL) is None  # a name, never a path
    _, metadata = load_model(STARTER_MODEL)  # verifies the weights' SHA-256
    assert metadata["task"] == "segmentation"
    size = sum(f.stat().st_size for f in (MODELS_DIR / STARTER_MODEL).iterdir())
    assert size < 30 * 2**20


def test_its_metadata_says_how_it_was_trained_and_what_it_scores_on_real_cases():
    provenance = load_metadata(STARTER_MODEL)["provenance"]
    assert provenance["data"].startswith("generated only") and provenance["run"] is None
    assert isinstance(provenance["seed"], int) and provenance["recipe"]["cases"] > 0
    assert provenance["command"].startswith("python bench/starter_model.py")
    real = provenance["real_cases"]
    assert len(real["per_case"]) == 3 and {"dice_WT", "lesion_dice_WT", "fp_WT"} <= set(real["mean"])
    assert real["postprocess"] == load_metadata(STARTER_MODEL)["inference"]["postprocess"]


def test_the_cli_segments_a_real_case_with_it_by_name(brats_mini, tmp_path, emim):
    case = brats_mini / "BraTS-GLI-01404-000"
    out = tmp_path / "seg.nii.gz"
    done = emim("segment", "--model", STARTER_MODEL, "--output", str(out), "--device", "cpu", "--progress", "json",
                str(case), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["event"] == "done" and events[-1]["succeeded"] == 1
    reference = nib.load(str(case / f"{case.name}-t1n.nii.gz"))
    label = nib.load(str(out))
    assert label.shape == reference.shape and np.array_equal(label.affine, reference.affine)
    values = np.asarray(label.dataobj)
    assert set(np.unique(values)) <= {0, 1, 2, 3} and (values > 0).any()
    inside = np.any([np.asarray(nib.load(str(p)).dataobj) != 0 for p in case.glob("*-t*.nii.gz")], axis=0)
    assert not values[~inside].any()
    # tumour volumes beside the label map, checked by hand from the written file (1 mm^3 voxels here)
    rows = {r["structure"]: r for r in csv.DictReader((tmp_path / "seg.volumes.csv").open())}
    assert float(rows["WT"]["volume_ml"]) == pytest.approx((values > 0).sum() / 1000, abs=5e-4)
    assert int(rows["WT"]["lesions"]) == ndimage.label(values > 0, np.ones((3, 3, 3)))[1]
    assert events[-1]["volumes_ml"][case.name]["WT"] == pytest.approx(float(rows["WT"]["volume_ml"]), abs=1e-3)


def test_the_shipped_pretraining_fills_a_missing_flair_for_the_starter_model_by_name(brats_mini, tmp_path, emim):
    """EMIM-starter-tiny-pretraining (the recipe's pretraining, generated data only) is what `--fill-missing` was
    measured with: by name, the starter model (no dropout) segments a real case without its FLAIR, and the
    stand-in lies on the case's grid, zero outside the brain, and follows the real FLAIR."""
    from emim.bundled import STARTER_PRETRAINING

    metadata = load_metadata(STARTER_PRETRAINING)
    assert metadata["task"] == "pretraining" and metadata["provenance"]["data"].startswith("generated only")
    starter = load_metadata(STARTER_MODEL)
    assert [m["name"] for m in metadata["modalities"]] == [m["name"] for m in starter["modalities"]]
    case = brats_mini / "BraTS-GLI-00500-001"
    done = emim("segment", "--model", STARTER_MODEL, "--fill-missing", STARTER_PRETRAINING, "--missing", "t2f",
                "--output", str(tmp_path / "out"), "--device", "cpu", "--progress", "json", str(case),
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    (synthetic,) = [e for e in events if e["event"] == "output" and e["kind"] == "synthetic"]
    assert synthetic["modality"] == "t2f" and events[-1]["succeeded"] == 1
    flair = nib.load(str(case / f"{case.name}-t2f.nii.gz"))
    stand_in = nib.load(synthetic["path"])
    assert stand_in.shape == flair.shape and np.allclose(stand_in.affine, flair.affine, atol=1e-5)
    made, real = np.asarray(stand_in.dataobj), np.asarray(flair.dataobj)
    inside = np.any([np.asarray(nib.load(str(p)).dataobj) != 0 for p in case.glob("*-t[12][nwc].nii.gz")], axis=0)
    assert not made[~inside].any()
    assert np.corrcoef(made[inside], real[inside])[0, 1] > MIN_FLAIR_CORRELATION
