"""`emim segment` on real mini cases with a model fine-tuned here: exact input grid, orientation round trip,
batch mode with a bad case, and refusals (missing / extra / other modalities) that leave no partial output."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from emim.errors import EmimError

CASE = "BraTS-GLI-01404-000"  # the smallest mini case (240 x 240 x 70)
MODALITIES = ("t1n", "t1c", "t2w", "t2f")
FAST = {"overlap": 0.0, "sw_batch_size": 4}  # whole-volume CPU inference in seconds


@pytest.fixture(scope="module")
def model_dir(tiny_segmentation_model):
    return tiny_segmentation_model


@pytest.fixture(scope="module")
def loaded_model(model_dir):
    from emim.inference.segmentation_model import load_segmentation_model

    return load_segmentation_model(model_dir, "cpu")


@pytest.fixture(scope="module")
def original(brats_mini, loaded_model, tmp_path_factory):
    from support.segmenting import segment

    out = tmp_path_factory.mktemp("original") / "seg.nii.gz"
    path = segment(loaded_model, brats_mini / CASE, out, probabilities=True, **FAST)
    return path


def _flipped_copy(source: Path, target: Path) -> None:
    """The same physical images stored with voxel axis 0 reversed (the affine compensates)."""
    target.mkdir(parents=True)
    for path in sorted(source.glob("*.nii.gz")):
        image = nib.load(str(path))
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1, image.shape[0] - 1
        data = np.asanyarray(image.dataobj)[::-1]
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data), image.affine @ flip, image.header),
                 str(target / path.name.replace(source.name, target.name)))


def test_label_map_is_on_the_input_grid_exactly(brats_mini, original, loaded_model):
    reference = nib.load(str(brats_mini / CASE / f"{CASE}-t1n.nii.gz"))
    result = nib.load(str(original))
    assert result.shape == reference.shape
    assert np.array_equal(result.affine, reference.affine)
    assert np.array_equal(result.header.get_sform(), reference.header.get_sform())
    assert np.array_equal(result.header.get_qform(), reference.header.get_qform())
    assert result.get_data_dtype() == np.uint8
    labels = np.asarray(result.dataobj)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3}
    # labels are the regions' painting of the written probabilities: 2 where WT, 1 where TC, 3 where ET
    probs = {r: np.asarray(nib.load(str(original.parent / f"seg_prob_{r}.nii.gz")).dataobj) for r in ("TC", "WT", "ET")}
    assert all(p.dtype == np.float32 and p.shape == reference.shape for p in probs.values())
    expected = np.zeros(reference.shape, np.uint8)
    expected[probs["WT"] > 0.5] = 2
    expected[probs["TC"] > 0.5] = 1
    expected[probs["ET"] > 0.5] = 3
    from emim.labels import labels_to_regions

    kept = labels > 0
    assert (labels_to_regions(labels) <= labels_to_regions(expected)).all()  # cleaning only takes away
    # what post-processing removed from the whole tumour are lesions below the model's size (1 mm^3 voxels here);
    # inner regions outside it go too (nesting)
    from scipy import ndimage

    whole = probs["WT"] > 0.5
    lesions, count = ndimage.label(whole, structure=np.ones((3, 3, 3)))
    sizes = np.bincount(lesions.ravel(), minlength=count + 1)
    removed = np.unique(lesions[whole & ~kept])
    assert (sizes[removed] < loaded_model.postprocess.min_lesion_mm3).all()


def test_batch_segments_a_flipped_case_like_the_original_and_reports_a_bad_case(brats_mini, model_dir, original,
                                                                                 tmp_path, emim):
    batch = tmp_path / "batch"
    _flipped_copy(brats_mini / CASE, batch / "flipped")
    bad = batch / "no-flair"
    bad.mkdir()
    for modality in MODALITIES[:3]:
        os.symlink(brats_mini / CASE / f"{CASE}-{modality}.nii.gz", bad / f"no-flair-{modality}.nii.gz")
    out = tmp_path / "out"
    result = emim("segment", "--model", str(model_dir), "--output", str(out), "--overlap", "0", "--sw-batch-size", "4",
                  "--progress", "json", str(batch))
    assert result.returncode == 1, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "warning" and "CPU" in events[0]["message"]  # --device auto without a GPU says so
    error = next(e for e in events if e["event"] == "error")
    assert error["case"] == "no-flair" and "t2f" in error["message"]
    outputs = [e for e in events if e["event"] == "output"]
    assert [(e["case"], e["kind"]) for e in outputs] == [("flipped", "label"), ("flipped", "volumes"),
                                                         ("flipped", "report")]
    percents = [e["percent"] for e in events if e["event"] == "progress"]
    assert percents == sorted(percents) and 0 < percents[-1] <= 50  # the flipped case is half of the batch
    assert events[-1]["event"] == "done" and events[-1]["succeeded"] == 1
    # nothing for the bad case, no temporaries; the batch's volume table
    assert sorted(p.name for p in out.iterdir()) == ["flipped.nii.gz", "flipped.report.json",
                                                     "flipped.volumes.csv", "volumes.csv"]
    assert set(events[-1]["volumes_ml"]) == {"flipped"}
    report = json.loads((out / "flipped.report.json").read_text())
    from emim import __version__
    from emim.modelfile import load_metadata

    assert report["engine_version"] == __version__ and report["command"] == "segment"
    assert report["model"]["sha256"] == load_metadata(model_dir)["sha256"] and report["device"] == "cpu"
    assert [i["modality"] for i in report["inputs"]] == list(MODALITIES)
    t1n = batch / "flipped" / "flipped-t1n.nii.gz"
    assert report["inputs"][0]["sha256"] == hashlib.sha256(t1n.read_bytes()).hexdigest()
    assert report["settings"]["overlap"] == 0.0 and report["settings"]["postprocess"]["min_lesion_mm3"] >= 0
    assert set(report["seconds"]) == {"load", "inference", "postprocess"} and report["warnings"] == []
    assert str(out / "flipped.nii.gz") in report["outputs"]

    flipped = nib.load(str(out / "flipped.nii.gz"))
    source = nib.load(str(batch / "flipped" / "flipped-t1n.nii.gz"))
    assert np.array_equal(flipped.affine, source.affine) and flipped.shape == source.shape
    assert np.array_equal(np.asarray(flipped.dataobj), np.asarray(nib.load(str(original)).dataobj)[::-1])


def test_missing_extra_and_foreign_modalities_are_refused_without_output(brats_mini, loaded_model, tmp_path):
    from support.segmenting import segment

    files = {m: brats_mini / CASE / f"{CASE}-{m}.nii.gz" for m in MODALITIES}
    out = tmp_path / "out.nii.gz"
    with pytest.raises(EmimError, match="got 3 image.*needs 4.*missing t2f"):
        segment(loaded_model, {m: files[m] for m in MODALITIES[:3]}, out)
    with pytest.raises(EmimError, match="no modality adc.*exactly 4"):
        segment(loaded_model, {**files, "adc": files["t1n"]}, out)
    prostate = tmp_path / "p001"
    prostate.mkdir()
    for name, source in (("t2w", "t2w"), ("adc", "t1n"), ("hbv", "t1c")):
        os.symlink(files[source], prostate / f"p001_{name}.nii.gz")
    with pytest.raises(EmimError, match=r"case p001: the model needs the modalities t1n, t1c, t2w, t2f.*missing t1n"):
        segment(loaded_model, prostate, out)
    assert list(tmp_path.glob("*.nii.gz")) == [] and not out.exists()


def test_command_line_refuses_a_wrong_number_of_images(brats_mini, model_dir, tmp_path, emim):
    out = tmp_path / "seg.nii.gz"
    images = [f"--image={m}={brats_mini / CASE / f'{CASE}-{m}.nii.gz'}" for m in MODALITIES[:2]]
    result = emim("segment", "--model", str(model_dir), "--output", str(out), "--device", "cpu", *images)
    assert result.returncode == 2
    assert "got 2 image(s) (t1n, t1c) but the model needs 4" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_none_of_the_case_files(brats_mini, tmp_path):
    from emim.data.cases import find_cases
    from emim.data.loading import load_case
    from emim.inference.case_io import write_case_outputs

    case = find_cases(brats_mini / CASE)[0]
    loaded = load_case(case, ["t1n"], with_label=False)
    good = np.zeros(loaded.image.shape[1:], np.uint8)
    with pytest.raises(ValueError, match="does not match the reference grid"):
        write_case_outputs({tmp_path / "a.nii.gz": (loaded, good, np.uint8),
                            tmp_path / "b.nii.gz": (loaded, good[:-1], np.float32)}, tmp_path, case)
    assert list(tmp_path.iterdir()) == []


def test_window_count_matches_monai(loaded_model):
    """Progress percentages rely on counting MONAI's windows the way MONAI places them."""
    from monai.data.utils import dense_patch_slices

    from emim.inference.prediction import count_windows

    for shape, overlap in (((133, 175, 70), 0.5), ((64, 64, 64), 0.25), ((40, 200, 90), 0.0)):
        padded = [max(s, 64) for s in shape]
        interval = [64 if p == 64 else max(int(64 * (1 - overlap)), 1) for p in padded]
        assert count_windows(shape, (64, 64, 64), overlap) == len(dense_patch_slices(padded, (64, 64, 64), interval))


