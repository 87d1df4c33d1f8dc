"""What a run folder records about how a model was made, which export copies into the model's provenance: the
training and validation cases with their median spacing (`cases.json`, written by fine-tuning), the last
validation record, and the run itself. Beside the run folder, so the fine-tuning runners and export both read it
without importing each other."""

from __future__ import annotations

import json
import time
from typing import Any

from emim.atomic_write import write_file
from emim.contract import CASES_FILE, EVAL_RECORD
from emim.train.runfolder import RunFolder, read_metrics


def last_eval(run: RunFolder, prefix: str) -> dict[str, Any]:
    """The last evaluation record's values whose names start with `prefix` (e.g. val_dice_), with its step."""
    if not run.metrics_path.is_file():
        return {}
    evals = [r for r in read_metrics(run.metrics_path) if r.get("kind") == EVAL_RECORD
             and any(k.startswith(prefix) for k in r)]
    if not evals:
        return {}
    return {"step": evals[-1]["step"], **{k: v for k, v in evals[-1].items() if k.startswith(prefix)}}


def run_provenance(run: RunFolder, config: dict[str, Any], step: int) -> dict[str, Any]:
    provenance = {"run": str(run.path.resolve()), "data": config["data"], "steps": step,
                  "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "engine_version": config.get("engine_version")}
    cases_file = run.path / CASES_FILE
    if cases_file.is_file():
        cases = json.loads(cases_file.read_text())
        provenance.update({"training_cases": len(cases["train"]), "validation_cases": cases["validation"]})
    return provenance


def write_cases_file(run: RunFolder, train: list[str], validation: list[str],
                     spacings: list[tuple[float, float, float]]) -> None:
    """RUN/cases.json from fine-tuning: which cases trained and validated, and the training cases' median spacing
    (mm, RAS order), which export records so inference can run cases at the model's spacing."""
    import numpy as np

    spacing = np.median(spacings, axis=0).round(3).tolist()
    write_file(run.path / CASES_FILE, json.dumps({"train": train, "validation": validation, "spacing": spacing}) + "\n")


def training_spacing(run: RunFolder) -> list[float] | None:
    """Median voxel spacing (mm, RAS order) of the training cases, recorded by fine-tuning; None if unknown."""
    cases_file = run.path / CASES_FILE
    return json.loads(cases_file.read_text()).get("spacing") if cases_file.is_file() else None
