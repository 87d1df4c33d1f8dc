"""Hostile and careless inputs (the hardening issue's security items), each kept as a regression test.

Every test works on a copy of a real case and checks, by SHA-256, that no input changed, and that nothing was
written outside the chosen output.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emim.errors import EmimError
from support.model_edit import edit_metadata

CASE = "BraTS-GLI-01404-000"  # the smallest of the real mini cases


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def sandbox(brats_mini: Path, tmp_path: Path) -> Path:
    """tmp/data/CASE (a copy of a real case) and tmp/out, the only place a command may write."""
    shutil.copytree(brats_mini / CASE, tmp_path / "data" / CASE)
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.fixture()
def hostile_model(tiny_segmentation_model: Path, tmp_path: Path) -> Path:
    """A copy of a real exported model whose metadata the test edits (`edit_metadata`, checksum made to match)."""
    return Path(shutil.copytree(tiny_segmentation_model, tmp_path / "model"))


def _set_region_name(model: Path, name: str) -> None:
    edit_metadata(model, lambda metadata: metadata["regions"][0].update(name=name))


@pytest.mark.parametrize("name", ["../../../elsewhere/x", "/tmp/x", "..", "wt/../../x"])
def test_a_region_name_that_is_a_path_is_refused_everywhere(sandbox, hostile_model, name, emim):
    _set_region_name(hostile_model, name)
    before = _digests(sandbox)
    info = emim("model-info", str(hostile_model))
    assert info.returncode == 2 and "region name" in info.stderr and "Traceback" not in info.stderr
    result = emim("segment", "--model", str(hostile_model), "--output", str(sandbox / "out"), "--probabilities",
                  "--device", "cpu", "--progress", "json", str(sandbox / "data" / CASE))
    assert result.returncode == 2 and "region name" in result.stderr and "Traceback" not in result.stderr
    assert _digests(sandbox) == before  # no input changed, nothing written anywhere


def test_an_output_that_is_an_input_file_is_refused(sandbox, tiny_segmentation_model, emim):
    case = sandbox / "data" / CASE
    before = _digests(sandbox)
    images = [f"--image={m}={case / f'{CASE}-{m}.nii.gz'}" for m in ("t1n", "t1c", "t2w", "t2f")]
    result = emim("segment", "--model", str(tiny_segmentation_model), "--output", str(case / f"{CASE}-t1n.nii.gz"),
                  "--device", "cpu", "--progress", "json", *images)  # files one by one: no case folder to refuse
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [json.loads(line) for line in result.stdout.splitlines() if '"error"' in line]
    assert errors and "one of the input files" in errors[0]["message"]
    result = emim("segment", "--model", str(tiny_segmentation_model), "--output", str(case / f"{CASE}-t1n.nii.gz"),
                  "--device", "cpu", str(case))
    assert result.returncode == 2 and "is inside the case folder" in result.stderr, result.stderr
    assert _digests(sandbox) == before


def test_an_output_folder_that_is_the_case_folder_is_refused(sandbox, tiny_segmentation_model, tmp_path, emim):
    from dataclasses import replace

    from emim.pretrain.run import default_config, run_pretraining
    from emim.progress import Progress
    from emim.train.trainer import TrainSettings

    case = sandbox / "data" / CASE
    run = tmp_path / "pretraining"
    config = replace(default_config(str(case), "tiny"), batch_size=1, device="cpu", heldout_crops=1,
                     train=TrainSettings(steps=1, warmup_steps=1, log_every=1, eval_every=100, checkpoint_every=1))
    run_pretraining(config, run, progress=Progress("none"))
    before = _digests(sandbox)
    for command in (["reconstruct", "--model", str(run)], ["segment", "--model", str(tiny_segmentation_model)]):
        result = emim(*command, "--output", str(case), "--device", "cpu", str(case))
        assert result.returncode in (1, 2) and "holds input images" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert _digests(sandbox) == before


@pytest.mark.parametrize("case_id", ["../../../elsewhere/x", "/tmp/x", "a/b"])
def test_a_datalist_case_id_that_is_a_path_is_refused(sandbox, tiny_segmentation_model, case_id, emim):
    case = sandbox / "data" / CASE
    datalist = sandbox / "data" / "datalist.json"
    datalist.write_text(json.dumps({
        "modalities": ["t1n", "t1c", "t2w", "t2f"],
        "training": [{"case_id": case_id,
                      "image": [f"{CASE}/{CASE}-{m}.nii.gz" for m in ("t1n", "t1c", "t2w", "t2f")]}]}))
    before = _digests(sandbox)
    check = emim("check-data", str(datalist))
    assert check.returncode != 0 and "case_id" in check.stderr + check.stdout and "Traceback" not in check.stderr
    result = emim("segment", "--model", str(tiny_segmentation_model), "--output", str(sandbox / "out"),
                  "--device", "cpu", str(datalist))
    assert result.returncode == 2 and "case_id" in result.stderr and "Traceback" not in result.stderr
    assert _digests(sandbox) == before
    assert not (sandbox.parent / "elsewhere").exists()


def _hostile_header(path: Path, affine=None, slope: float | None = None) -> None:
    """Rewrite a NIfTI file in place with another sform (qform off) or scl_slope, voxels unchanged."""
    import nibabel as nib
    import numpy as np

    image = nib.load(str(path))
    header = image.header.copy()
    voxels = np.asanyarray(image.dataobj).astype(np.int16)
    if affine is not None:
        header["qform_code"], header["sform_code"] = 0, 1
        header["srow_x"], header["srow_y"], header["srow_z"] = affine[0], affine[1], affine[2]
    hostile = nib.Nifti1Image(voxels, None if affine is not None else image.affine, header)
    if slope is not None:
        hostile.header.set_slope_inter(slope, 0.0)
    nib.save(hostile, str(path))


def _affine(kind: str):
    import numpy as np

    if kind == "zero":
        return np.zeros((4, 4))
    return np.array([[1.0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # singular


def _nan_origin(path: Path) -> None:
    """The file's own affine with a NaN x origin."""
    import nibabel as nib

    affine = nib.load(str(path)).affine.copy()
    affine[0, 3] = float("nan")
    _hostile_header(path, affine=affine)


