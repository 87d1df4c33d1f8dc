"""Every bench script's `--smoke` run: each stage end to end at the smallest budget, so that a bench cannot rot
unseen (issue #27). The scripts run in this process (`main(argv)`; a new Python spends seconds importing torch), with
the allocator settings already in the environment (so `ensure_malloc_env` does not re-execute pytest), Python's
temporary folder inside tmp_path and the engine processes' a short new one (removed afterwards); each test checks
what the run wrote, and that it wrote nothing into the repository.
bench/oracle_panoptica.py, the half of bench/brats_oracle.py that runs the AGPL BraTS package in a Python of its
own, runs only where such a Python is given (EMIM_ORACLE_PYTHON).
"""

from __future__ import annotations

import importlib
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_brats_oracle import _oracle_python

REPO = Path(__file__).resolve().parents[1]
# where a bench writes by default, which a smoke run must leave alone (docs/: only the picture; others edit the rest)
WATCHED = (REPO / "bench" / "results", REPO / "Resources", REPO / "docs" / "sample-vs-real.png")
REGIONS = {"WT", "TC", "ET"}


def _read(folder: Path, name: str) -> dict[str, Any]:
    return json.loads((folder / name).read_text())


def _positive(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


def _dice(scores: dict[str, Any]) -> bool:
    return set(scores) >= REGIONS and all(0 <= scores[r] <= 1 for r in REGIONS)


def _brats_oracle(results: Path) -> None:
    written = _read(results, "brats-oracle.json")
    assert written["emim"].keys() == {"SMOKE-0001 (raw)", "SMOKE-0001 (model)"}, "raw and post-processed"
    for case in written["emim"].values():
        assert case.keys() == REGIONS and all(0 <= r["global_dsc"] <= 1 and r["tp"] >= 0 for r in case.values())


def _oracle_panoptica(results: Path) -> None:
    written = _read(results, "brats-oracle.json")
    assert written["pairs_compared"] == 6 and written["counts_equal"] == 6, written["rows"]
    assert written["max_global_dice_gap"] < 1e-4


def _collapse_ablation(results: Path) -> None:
    written = _read(results / "collapse_ablation", "collapse_ablation.json")
    assert [row["variant"] for row in written["rows"]] == ["E-MIM (HMP + PBT)"]
    assert _positive(written["rows"][0]["collapsed"], *written["rows"][0]["rank_end"])
    assert set(written["dice"]) == {"scratch (no pretraining)", "E-MIM (HMP + PBT)"}
    assert all(_dice(scores) for scores in written["dice"].values())
    assert (results / "collapse_ablation" / "collapse_ablation.png").stat().st_size > 0


def _data_scaling(results: Path) -> None:
    written = _read(results, "data_scaling_cpu.json")
    (row,) = written["scaling"]
    first, second = row["first_run"], row["second_run"]
    assert (row["cases"], first["cache_built"], second["cache_reused"]) == (2, 2, 2)
    assert _positive(first["first_step_s"], first["rss"], first["tree_pss"], second["first_step_s"])
    assert [r["with_label"] for r in written["loader"]] == [False, True]
    assert _positive(*(r["crops_per_s"] for r in written["loader"]))
    assert set(written["gpu_need"]) == {"tiny batch 2", "tiny batch 8"}


def _label_efficiency(results: Path) -> None:
    written = _read(results, "label_efficiency.json")
    assert [r["path"] for r in written["rows"]] == ["shipped", "adapted", "encoder", "emim", "mim", "scratch"]
    assert all(_positive(r["seconds"]) and _dice({k: r[f"dice_{k}"] for k in REGIONS}) for r in written["rows"])
    assert (results / "label_efficiency.png").stat().st_size > 0


def _missing_modality(results: Path) -> None:
    written = _read(results, "missing_modality_cpu.json")["results"]
    starter, dropout = written["starter (no dropout) / real"], written["dropout 0.5 / real"]
    assert "drop" not in starter and set(dropout) == {"all", "drop", "fill"}
    assert all(_dice(scores["t2f"]) for scores in (starter["fill"], dropout["drop"], dropout["fill"]))
    assert -1 <= starter["fill"]["t2f"]["synthetic_r"] <= 1
    recorded = _read(results / "missing-work" / "model", "metadata.json")["provenance"]["missing_sequence_dice"]
    assert _dice(recorded["all"])


def _overlap_accuracy(results: Path) -> None:
    rows = _read(results, "overlap_accuracy_cpu.json")["rows"]
    assert [r["overlap"] for r in rows] == [0.5, 0.25] and _positive(*(r["seconds"] for r in rows))
    assert rows[0]["voxels differing from first overlap %"] == 0
    assert all(0 <= r[f"Dice {k}"] <= 1 for r in rows for k in REGIONS)


def _pretrain_throughput(results: Path) -> None:
    written = _read(results, "pretrain_throughput_cpu_tiny64.json")
    assert len(written["models"]) == 2 and len(written["data"]) == 2
    assert _positive(*(m[k] for m in written["models"] for k in ("step_median_s", "gflop_per_step", "mfu")))
    assert _positive(*(d["data_crops_per_s"] for d in written["data"]), written["speedup_vs_baseline"])


def _real_case_quality(results: Path) -> None:
    written = _read(results, "real-quality-EMIM-starter-tiny.json")
    assert written["cases"] == ["SMOKE-0001"] and set(written["settings"]) == {"model", "none"}
    assert all(_dice({k: s["mean"][f"dice_{k}"] for k in REGIONS}) for s in written["settings"].values())


def _reconstruction_error(results: Path) -> None:
    rows = _read(results, "reconstruction_error.json")["rows"]
    assert [r["pattern"] for r in rows] == ["patch", "position", "modal"]
    assert _positive(*(r[k] for r in rows for k in ("masked_mse", "hidden_variance", "hidden_voxels")))


def _sample_vs_real(results: Path) -> None:
    from matplotlib.image import imread

    assert imread(results / "sample-vs-real.png").shape[:2] == (414, 720)  # 8 x 4.6 inches at 90 dpi


def _scaling(results: Path) -> None:
    written = _read(results, "scaling_cpu_tiny.json")
    (size,) = written["segmentation_vs_size"]
    (batch,) = written["pretraining_vs_batch"]
    assert size["windows"] == 1 and _positive(size["seconds"], size["peak_rss_gib"], batch["crops_per_s"])


def _segmentation_e2e(results: Path) -> None:
    ours, reference = _read(results, "segmentation_e2e_cpu.json")["rows"]
    assert (ours["pipeline"], reference["pipeline"]) == ("ours", "reference")
    assert set(ours["shares"]) == {"load", "inference", "postprocess"}  # from the run report segment_case writes
    assert set(reference["shares"]) == {"read", "orient", "normalise", "infer", "labels", "write"}
    for row in (ours, reference):
        assert row["windows"] == 1 and _positive(row["median_s"], row["tflop_per_case"])
        assert sum(row["shares"].values()) == pytest.approx(1, abs=0.01)
    assert 0 <= ours["label_agreement"] <= 1


def _starter_model(results: Path) -> None:
    provenance = _read(results / "models" / "EMIM-starter-tiny", "metadata.json")["provenance"]
    assert provenance["recipe"]["pretrain_steps"] == provenance["recipe"]["finetune_steps"] == 1
    assert _positive(provenance["seconds"]["pretrain"], provenance["seconds"]["finetune"])
    assert list(provenance["real_cases"]["per_case"]) == ["SMOKE-0001"]
    assert (results / "models" / "EMIM-starter-tiny-pretraining" / "metadata.json").is_file()


ORACLE = _oracle_python()
SMOKES = [  # script, options beyond --smoke --results, what must hold in what it wrote
    pytest.param("brats_oracle", ["--oracle-python", ""], _brats_oracle, id="brats_oracle"),
    pytest.param("brats_oracle", ["--oracle-python", ORACLE or ""], _oracle_panoptica, id="oracle_panoptica",
                 marks=pytest.mark.skipif(ORACLE is None, reason="no Python with brats-evaluation "
                                                                 "(set EMIM_ORACLE_PYTHON)")),
    *(pytest.param(script, [], check, id=script) for script, check in (
        ("collapse_ablation", _collapse_ablation), ("data_scaling", _data_scaling),
        ("label_efficiency", _label_efficiency), ("missing_modality", _missing_modality),
        ("overlap_accuracy", _overlap_accuracy), ("pretrain_throughput", _pretrain_throughput),
        ("real_case_quality", _real_case_quality), ("reconstruction_error", _reconstruction_error),
        ("sample_vs_real", _sample_vs_real), ("scaling", _scaling), ("segmentation_e2e", _segmentation_e2e),
        ("starter_model", _starter_model))),
]


def _files(paths: tuple[Path, ...]) -> dict[Path, int]:
    """Modification time of each file in or at `paths`."""
    files = [f for path in paths for f in (path.rglob("*") if path.is_dir() else [path]) if f.is_file()]
    return {f: f.stat().st_mtime_ns for f in files}


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path as the only place a bench may write; what a bench changes in this process is put back afterwards:
    torch's thread count (data_scaling pins 1) and the SIGTERM handler (`emim` commands run in-process install one).
    No bench changes the working directory or sys.argv."""
    import torch

    monkeypatch.syspath_prepend(str(REPO))  # `bench` is a folder of the repository, not an installed package
    from bench.common import MALLOC_ENV

    for key, value in MALLOC_ENV.items():
        monkeypatch.setenv(key, value)
    # the engine processes data_scaling starts get a short temporary folder of their own (their data loader workers
    # name sockets under it); this process, tmp_path's (torch keeps paths under it, e.g. torchinductor_root)
    temporary = tempfile.mkdtemp(prefix="emim-smoke-")
    monkeypatch.setenv("TMPDIR", temporary)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    threads, sigterm, cwd, argv = torch.get_num_threads(), signal.getsignal(signal.SIGTERM), Path.cwd(), sys.argv[:]
    before = _files(WATCHED)
    try:
        yield tmp_path / "results"
    finally:
        torch.set_num_threads(threads)
        signal.signal(signal.SIGTERM, sigterm)
        shutil.rmtree(temporary, ignore_errors=True)
    assert (Path.cwd(), sys.argv) == (cwd, argv)
    assert _files(WATCHED) == before, "a smoke run wrote into the repository"


@pytest.mark.parametrize(("script", "options", "check"), SMOKES)
def test_bench_smoke(script: str, options: list[str], check: Callable[[Path], None], isolated: Path) -> None:
    module = importlib.import_module(f"bench.{script}")
    assert not module.main(["--smoke", "--results", str(isolated), *options])
    check(isolated)
