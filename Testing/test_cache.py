"""The preprocessing cache: built once and reused, rebuilt only for a touched file or a changed setting, safe when two
processes build it at once, and leaving nothing half made when the disk is full."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from emim.data.cache import CACHE_MARKER, CacheSettings, cached_cases, new_build_folder
from emim.data.cases import find_cases
from emim.errors import EmimError
from emim.progress import Progress
from test_data_cases import write_nifti

SETTINGS = CacheSettings(("t1n", "t2w"), "zscore-nonzero", False, with_label=True)


def write_cases(root: Path, count: int, shape=(24, 20, 16), peak: float = 500.0) -> Path:
    """`count` small 2-modality cases with labels, a zero background around a brain box."""
    rng = np.random.default_rng(0)
    for i in range(count):
        folder = root / f"case{i:03d}"
        for name in ("t1n", "t2w"):
            image = np.zeros(shape, np.float32)
            image[2:-2, 2:-2, 1:-1] = rng.uniform(1, peak, size=(shape[0] - 4, shape[1] - 4, shape[2] - 2))
            write_nifti(folder / f"case{i:03d}-{name}.nii.gz", image, np.eye(4))
        label = np.zeros(shape, np.uint8)
        label[8:12, 8:12, 6:9] = 2
        write_nifti(folder / f"case{i:03d}-seg.nii.gz", label, np.eye(4))
    return root


class Events:
    """A Progress that keeps the summary event of a cache pass."""

    def __init__(self) -> None:
        self.progress = Progress("none")
        self.summary: dict = {}
        self.progress.event = self._event  # type: ignore[method-assign]

    def _event(self, event: str, **fields) -> None:
        if event == "cache" and "built" in fields and "reused" in fields:
            self.summary = fields


def build(data: Path, cache: Path, settings: CacheSettings = SETTINGS):
    events = Events()
    entries = cached_cases(find_cases(data), settings, cache, events.progress)
    return entries, events.summary


def stored(cache: Path) -> list[Path]:
    """What the cache folder holds besides its mark."""
    return [p for p in cache.iterdir() if p.name != CACHE_MARKER]


def test_a_second_pass_reuses_every_entry_and_a_touched_file_rebuilds_only_its_case(tmp_path):
    data = write_cases(tmp_path / "data", 3)
    first, summary = build(data, tmp_path / "cache")
    assert summary["built"] == 3 and summary["reused"] == 0
    entry = first[0]
    assert entry.array("image").dtype == np.float16 and entry.array("label").dtype == np.uint8
    assert entry.shape == (20, 16, 14) and entry.label_values == (0, 2) and entry.case_id == "case000"
    assert len(entry.array("tumour")) == 4 * 4 * 3  # the tumour voxels labelled crops are centred on

    again, summary = build(data, tmp_path / "cache")
    assert summary["built"] == 0 and summary["reused"] == 3 and [e.folder for e in again] == [e.folder for e in first]

    touched = data / "case001" / "case001-t2w.nii.gz"
    later = touched.stat().st_mtime_ns + 5_000_000_000
    os.utime(touched, ns=(later, later))
    rebuilt, summary = build(data, tmp_path / "cache")
    assert summary["built"] == 1
    assert rebuilt[0].folder == first[0].folder and rebuilt[2].folder == first[2].folder
    assert rebuilt[1].folder != first[1].folder
    assert first[1].folder.exists()  # kept: a run started before the touch may still read it
    assert len(stored(tmp_path / "cache")) == 4

    other = CacheSettings(SETTINGS.modalities, "zscore", False, with_label=True)
    _, summary = build(data, tmp_path / "cache", other)  # another setting: its own entries, the others kept
    assert summary["built"] == 3 and len(stored(tmp_path / "cache")) == 7


def test_values_beyond_float16_are_cached_in_float32(tmp_path):
    data = write_cases(tmp_path / "data", 1, peak=1e6)
    raw = CacheSettings(SETTINGS.modalities, "none", False, with_label=False)
    (entry,), _ = build(data, tmp_path / "cache", raw)
    assert entry.array("image").dtype == np.float32 and float(entry.array("image").max()) > 65504
    assert entry.label_values == () and not entry.has_label


def test_two_processes_building_one_cache_at_once_end_with_one_complete_entry_per_case(tmp_path):
    data = write_cases(tmp_path / "data", 6)
    script = ("import sys; from emim.data.cache import CacheSettings, cached_cases; "
              "from emim.data.cases import find_cases; "
              "cached_cases(find_cases(sys.argv[1]), CacheSettings(('t1n', 't2w'), 'zscore-nonzero', False, True), "
              "sys.argv[2])")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    builders = [subprocess.Popen([sys.executable, "-c", script, str(data), str(tmp_path / "cache")], env=env,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for builder in builders:
        assert builder.wait(timeout=240) == 0, builder.stderr.read()
    names = sorted(p.name for p in stored(tmp_path / "cache"))
    assert len(names) == 6 and not [n for n in names if n.startswith(".")]  # no temporaries left
    entries, summary = build(data, tmp_path / "cache")
    assert summary["built"] == 0
    for entry in entries:  # complete and readable
        assert entry.array("image").shape == (2, *entry.shape) and entry.array("label").shape == entry.shape


def test_a_full_disk_gives_a_clear_error_and_leaves_no_half_entry(tmp_path, monkeypatch):
    data = write_cases(tmp_path / "data", 2)
    real_save = np.save
    saved: list[str] = []

    def fill_up(path, array, **kwargs):  # the second array of the first entry meets a full disk
        saved.append(str(path))
        if len(saved) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, array, **kwargs)

    monkeypatch.setattr(np, "save", fill_up)
    with pytest.raises(EmimError, match="full disk.*--cache DIR"):
        build(data, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [CACHE_MARKER]

    monkeypatch.setattr(np, "save", real_save)
    monkeypatch.setattr("shutil.disk_usage", lambda path: type("Usage", (), {"free": 1024})())
    with pytest.raises(EmimError, match="full disk"):  # refused before anything is written
        build(data, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [CACHE_MARKER]


def test_a_damaged_entry_is_rebuilt_in_place(tmp_path):
    data = write_cases(tmp_path / "data", 1)
    (entry,), _ = build(data, tmp_path / "cache")
    (entry.folder / "meta.json").unlink()  # e.g. a partial delete
    (again,), summary = build(data, tmp_path / "cache")
    assert summary["built"] == 1 and again.folder == entry.folder and again.array("image").shape[0] == 2


def test_a_temporary_left_by_a_killed_builder_is_removed_by_the_next(tmp_path):
    data = write_cases(tmp_path / "data", 1)
    build(data, tmp_path / "cache")  # makes and marks the cache
    stale = new_build_folder(tmp_path / "cache", "someentry")
    (stale / "image.npy").write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = new_build_folder(tmp_path / "cache", "other")  # another builder's, still at work
    build(data, tmp_path / "cache")
    assert not stale.exists() and fresh.exists()