@pytest.mark.parametrize("kind", ["zero affine", "singular affine", "NaN origin", "scl_slope 1e38"])
def test_unusable_headers_are_refused_with_the_file_named(sandbox, tiny_segmentation_model, kind, emim):
    case = sandbox / "data" / CASE
    t2w = case / f"{CASE}-t2w.nii.gz"
    if kind.startswith("scl"):
        _hostile_header(t2w, slope=1e38)
    elif kind == "NaN origin":  # in every file, so that the grids still agree: only the NaN is wrong
        for image in case.glob("*-t*.nii.gz"):
            _nan_origin(image)
    else:
        _hostile_header(t2w, affine=_affine(kind.split()[0].lower()))
    before = _digests(sandbox)
    check = emim("check-data", str(case), "--json")
    assert check.returncode == 1 and "Traceback" not in check.stderr
    done = json.loads(check.stdout.splitlines()[-1])
    problems = [p for c in done["cases"] for p in c["problems"] if p["severity"] == "error"]
    assert problems and (str(t2w) in problems[0]["message"] or kind == "NaN origin")
    assert any(p["kind"] in ("affine", "overflow") for p in problems)
    result = emim("segment", "--model", str(tiny_segmentation_model), "--output", str(sandbox / "out"),
                  "--device", "cpu", "--progress", "json", str(case))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert any(json.loads(line)["event"] == "error" for line in result.stdout.splitlines())
    assert list((sandbox / "out").iterdir()) == [] and _digests(sandbox) == before