def test_a_case_far_from_the_training_spacing_runs_at_the_models_spacing_and_lands_on_its_own_grid(model_dir,
                                                                                                   tmp_path):
    import io

    from support.segmenting import segment
    from emim.modelfile import load_metadata
    from emim.progress import Progress
    from emim.sample import make_sample_cases

    assert load_metadata(model_dir)["preprocessing"]["spacing"] == [1.0, 1.0, 1.0]  # the real mini cases
    (case,) = make_sample_cases(tmp_path / "cases", 1, seed=3, size="small")  # 2 mm voxels, 120 x 120 x 78
    reference = nib.load(str(case / f"{case.name}-t1n.nii.gz"))

    def run(name: str, **options) -> tuple[nib.Nifti1Image, list[dict]]:
        stream = io.StringIO()
        out = segment(model_dir, case, tmp_path / f"{name}.nii.gz", device="cpu",
                      progress=Progress("json", stream=stream), **FAST, **options)
        events = [json.loads(line) for line in stream.getvalue().splitlines()]
        return nib.load(str(out)), events

    result, events = run("model-spacing")
    assert result.shape == reference.shape and np.array_equal(result.affine, reference.affine)
    (label_event,) = [e for e in events if e["event"] == "output" and e["kind"] == "label"]
    assert label_event["ran_at"] == "1 x 1 x 1 mm" and label_event["case_spacing"] == "2 x 2 x 2 mm"
    assert not [e for e in events if e["event"] == "warning"]

    native, events = run("native", native_spacing=True)
    assert native.shape == reference.shape and np.array_equal(native.affine, reference.affine)
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert any("2 x 2 x 2 mm voxels" in w and "--native-spacing" in w for w in warnings)
    reported = json.loads((tmp_path / "native.report.json").read_text())
    assert reported["warnings"] == warnings and reported["settings"]["ran_at_mm"] == [2.0, 2.0, 2.0]
    assert "ran_at" not in [e for e in events if e["event"] == "output" and e["kind"] == "label"][0]


def test_no_label_or_probability_outside_the_cases_nonzero_voxels_after_the_spacing_round_trip(model_dir, tmp_path,
                                                                                                emim):
    from emim.sample import make_sample_cases

    (case,) = make_sample_cases(tmp_path / "cases", 1, seed=4, size="small")  # 2 mm: runs at the model's 1 mm
    out = tmp_path / "out"
    done = emim("segment", "--model", str(model_dir), "--output", str(out), "--device", "cpu", "--overlap", "0",
                "--sw-batch-size", "4", "--probabilities", "--postprocess", "none",  # even with no cleaning
                "--progress", "json", str(case))
    assert done.returncode == 0, done.stderr
    inside = np.any([np.asarray(nib.load(str(p)).dataobj) != 0 for p in case.glob("*-t*.nii.gz")], axis=0)
    label = np.asarray(nib.load(str(out / f"{case.name}.nii.gz")).dataobj)
    assert not label[~inside].any()
    for region in ("TC", "WT", "ET"):
        probability = np.asarray(nib.load(str(out / f"{case.name}_prob_{region}.nii.gz")).dataobj)
        assert not probability[~inside].any() and probability[inside].max() > 0
