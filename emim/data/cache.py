"""The preprocessing cache: every training case read, reoriented, normalised and cut to its brain box once, then
memory-mapped, so a run's memory does not grow with the number of cases. A run that trains at a set voxel size (a
fine-tuning started from a model with `--init`, or `--spacing`) has each case's brain box resampled to it, as
`emim segment` feeds the model (trilinear with anti-aliasing for the image, nearest neighbour for the label); the
spacing is part of the entry's name, so entries of other spacings are never mixed up.

Each entry is a folder of uncompressed `.npy` files (the image in float16 when its values fit, else float32; the
label as uint8; the flat indices of tumour and brain voxels that labelled crops are centred on, int32) and a
`meta.json`. Entry names are hashes, never case ids:
`<hash of the case's files and the preprocessing settings>-<hash of their sizes and modification times>`, so a
changed setting makes a separate entry, and a changed (touched) file rebuilds only its case. The entry it replaces is
kept: a run started before may still be reading it (crops reopen their files), so outdated entries are left for
the user to delete with the cache folder when no run uses it. A sequence read from DICOM counts as its series (its
UID and slice files), not as the temporary NIfTI file it is converted to in each run. An entry is written into a
temporary folder and renamed into place, so two processes building the same cache at once both end with one complete
entry, and a failed build (a full disk) leaves nothing half made.

The cache deletes only what it made, since `--cache DIR` may name any folder: it marks a folder it takes as a cache
(`.emim-cache`), refuses a non-empty folder without that mark, and its sweep of a killed builder's leftovers removes
only build folders holding their own mark (`.emim-build`), never another hidden `.*.tmp` folder.

MONAI's PersistentDataset would store the whole transformed case as one pickle that is read in full for every
crop (and unpickled); CacheDataset holds the cases in RAM, which is what this cache removes. So crops are cut
from memory maps here (`emim.data.crops`), reading only the crop's own pages.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emim.data.cases import Case
from emim.errors import EmimError
from emim.progress import Progress

LABEL_ARRAYS = ("label", "tumour", "brain")  # beside `image` in an entry of a labelled case
CACHE_VERSION = 1  # bump when what `load_case` or `build_entry` produces changes: old entries are then ignored
CACHE_FOLDER = "emim-cache"  # the default cache, beside the run folder, so runs on the same data share it
FLOAT16_LIMIT = 60000.0  # largest magnitude stored as float16 (its maximum is 65504); z-scores are far below
STALE_TEMPORARY_S = 3600  # a build folder this old belongs to a killed builder
CACHE_MARKER = ".emim-cache"  # in a folder the cache took: only there are build folders ever removed
BUILD_MARKER = ".emim-build"  # in each build folder: the sweep removes no folder without it
# what a cache holds: entries (also of caches made before the mark), build folders, the mark and its temporary
CACHE_NAMES = re.compile(r"\.?([0-9a-f]{16}-[0-9a-f]{16}|" + re.escape(CACHE_MARKER) + r")(\..+\.tmp)?")
SPACE_MARGIN = 64 * 2**20  # bytes left free on the disk after an entry is written
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


@dataclass(frozen=True)
class CacheSettings:
    """The preprocessing an entry holds the result of."""

    modalities: tuple[str, ...]
    normalization: str
    resample: bool
    with_label: bool
    spacing: tuple[float, float, float] | None = None  # voxel size (mm, RAS) the case is resampled to; None: its own

    def to_dict(self) -> dict:
        # the spacing only when set, so the entries of runs at the cases' own spacing keep their names
        return {"modalities": list(self.modalities), "normalization": self.normalization,
                "resample": self.resample, "with_label": self.with_label, "version": CACHE_VERSION,
                **({"spacing": [float(s) for s in self.spacing]} if self.spacing is not None else {})}


@dataclass(frozen=True)
class CachedCase:
    """One cache entry: small metadata in memory, the arrays opened as memory maps when asked for."""

    case_id: str
    folder: Path
    shape: tuple[int, int, int]  # the brain box (X, Y, Z), canonical voxel order
    spacing: tuple[float, float, float]
    label_values: tuple[int, ...]  # the values the label holds (empty without a label)

    @property
    def has_label(self) -> bool:
        return bool(self.label_values)

    def array(self, name: str) -> np.ndarray:
        """`image` (M, X, Y, Z), `label` (X, Y, Z), `tumour` or `brain` (flat box indices), memory-mapped."""
        return np.load(self.folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)


def cache_folder(chosen: str | None, run_dir: str | Path) -> Path:
    """The chosen cache folder, else `emim-cache` beside the run folder (shared by the runs kept together)."""
    return Path(chosen) if chosen else Path(run_dir).resolve().parent / CACHE_FOLDER


def _sources(case: Case, settings: CacheSettings) -> list[Path]:
    files = [case.images[m] for m in settings.modalities if m in case.images]
    return files + ([case.label] if settings.with_label and case.label is not None else [])


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _keys(case: Case, settings: CacheSettings) -> tuple[list[str], list[Path]]:
    """What names each source of an entry, and the files whose state it is: a modality converted from DICOM by its
    series UID and slice files (its NIfTI is a new temporary file in every run), any other file by its path."""
    converted = {case.images[m]: series for m, series in case.dicom.items()}
    names, files = [], []
    for source in _sources(case, settings):
        series = converted.get(source)
        names.append(series.uid if series else str(source.resolve()))
        files += series.files if series else [source]
    return names, files


def entry_name(case: Case, settings: CacheSettings) -> tuple[str, str]:
    """(identity, full entry name): the identity names the case and settings, the rest its files' state."""
    names, files = _keys(case, settings)
    identity = _digest([case.case_id, names, settings.to_dict()])
    state = []
    for f in files:
        try:
            stat = f.stat()
            state.append([stat.st_size, stat.st_mtime_ns])
        except OSError:
            state.append(None)  # missing: load_case reports it when the entry is built
    return identity, f"{identity}-{_digest(state)}"