def test_a_batch_goes_on_past_a_case_with_a_broken_header(sandbox, tiny_segmentation_model, emim):
    from emim.sample import make_sample_cases

    data = sandbox / "batch"
    folders = make_sample_cases(data, 3, seed=11, size="small")
    _hostile_header(next(folders[1].glob("*-t2w.nii.gz")), affine=_affine("zero"))
    result = emim("segment", "--model", str(tiny_segmentation_model), "--output", str(sandbox / "out"),
                  "--device", "cpu", "--native-spacing", "--overlap", "0", "--progress", "json", str(data))
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert [e["case"] for e in events if e["event"] == "error"] == [folders[1].name]
    done = events[-1]
    assert done["event"] == "done" and done["succeeded"] == 2
    written = sorted(p.name for p in (sandbox / "out").iterdir())
    assert written == sorted(["volumes.csv"] + [f"{f.name}{suffix}" for f in (folders[0], folders[2])
                                                for suffix in (".nii.gz", ".report.json", ".volumes.csv")])


@pytest.mark.parametrize("option, value", [("--crop", "10"), ("--crop", "512"), ("--batch-size", "0"), ("--lr", "nan"),
                                           ("--checkpoint-every", "0"), ("--workers", "-1"), ("--steps", "0"),
                                           ("--steps", "-5"), ("--accumulate", "0"), ("--patch-size", "0")])
def test_bad_training_options_are_refused_before_anything_starts(sandbox, option, value, emim):
    run = sandbox / "out" / "run"
    result = emim("pretrain", str(sandbox / "data"), "--run-dir", str(run), option, value, "--device", "cpu",
                  "--progress", "json")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert option in result.stderr or option.lstrip("-") in result.stderr, result.stderr
    if "error:" in result.stderr and result.stdout:  # a refusal after parsing is also an `error` event
        assert json.loads(result.stdout.splitlines()[-1])["event"] == "error"
    assert not run.exists()


@pytest.mark.parametrize("field, value", [("depth", 1_000_000), ("num_heads", 0), ("patch_size", 0),
                                          ("embed_dim", "96"), ("crop_size", [4096] * 3)])
def test_network_sizes_in_metadata_are_checked_before_anything_is_built(sandbox, hostile_model, field, value, emim):
    edit_metadata(hostile_model, lambda metadata: metadata["model_config"].update({field: value}))
    result = emim("segment", "--model", str(hostile_model), "--output", str(sandbox / "out"), "--device", "cpu",
                  str(sandbox / "data" / CASE))
    assert result.returncode == 2 and field in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert list((sandbox / "out").iterdir()) == []


def test_temporaries_of_a_checkpoint_write_that_was_killed_are_removed_by_the_next_writer(tmp_path):
    from emim.train.runfolder import RunFolder

    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (checkpoints / "last.pt").write_bytes(b"kept")
    RunFolder(tmp_path / "run")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]


def test_an_interrupted_write_leaves_no_temporary_file(sandbox, monkeypatch):
    import numpy as np

    from emim.data.cases import find_cases
    from emim.data.loading import LoadedCase, load_case
    from emim.inference.case_io import write_case_outputs

    case = find_cases(sandbox / "data" / CASE)[0]
    loaded = load_case(case, ["t1n"], with_label=False)
    original = LoadedCase.image_like_reference
    calls = []

    def interrupted(self, array, dtype):  # Ctrl+C, or SIGTERM through emim.cli, during the second file
        calls.append(dtype)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, array, dtype)

    monkeypatch.setattr(LoadedCase, "image_like_reference", interrupted)
    label = np.zeros(loaded.image.shape[1:], np.uint8)
    out = sandbox / "out"
    with pytest.raises(KeyboardInterrupt):
        write_case_outputs({out / "a.nii.gz": (loaded, label, np.uint8), out / "b.nii.gz": (loaded, label, np.uint8)},
                           out, case)
    assert list(out.iterdir()) == []


