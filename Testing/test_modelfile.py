"""Model folders: round trip, and refusal (with no code run and nothing written) of unsafe or damaged files."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch

from emim import __version__
from emim.errors import EmimError
from emim.labels import BRATS_LABELS, BRATS_REGIONS
from emim.model_metadata import FORMAT_VERSION
from emim.modelfile import (METADATA_FILE, WEIGHTS_FILE, describe_model, load_metadata, load_model,
                            save_model)
from support.model_edit import edit_metadata


def _metadata() -> dict:
    return {
        "task": "segmentation", "name": "test model", "description": "round-trip test",
        "modalities": [{"name": m, "title": m.upper(), "patterns": [m]} for m in ("t1n", "t1c", "t2w", "t2f")],
        "model_config": {"crop_size": (64, 64, 64), "patch_size": 16, "embed_dim": 96, "depth": 4},
        "network": {"feature_size": 16},
        "preprocessing": {"normalization": "zscore-nonzero", "orientation": "RAS", "spacing": None},
        "inference": {"overlap": 0.5, "blend": "gaussian", "sw_batch_size": 2},
        "labels": BRATS_LABELS, "regions": BRATS_REGIONS,
        "provenance": {"data": "brats-gli-mini", "steps": 3, "val_dice": {"TC": 0.5, "WT": float("nan")}},
    }


def _state_dict() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 4, generator=generator)
    return {
        "encoder.weight": weight,
        "encoder.tied": weight,  # shares memory with encoder.weight, as tied weights do
        "encoder.view": weight[:, :2],  # a non-contiguous view
        "decoder.bias": torch.randn(8, generator=generator).to(torch.bfloat16),
        "steps": torch.tensor([3, 5], dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
    }


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    return save_model(tmp_path / "model", _state_dict(), _metadata())


def _rehash(folder: Path) -> None:
    """What an attacker (or a careless copy script) would do: make the metadata hash match the new file."""
    digest = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    edit_metadata(folder, lambda metadata: metadata.update(sha256=digest))


def test_round_trip_keeps_tensors_and_metadata(model: Path) -> None:
    original = _state_dict()
    tensors, metadata = load_model(model)
    assert set(tensors) == set(original)
    for name, tensor in original.items():
        assert tensors[name].dtype == tensor.dtype and torch.equal(tensors[name], tensor), name
    expected = json.loads(json.dumps(_metadata()).replace("NaN", "null"))
    assert {k: metadata[k] for k in expected} == expected
    assert metadata["format"] == "emim-model" and metadata["format_version"] == FORMAT_VERSION
    assert metadata["engine_version"] == __version__
    assert metadata["sha256"] == hashlib.sha256((model / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert sorted(p.name for p in model.iterdir()) == [METADATA_FILE, WEIGHTS_FILE]  # no temp files left


def test_model_info_prints_what_the_model_is(model: Path, emim) -> None:
    text = describe_model(load_metadata(model))
    assert "Necrotic tumor core" in text and "t2f" in text and "TC = labels [1, 3]" in text
    result = emim("model-info", str(model))
    assert result.returncode == 0, result.stderr
    assert "Enhancing tumor" in result.stdout and "SHA-256 verified" in result.stdout
    as_json = emim("model-info", str(model), "--json")
    assert json.loads(as_json.stdout)["labels"][1]["name"] == "Peritumoral edema"


class _Payload:
    """Unpickling this creates the marker file: proof that loading ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["pickle", "pickle-protocol-0", "torch.save"])
@pytest.mark.parametrize("hash_updated", [False, True])
def test_malicious_pickle_is_refused_and_never_executed(model: Path, tmp_path: Path, writer: str,
                                                        hash_updated: bool, emim) -> None:
    marker = tmp_path / "pwned"
    payload = {"encoder.weight": _Payload(marker)}
    weights = model / WEIGHTS_FILE
    if writer == "torch.save":
        torch.save(payload, weights)
    else:
        weights.write_bytes(pickle.dumps(payload, protocol=0 if writer.endswith("0") else pickle.HIGHEST_PROTOCOL))
    # the test's payload is real: plain unpickling does create the marker (done on a copy, then removed)
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control"))).close()
    assert (tmp_path / "control").exists()
    if hash_updated:
        _rehash(model)

    with pytest.raises(EmimError) as refused:
        load_model(model)
    message = str(refused.value)
    assert str(weights) in message and "re-export" in message
    if writer != "pickle-protocol-0":  # protocol 0 has no signature; it is refused as not-safetensors/bad hash
        assert "pickle/torch.save file, refusing to unpickle" in message
    result = emim("model-info", str(model))
    assert result.returncode == 2 and str(weights) in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("hash_updated", [False, True])
def test_truncated_weights_are_refused(model: Path, hash_updated: bool) -> None:
    weights = model / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-50])
    if hash_updated:
        _rehash(model)
    with pytest.raises(EmimError, match="truncated") as refused:
        load_model(model)
    assert str(weights) in str(refused.value)


def test_flipped_byte_is_refused_as_checksum_mismatch(model: Path) -> None:
    weights = model / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01  # inside the tensor data: the file still parses, only the hash can tell
    weights.write_bytes(bytes(data))
    with pytest.raises(EmimError, match="does not match the SHA-256") as refused:
        load_model(model)
    assert "modified or corrupted" in str(refused.value)


def test_missing_files_and_unsupported_format_version_are_refused(tmp_path: Path) -> None:
    no_metadata = save_model(tmp_path / "a", _state_dict(), _metadata())
    (no_metadata / METADATA_FILE).unlink()
    with pytest.raises(EmimError, match=f"{METADATA_FILE} is missing"):
        load_model(no_metadata)
    no_weights = save_model(tmp_path / "b", _state_dict(), _metadata())
    (no_weights / WEIGHTS_FILE).unlink()
    with pytest.raises(EmimError, match=f"{WEIGHTS_FILE} is missing"):
        load_model(no_weights)
    future = save_model(tmp_path / "c", _state_dict(), _metadata())
    edit_metadata(future, lambda metadata: metadata.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(EmimError, match="upgrade emim"):
        load_model(future)
    with pytest.raises(EmimError, match="not a model folder"):
        load_model(tmp_path / "nowhere")


def test_bad_metadata_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    metadata = _metadata()
    del metadata["regions"]
    with pytest.raises(EmimError, match="regions"):
        save_model(tmp_path / "out", _state_dict(), metadata)
    assert not (tmp_path / "out").exists()
    metadata = _metadata()
    metadata["regions"] = [{"name": "ET", "labels": [4]}]
    with pytest.raises(EmimError, match="label values"):
        save_model(tmp_path / "out", _state_dict(), metadata)
    assert not (tmp_path / "out").exists()


def test_failed_overwrite_keeps_the_previous_model(model: Path) -> None:
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    with pytest.raises(TypeError):
        save_model(model, {"x": torch.zeros(1), "not a tensor": [1, 2]}, _metadata())  # type: ignore[dict-item]
    with pytest.raises(NotImplementedError):  # fails while writing: a meta tensor has no data to copy
        save_model(model, {"x": torch.zeros(1), "y": torch.empty(2, device="meta")}, _metadata())
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    load_model(model)


def test_model_files_are_readable_by_whoever_the_folder_is_shared_with(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        folder = save_model(tmp_path / "shared", _state_dict(), _metadata())
    finally:
        os.umask(previous)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {WEIGHTS_FILE: 0o644, METADATA_FILE: 0o644}