def _complete(path: Path) -> bool:
    """True when an .npy file holds exactly the bytes its header declares (not cut short by a copy or a full disk,
    which memory-mapping it would only find later, as `mmap length` errors on every run)."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as file:
            version = npy.read_magic(file)
            read_header = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}.get(version)
            if read_header is None:
                return False
            shape, _, dtype = read_header(file)
            return path.stat().st_size == file.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    except (OSError, ValueError):
        return False


def _read_entry(folder: Path) -> CachedCase | None:
    """The entry in `folder`, or None when it is missing, from another cache version or damaged (then rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("version") != CACHE_VERSION:
            return None
        entry = CachedCase(str(meta["case_id"]), folder, tuple(int(s) for s in meta["shape"]),
                           tuple(float(s) for s in meta["spacing"]), tuple(int(v) for v in meta["label_values"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    arrays = ("image",) + (LABEL_ARRAYS if entry.has_label else ())
    return entry if all(_complete(folder / f"{name}.npy") for name in arrays) else None


def _disk_full(folder: Path, needed: int) -> EmimError:
    return EmimError(f"the preprocessing cache {folder} is on a full disk ({needed / 2**20:.0f} MB needed for the "
                     "next case); free space there or choose a cache folder on another disk with --cache DIR")


def build_entry(case: Case, settings: CacheSettings, folder: Path, name: str) -> CachedCase:
    """Preprocess one case into `folder/name`, atomically; another process's finished entry wins a race."""
    from emim.data.loading import load_case
    from emim.data.brainbox import brain_box
    from emim.data.spacing import differs, rescale, rescale_labels, scaled_shape

    loaded = load_case(case, settings.modalities, settings.normalization, settings.resample,
                       with_label=settings.with_label)
    image, label = brain_box(loaded.image, loaded.label)
    spacing = tuple(loaded.spacing)
    if differs(spacing, settings.spacing):  # as `emim segment` runs the model: trilinear image, nearest label
        shape = scaled_shape(image.shape[1:], spacing, settings.spacing)
        image = rescale(image, spacing, settings.spacing, shape)
        label = None if label is None else rescale_labels(label, spacing, settings.spacing, shape)
        spacing = tuple(float(s) for s in settings.spacing)
    peak = float(np.abs(image).max()) if image.size else 0.0
    arrays = {"image": image.astype(np.float16 if peak <= FLOAT16_LIMIT else np.float32)}
    if label is not None:
        from monai.transforms.utils import map_binary_to_indices

        tumour, brain = map_binary_to_indices(label[None], image, image_threshold=0.0)
        arrays.update(label=label, tumour=np.asarray(tumour, np.int32), brain=np.asarray(brain, np.int32))
    meta = {"case_id": case.case_id, "shape": list(image.shape[1:]), "spacing": list(spacing),
            "source_spacing": list(loaded.spacing),
            "label_values": [] if label is None else np.unique(label).tolist(), "dtype": str(arrays["image"].dtype),
            "sources": [str(f) for f in _sources(case, settings)], **settings.to_dict()}
    needed = sum(a.nbytes for a in arrays.values())
    if shutil.disk_usage(folder).free < needed + SPACE_MARGIN:
        raise _disk_full(folder, needed)
    temporary = new_build_folder(folder, name)
    try:
        for key, array in arrays.items():
            np.save(temporary / f"{key}.npy", array, allow_pickle=False)
        (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(temporary, folder / name)
        except OSError:
            if _read_entry(folder / name) is None:  # not another process's finished entry: a damaged one
                shutil.rmtree(folder / name, ignore_errors=True)
                os.rename(temporary, folder / name)
    except OSError as error:
        if error.errno in DISK_FULL:
            raise _disk_full(folder, needed) from error
        raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return _read_entry(folder / name)  # type: ignore[return-value]


def new_build_folder(folder: Path, name: str) -> Path:
    """A new hidden folder to build entry `name` in, marked as the cache's own, so that a later sweep may remove it
    should its builder be killed."""
    temporary = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=folder))
    (temporary / BUILD_MARKER).touch()  # mkdtemp's folder is new and private: nothing can be planted there yet
    return temporary


def _claim(folder: Path) -> None:
    """Mark `folder` as a cache, or refuse it when it holds anything but cache entries: the cache removes stale
    build folders in it, so it must not take over a folder of the user's."""
    from emim.atomic_write import write_file

    if (folder / CACHE_MARKER).is_file():
        return
    foreign = sorted(p.name for p in folder.iterdir() if not CACHE_NAMES.fullmatch(p.name))
    if foreign:
        raise EmimError(f"{folder} is not a preprocessing cache: it holds {', '.join(foreign[:3])}"
                        f"{' ...' if len(foreign) > 3 else ''} and no {CACHE_MARKER} mark. Give --cache a new or empty "
                        "folder (or leave --cache out: emim-cache beside the run folder).")
    write_file(folder / CACHE_MARKER, json.dumps({"emim": "preprocessing cache", "version": CACHE_VERSION}) + "\n")


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove build folders of killed builders: the cache's own (with BUILD_MARKER) untouched for an hour."""
    now = time.time()
    for temporary in folder.glob(".*.tmp"):
        try:
            if (temporary / BUILD_MARKER).is_file() and now - temporary.stat().st_mtime > STALE_TEMPORARY_S:
                shutil.rmtree(temporary, ignore_errors=True)
        except OSError:
            pass


def cached_cases(cases: Sequence[Case], settings: CacheSettings, folder: str | Path,
                 progress: Progress | None = None) -> list[CachedCase]:
    """The cache entries of `cases` (in order), building the missing or outdated ones with a progress count."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EmimError(f"cannot create the preprocessing cache folder {folder} ({error.strerror}); choose a "
                        "writable folder with --cache DIR") from error
    _claim(folder)
    _remove_stale_temporaries(folder)
    entries, built, started = [], 0, time.monotonic()
    for index, case in enumerate(cases):
        name = entry_name(case, settings)[1]
        entry = _read_entry(folder / name)
        if entry is None:
            entry = build_entry(case, settings, folder, name)
            built += 1
        entries.append(entry)
        if progress is not None:
            progress.count("cache", index + 1, len(cases), built=built)
    if progress is not None:
        progress.event("cache", cases=len(cases), built=built, reused=len(cases) - built, folder=str(folder),
                       seconds=round(time.monotonic() - started, 2))
    return entries