def test_sigterm_stops_a_command_like_ctrl_c(sandbox, tiny_segmentation_model):
    import signal
    import time

    process = subprocess.Popen([sys.executable, "-m", "emim", "segment", "--model", str(tiny_segmentation_model),
                                "--output", str(sandbox / "out"), "--device", "cpu", "--progress", "json",
                                str(sandbox / "data" / CASE)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for line in process.stdout:
        if json.loads(line)["event"] == "progress":  # inside the inference
            process.send_signal(signal.SIGTERM)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    time.sleep(0.1)
    assert list((sandbox / "out").iterdir()) == []


def test_resuming_a_run_with_the_wrong_command_says_which_command_to_use(tmp_path, emim):
    from emim.train.runfolder import RunFolder

    run = RunFolder(tmp_path / "run")
    run.write_config({"command": "finetune", "task": "segmentation"})
    del run
    result = emim("pretrain", "--resume", "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "emim finetune --resume" in result.stderr and "Traceback" not in result.stderr


# Reliability (issue #26, the HIGH items).

def _sample_case(root: Path) -> Path:
    """One generated `small` case (seconds to make and segment with the shipped starter model)."""
    from emim.sample import make_sample_cases

    return make_sample_cases(root, 1, seed=5, size="small")[0]


def test_links_planted_at_temporary_and_output_names_are_never_followed(tmp_path, emim):
    """Links at every name a writer used to open ('.CASE.<pid>.tmp.nii.gz', '.volumes.csv.<pid>.tmp', ...) point
    outside --output: the files they point to stay as they were and the outputs are regular files; a link at an
    output's own name is refused, naming it."""
    from emim.bundled import STARTER_MODEL

    case = _sample_case(tmp_path / "data")
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    # the real CLI, held until the links named with its process id are in place
    gate = "import runpy, sys; sys.stdin.readline(); runpy.run_module('emim', run_name='__main__', alter_sys=True)"
    process = subprocess.Popen([sys.executable, "-c", gate, "segment", "--model", STARTER_MODEL, "--output", str(out),
                                "--device", "cpu", "--progress", "json", str(case)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = process.pid
    for name in (f".{case.name}.{pid}.tmp.nii.gz", f".{case.name}.volumes.csv.{pid}.tmp",
                 f".{case.name}.report.json.{pid}.tmp", f".volumes.csv.{pid}.tmp"):
        (outside / name).write_text("precious\n")
        (out / name).symlink_to(outside / name)
    _, stderr = process.communicate("go\n", timeout=300)
    assert process.returncode == 0, stderr
    kept = {p.name: p.read_bytes()[:16] for p in outside.iterdir()}
    assert kept == dict.fromkeys(kept, b"precious\n")
    for name in (f"{case.name}.nii.gz", f"{case.name}.volumes.csv", f"{case.name}.report.json", "volumes.csv"):
        assert (out / name).is_file() and not (out / name).is_symlink(), name

    label = out / f"{case.name}.nii.gz"
    label.unlink()
    label.symlink_to(outside / f".{case.name}.{pid}.tmp.nii.gz")
    result = emim("segment", "--model", STARTER_MODEL, "--output", str(out), "--device", "cpu", str(case))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{label} is a symbolic link" in result.stderr, result.stderr
    assert label.is_symlink() and (outside / f".{case.name}.{pid}.tmp.nii.gz").read_text() == "precious\n"


def test_every_writer_refuses_a_link_at_its_destination(tmp_path):
    from emim.modelfile import save_model
    from emim.train.checkpoint import save_checkpoint
    from test_modelfile import _metadata, _state_dict

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for name in ("last.pt", "model/model.safetensors"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).symlink_to(victim)
    with pytest.raises(EmimError, match="last.pt is a symbolic link"):
        save_checkpoint(tmp_path / "last.pt", {"step": 1})
    with pytest.raises(EmimError, match="model.safetensors is a symbolic link"):
        save_model(tmp_path / "model", _state_dict(), _metadata())
    assert victim.read_text() == "precious\n"
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["model.safetensors"]


def _cache_pass(case: Path, cache: Path) -> None:
    from emim.data.cache import CacheSettings, cached_cases
    from emim.data.cases import find_cases

    cached_cases(find_cases(case), CacheSettings(("t1n",), "zscore-nonzero", False, with_label=False), cache)


def _age(folder: Path) -> Path:
    """`folder` as if last changed two hours ago (past the cache's one-hour staleness)."""
    import os
    import time

    old = time.time() - 7200
    os.utime(folder, (old, old))
    return folder


def test_a_folder_that_is_not_a_cache_is_refused_as_one(tmp_path):
    """`--cache ~/work` removed the user's `~/work/.draft.tmp/`: a non-empty folder the cache did not make is
    refused, and left as it was."""
    case = _sample_case(tmp_path / "data")
    work = tmp_path / "work"
    (work / ".draft.tmp").mkdir(parents=True)
    (work / ".draft.tmp" / "thesis.tex").write_text("precious\n")
    _age(work / ".draft.tmp")
    with pytest.raises(EmimError, match=f"{work} is not a preprocessing cache"):
        _cache_pass(case, work)
    assert sorted(p.relative_to(work).as_posix() for p in work.rglob("*")) == [".draft.tmp", ".draft.tmp/thesis.tex"]
    older = tmp_path / "older" / "0123456789abcdef-0123456789abcdef"  # an entry of a cache made before the mark
    older.mkdir(parents=True)
    _cache_pass(case, older.parent)  # taken as the cache it is
    assert (older.parent / ".emim-cache").is_file() and older.is_dir()


def test_the_cache_sweeps_only_its_own_stale_build_folders(tmp_path):
    case = _sample_case(tmp_path / "data")
    cache = tmp_path / "cache"
    _cache_pass(case, cache)  # a new folder: made and marked by the cache
    draft = cache / ".draft.tmp"  # a user's folder put inside the cache anyway
    draft.mkdir()
    (draft / "thesis.tex").write_text("precious\n")
    _cache_pass(case, _age(draft).parent)
    assert (draft / "thesis.tex").read_text() == "precious\n"

    from emim.data.cache import new_build_folder

    stale = _age(new_build_folder(cache, "0123456789abcdef-0123456789abcdef"))  # a killed builder's
    _cache_pass(case, cache)
    assert not stale.exists() and draft.exists()


def test_a_folder_in_the_working_directory_never_shadows_a_shipped_model_name(tmp_path, monkeypatch, emim):
    """`--model EMIM-starter-tiny` means the shipped model even beside a folder of that name; `./NAME` the folder.
    The run report names the model folder used, absolute."""
    from emim.bundled import MODELS_DIR, STARTER_MODEL, STARTER_PRETRAINING
    from emim.pretrained import read_pretrained
    from emim.modelfile import load_metadata

    case = _sample_case(tmp_path / "data")
    here = tmp_path / "cwd"
    shutil.copytree(MODELS_DIR / "EMIM-starter-tiny-dropout", here / STARTER_MODEL)  # another, valid model
    (here / STARTER_PRETRAINING).mkdir()
    (here / STARTER_PRETRAINING / "metadata.json").write_text("{}")  # garbage
    shipped = load_metadata(MODELS_DIR / STARTER_MODEL)["sha256"]
    local = load_metadata(here / STARTER_MODEL)["sha256"]
    assert shipped != local
    for model, folder, sha256 in ((STARTER_MODEL, MODELS_DIR / STARTER_MODEL, shipped),
                                  (f"./{STARTER_MODEL}", here / STARTER_MODEL, local)):
        out = tmp_path / "out" / sha256
        result = emim("segment", "--model", model, "--output", str(out), "--device", "cpu", str(case), cwd=here)
        assert result.returncode == 0, result.stderr
        report = json.loads((out / f"{case.name}.report.json").read_text())
        assert (report["model"]["sha256"], report["model"]["folder"]) == (sha256, str(folder)), model

    monkeypatch.chdir(here)
    assert read_pretrained(STARTER_PRETRAINING).source == MODELS_DIR / STARTER_PRETRAINING  # --fill-missing, finetune
    with pytest.raises(EmimError, match=str(here / STARTER_PRETRAINING)):
        read_pretrained(f"./{STARTER_PRETRAINING}")


def test_under_progress_none_a_batch_says_every_failed_case_on_stderr_and_segments_the_others(tmp_path, emim):
    """An RGB NIfTI, a missing sequence and an unforeseen failure (a name too long for the file system) each fail
    their own case only; with --progress none each is said on stderr and the exit status is 1."""
    import nibabel as nib
    import numpy as np

    from emim.sample import make_sample_cases

    data, out = tmp_path / "batch", tmp_path / "out"
    good, rgb, missing = make_sample_cases(data, 3, seed=11, size="small")
    t1n = next(rgb.glob("*-t1n.nii.gz"))
    image = nib.load(t1n)
    rgb_voxels = np.stack([np.asarray(image.dataobj)] * 3, axis=-1).astype(np.uint8)
    nib.save(nib.Nifti1Image(rgb_voxels.view([("R", "u1"), ("G", "u1"), ("B", "u1")]).squeeze(-1), image.affine), t1n)
    next(missing.glob("*-t2f.nii.gz")).unlink()
    long_name = data / ("BraTS-" + "L" * 237)  # its files fit, its outputs' temporaries do not (NAME_MAX 255)
    long_name.mkdir()
    for file in good.glob("*-t*.nii.gz"):
        shutil.copy(file, long_name / file.name.replace(f"{good.name}-", ""))  # t1n.nii.gz, ...
    result = emim("segment", "--model", "EMIM-starter-tiny", "--output", str(out), "--device", "cpu",
                  "--native-spacing", "--overlap", "0", "--progress", "none", str(data))
    assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    failures = [line for line in result.stderr.splitlines() if line.startswith("[error]")]
    assert len(failures) == 3, result.stderr
    assert any(rgb.name in f and "colour (RGB)" in f for f in failures), "\n".join(f[:300] for f in failures)
    assert any(missing.name in f for f in failures), failures
    assert any(long_name.name in f for f in failures), result.stderr  # said, not a traceback
    assert (out / f"{good.name}.nii.gz").is_file()


# Model files (issue #26, MEDIUM).

def test_a_hand_edited_metadata_is_refused_and_one_exported_before_the_checksum_still_reads(sandbox, hostile_model,
                                                                                            emim):
    """Swapping two modalities in metadata.json changes what the same weights read; the weights' SHA-256 cannot
    see it, the metadata's own checksum does."""
    path = hostile_model / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["modalities"][0], metadata["modalities"][1] = metadata["modalities"][1], metadata["modalities"][0]
    path.write_text(json.dumps(metadata))
    for command in (["model-info", str(hostile_model)],
                    ["segment", "--model", str(hostile_model), "--output", str(sandbox / "out"), "--device", "cpu",
                     str(sandbox / "data" / CASE)]):
        result = emim(*command)
        assert result.returncode == 2 and "was changed after the model was exported" in result.stderr, result.stderr
    assert list((sandbox / "out").iterdir()) == []
    del metadata["metadata_sha256"]  # as written by an emim before the checksum
    path.write_text(json.dumps(metadata))
    result = emim("model-info", str(hostile_model))
    assert result.returncode == 0 and "metadata checksum: none" in result.stdout, result.stderr


@pytest.mark.parametrize("pattern, problem", [("(a+)+$", "exponential"), ("(t1|t1n)*x", "exponential"),
                                              (r"(t1)\1", "back-reference"), ("a.*b.*c.*d.*e", "unbounded")])
def test_a_name_pattern_that_can_backtrack_for_ever_is_refused(sandbox, hostile_model, pattern, problem, emim):
    edit_metadata(hostile_model, lambda metadata: metadata["modalities"][0].update(patterns=[pattern]))
    result = emim("segment", "--model", str(hostile_model), "--output", str(sandbox / "out"), "--device", "cpu",
                  str(sandbox / "data" / CASE))
    assert result.returncode == 2 and problem in result.stderr and "metadata.json" in result.stderr, result.stderr


def test_a_weights_file_larger_than_any_model_is_refused_before_it_is_read(hostile_model):
    import os

    from emim.modelfile import MAX_WEIGHTS_BYTES, load_model

    weights = hostile_model / "model.safetensors"
    os.truncate(weights, MAX_WEIGHTS_BYTES + 1)  # sparse: no disk used, and a read would take 4 GiB of memory
    with pytest.raises(EmimError, match=r"it is 4\.0 GiB, more than any emim model"):
        load_model(hostile_model)


def test_a_training_spacing_that_would_resample_to_a_huge_grid_is_refused_before_any_allocation(sandbox,
                                                                                                 hostile_model, emim):
    edit_metadata(hostile_model, lambda metadata: metadata["preprocessing"].update(spacing=[0.1, 0.1, 0.1]))
    result = emim("segment", "--model", str(hostile_model), "--output", str(sandbox / "out"), "--device", "cpu",
                  str(sandbox / "data" / CASE))
    assert result.returncode == 1 and "more than 67,108,864" in result.stderr, result.stderr
    assert list((sandbox / "out").iterdir()) == []
    edit_metadata(hostile_model, lambda metadata: metadata["preprocessing"].update(spacing=[0, 1, 1]))
    result = emim("model-info", str(hostile_model))
    assert result.returncode == 2 and "preprocessing.spacing" in result.stderr, result.stderr


def test_a_truncated_cache_array_is_rebuilt_not_failed_on_every_run(tmp_path):
    import numpy as np

    from emim.data.cache import CacheSettings, cached_cases
    from emim.data.cases import find_cases

    case, cache = _sample_case(tmp_path / "data"), tmp_path / "cache"
    settings = CacheSettings(("t1n",), "zscore-nonzero", False, with_label=False)
    (entry,) = cached_cases(find_cases(case), settings, cache)
    expected = np.array(entry.array("image"))
    image = entry.folder / "image.npy"
    image.write_bytes(image.read_bytes()[:-1000])  # a copy cut short, a full disk
    (again,) = cached_cases(find_cases(case), settings, cache)
    np.testing.assert_array_equal(again.array("image"), expected)
    assert again.folder == entry.folder and [p.name for p in cache.iterdir() if p.name.startswith(".")] == [
        ".emim-cache"]


def test_an_output_in_another_case_folder_or_the_data_folder_is_refused_before_the_first_case(tmp_path, emim):
    from emim.bundled import STARTER_MODEL
    from emim.sample import make_sample_cases

    data = tmp_path / "data"
    first, second = make_sample_cases(data, 2, seed=3, size="small")
    before = _digests(data)
    for output, said in ((second, "is inside the case folder"), (second / "labels", "is inside the case folder"),
                         (data, "is the folder the cases are read from")):
        for command in ("segment", "reconstruct"):
            model = STARTER_MODEL if command == "segment" else "EMIM-starter-tiny-pretraining"
            result = emim(command, "--model", model, "--output", str(output), "--device", "cpu", str(data))
            assert result.returncode == 2 and said in result.stderr, (command, result.stderr)
    assert _digests(data) == before and not (second / "labels").exists()


# Inputs that are not a case's images (issue #26, MEDIUM).

@pytest.mark.parametrize("kind", ["constant", "copied", "label map"])
def test_a_constant_a_copied_or_a_label_map_sequence_is_refused_by_check_data_and_segment(sandbox, kind, emim):
    import nibabel as nib
    import numpy as np

    case = sandbox / "data" / CASE
    t1n, t1c = case / f"{CASE}-t1n.nii.gz", case / f"{CASE}-t1c.nii.gz"
    if kind == "constant":
        image = nib.load(t1c)
        nib.save(nib.Nifti1Image(np.full(image.shape, 412, np.int16), image.affine), t1c)
        said = "holds one value (412) everywhere"
    elif kind == "copied":
        for name in ("t1c", "t2w", "t2f"):
            shutil.copy(t1n, case / f"{CASE}-{name}.nii.gz")
        said = "holds the same voxels as the t1n file"
    else:
        shutil.copy(case / f"{CASE}-seg.nii.gz", t1c)
        said = "a label map (segmentation), not an MR image"
    before = _digests(sandbox)
    check = emim("check-data", str(case))
    assert check.returncode == 1 and said in check.stdout + check.stderr, check.stdout
    result = emim("segment", "--model", "EMIM-starter-tiny", "--output", str(sandbox / "out"), "--device", "cpu",
                  str(case))
    assert result.returncode == 1 and said in result.stderr and "t1c" in result.stderr, result.stderr
    assert list((sandbox / "out").iterdir()) == [] and _digests(sandbox) == before
