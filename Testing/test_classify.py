"""Classification: labels CSV checks, AUC, fine-tuning from a pretraining run, export, and `emim classify`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emim.cli import main
from emim.errors import EmimError
from emim.finetune.class_labels import read_class_labels
from emim.finetune.class_metrics import binary_auc, macro_auc

CLASSES = {"BraTS-GLI-00360-000": "high", "BraTS-GLI-00500-001": "low", "BraTS-GLI-01404-000": "high"}


def _write_csv(path: Path, rows: dict[str, str], header: str = "case_id,label") -> Path:
    path.write_text("\n".join([header, *(f"{case},{label}" for case, label in rows.items())]) + "\n")
    return path


def _fake_pretraining(data: Path, run: Path) -> dict:
    """A pretraining run folder (config.json + checkpoints/last.pt) with recognisable, non-random encoder weights."""
    import torch

    from emim.pretrain.model import EMIMPretrainer
    from emim.pretrain.run import default_config
    from emim.train.checkpoint import save_checkpoint

    config = default_config(str(data), "tiny")
    torch.manual_seed(1234)
    model = EMIMPretrainer(config.model)
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.add_(0.5)
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    save_checkpoint(run / "checkpoints" / "last.pt", {"model": model.state_dict(), "step": 7})
    return {k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}


def test_finetune_from_pretraining_export_and_classify(brats_mini: Path, tmp_path: Path, capsys, emim):
    from emim.modelfile import load_model

    labels = _write_csv(tmp_path / "labels.csv", CLASSES)
    pretrained = _fake_pretraining(brats_mini, tmp_path / "pretrain")
    run, model = tmp_path / "run", tmp_path / "model"
    result = emim("finetune-classifier", str(brats_mini), "--labels", str(labels), "--run", str(run), "--pretrained",
                  str(tmp_path / "pretrain"), "--steps", "3", "--batch-size", "1", "--eval-every", "100",
                  "--checkpoint-every", "3", "--device", "cpu", "--progress", "json", "--export",
                  str(model))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    start = next(e for e in events if e["event"] == "start" and e["command"] == "finetune-classifier")
    assert start["pretrained_tensors"] == len(pretrained)
    assert start["classes"] == ["high", "low"] and start["validation_cases"] == 1 and start["training_cases"] == 2
    # one validation case holds one class: AUC is undefined and the user is told
    assert any(e["event"] == "warning" and "AUC is undefined" in e["message"] for e in events)

    state, metadata = load_model(model)
    assert metadata["task"] == "classification"
    assert metadata["preprocessing"]["spacing"] == [1.0, 1.0, 1.0]  # the training cases': 2 mm cases get resampled
    assert metadata["classes"] == [{"value": 0, "name": "high"}, {"value": 1, "name": "low"}]
    assert [m["name"] for m in metadata["modalities"]] == ["t1n", "t1c", "t2w", "t2f"]
    provenance = metadata["provenance"]
    assert provenance["steps"] == 3 and provenance["validation_accuracy"] in (0.0, 1.0)
    assert provenance["validation_auc"] is None and provenance["pretrained"] == str(tmp_path / "pretrain")
    assert len(provenance["validation_cases"]) == 1 and CLASSES[provenance["validation_cases"][0]] == "high"
    # the encoder started from the pretraining: 3 small steps away from it, far from any random init
    drift = max(float((state[f"encoder.{k}"] - v).abs().max()) for k, v in pretrained.items())
    assert drift < 0.01

    out = tmp_path / "classified"
    result = emim("classify", "--model", str(model), str(brats_mini), "--device", "cpu", "--output", str(out),
                  "--progress", "json")
    assert result.returncode == 0, result.stderr
    done = [json.loads(line) for line in result.stdout.splitlines()][-1]
    assert done["event"] == "done" and set(done["probabilities"]) == set(CLASSES)
    for case, probabilities in done["probabilities"].items():
        assert set(probabilities) == {"high", "low"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert all(0 <= p <= 1 for p in probabilities.values())
        assert done["predicted"][case] == max(probabilities, key=probabilities.get)
        written = json.loads((out / f"{case}.classification.json").read_text())
        assert written["probabilities"] == probabilities and written["predicted"] == done["predicted"][case]
        report = json.loads((out / f"{case}.report.json").read_text())
        assert report["command"] == "classify" and report["model"]["sha256"] == metadata["sha256"]
        assert len(report["inputs"]) == 4 and len(report["inputs"][0]["sha256"]) == 64
        assert "classify" in report["seconds"] and report["settings"]["resample"] is False

    from emim.data.cases import find_cases
    from emim.inference.classify import classify_case, load_classification_model
    from emim.sample import make_sample_cases

    (coarse,) = find_cases(make_sample_cases(tmp_path / "coarse", 1, seed=5, size="small")[0])  # 2 mm voxels
    tiles: list[int] = []
    scores = classify_case(load_classification_model(model, "cpu"), coarse, on_batch=lambda d, n: tiles.append(n))
    assert set(scores) == {"high", "low"} and sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert tiles[-1] > 8  # tiled at the model's 1 mm: the 2 mm brain box alone would need at most 2x2x2 tiles

    case = brats_mini / "BraTS-GLI-01404-000"
    images = [f"--image={m}={case / f'BraTS-GLI-01404-000-{m}.nii.gz'}" for m in ("t1n", "t1c", "t2w", "t2f")]
    capsys.readouterr()
    assert main(["classify", "--model", str(model), "--device", "cpu", "--progress", "none", *images]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["case", "high", "low", "predicted"]
    row = table[1].split()
    assert row[0] == "BraTS-GLI-01404-000" and float(row[1]) + float(row[2]) == pytest.approx(1.0, abs=2e-4)
    assert row[1:3] == [f"{done['probabilities'][row[0]][c]:.4f}" for c in ("high", "low")]
    # without --output the run report comes in the done event
    assert main(["classify", "--model", str(model), "--device", "cpu", "--progress", "json", *images]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])["reports"]["BraTS-GLI-01404-000"]
    assert report["command"] == "classify" and report["outputs"] == [] and len(report["model"]["sha256"]) == 64
    assert [entry["modality"] for entry in report["inputs"]] == ["t1n", "t1c", "t2w", "t2f"]
    assert all(len(entry["sha256"]) == 64 for entry in report["inputs"]) and "classify" in report["seconds"]


@pytest.mark.parametrize("change, named", [({"BraTS-GLI-99999-000": "low"}, "BraTS-GLI-99999-000"),
                                           ({"BraTS-GLI-00500-001": None}, "BraTS-GLI-00500-001")])
def test_labels_csv_with_unknown_or_missing_case_is_refused(brats_mini, tmp_path, capsys, change, named):
    rows = {**CLASSES, **change}
    labels = _write_csv(tmp_path / "labels.csv", {k: v for k, v in rows.items() if v is not None})
    code = main(["finetune-classifier", str(brats_mini), "--labels", str(labels), "--run", str(tmp_path / "run"),
                 "--steps", "1", "--device", "cpu", "--progress", "none"])
    assert code == 2
    error = capsys.readouterr().err
    assert named in error and str(labels) in error
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_labels_csv_rules(tmp_path):
    ids = ["a", "b", "c"]
    numeric = read_class_labels(_write_csv(tmp_path / "n.csv", {"a": "10", "b": "9", "c": "2"}), ids)
    assert numeric.names == ("2", "9", "10") and numeric.targets == {"a": 2, "b": 1, "c": 0}
    words = read_class_labels(_write_csv(tmp_path / "w.csv", {"a": "wt", "b": "mut", "c": "wt"}), ids)
    assert words.names == ("mut", "wt") and words.targets == {"a": 1, "b": 0, "c": 1}
    headerless = tmp_path / "h.csv"
    headerless.write_text("a,wt\nb,mut\nc,wt\n")
    with pytest.raises(EmimError, match="header"):
        read_class_labels(headerless, ids)
    with pytest.raises(EmimError, match="only one class"):
        read_class_labels(_write_csv(tmp_path / "o.csv", {"a": "x", "b": "x", "c": "x"}), ids)


def _roc_area(scores: np.ndarray, positive: np.ndarray) -> float:
    """Trapezoidal area under the ROC curve swept over all thresholds (independent of the rank formula)."""
    thresholds = np.concatenate([[np.inf], np.sort(np.unique(scores))[::-1]])
    tpr = [(scores[positive] >= t).mean() for t in thresholds]
    fpr = [(scores[~positive] >= t).mean() for t in thresholds]
    return float(np.trapezoid(tpr, fpr))


def test_auc_equals_the_roc_area_and_macro_averages_one_vs_rest():
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(40), 1)  # rounding makes ties
    positive = rng.random(40) < 0.4
    assert binary_auc(scores, positive) == pytest.approx(_roc_area(scores, positive), abs=1e-12)
    assert binary_auc(scores, np.ones(40, bool)) is None
    probabilities = rng.dirichlet(np.ones(3), size=30)
    targets = rng.integers(3, size=30)
    expected = np.mean([_roc_area(probabilities[:, k], targets == k) for k in range(3)])
    assert macro_auc(probabilities, targets) == pytest.approx(expected, abs=1e-12)
    two = rng.dirichlet(np.ones(2), size=30)
    assert macro_auc(two, targets % 2) == pytest.approx(_roc_area(two[:, 1], targets % 2 == 1), abs=1e-12)


def test_stopped_classification_run_resumes_at_its_checkpoint(brats_mini: Path, tmp_path: Path, emim):
    """Stopped (SIGTERM, as Slicer's Stop does) after step 1, then `--resume` on the command line: the run goes on at
    step 2 with its saved config."""
    import io

    from support.stopping import StopAfterFirstStep

    from emim.cli import build_parser
    from emim.commands.finetune_classifier import config_from_args
    from emim.finetune.classification import run_classifier_training
    from emim.train.checkpoint import load_checkpoint
    from emim.train.runfolder import read_metrics

    labels = _write_csv(tmp_path / "labels.csv", CLASSES)
    run = tmp_path / "run"
    args = build_parser("finetune-classifier").parse_args(
        ["finetune-classifier", str(brats_mini), "--labels", str(labels), "--run", str(run), "--steps", "2",
         "--batch-size", "1", "--log-every", "1", "--eval-every", "100", "--checkpoint-every", "2", "--device", "cpu"])
    run_classifier_training(config_from_args(args), run, progress=StopAfterFirstStep("json", stream=io.StringIO()))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1
    config_text = (run / "config.json").read_text()

    resumed = emim("finetune-classifier", "--resume", "--run", str(run), "--device", "cpu", "--progress", "json")
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(line)["step"] for line in resumed.stdout.splitlines() if '"progress"' in line]
    assert steps == [2]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert (run / "config.json").read_text() == config_text
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl") if r["kind"] == "train"] == [1, 2]
