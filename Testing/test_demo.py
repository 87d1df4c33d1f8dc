"""The README's main command, shortened: every stage runs and leaves its report, picture and evaluation."""

import csv
import json

import nibabel as nib
import numpy as np

from conftest import BRATS_MINI, SMALLEST_CASE
from emim.demo import run_demo
from emim.progress import Progress
from emim.train.runfolder import read_metrics


def test_demo_runs_every_stage_replaces_an_earlier_demo_and_scores_real_cases_it_never_trained_on(tmp_path):
    """One shortened demo run (the suite's time): into the folder of an earlier demo, with the smallest real mini
    case when it is there (`make demo` scores all three)."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "report.md").write_text("an earlier demo")
    (out / "stale.txt").write_text("left by the earlier demo")
    real = None
    if BRATS_MINI.is_dir():
        real = tmp_path / "real"
        real.mkdir()
        (real / SMALLEST_CASE).symlink_to(BRATS_MINI / SMALLEST_CASE)
    report = run_demo(out, cases=2, pretrain_steps=2, finetune_steps=2, device="cpu", progress=Progress("none"),
                      real_cases=real)
    text = report.read_text()
    for stage in ("sample data", "check data", "pretraining", "fine-tuning", "segmentation", "evaluation"):
        assert f"| {stage} |" in text
    assert not (out / "stale.txt").exists()  # a second run replaces an earlier demo instead of mixing outputs
    # the pretraining continues the shipped one (whole network), and the report says how far from collapse it ends
    config = json.loads((out / "runs" / "pretrain" / "config.json").read_text())
    assert config["init"]["model"] == "EMIM-starter-tiny-pretraining"
    last = [r for r in read_metrics(out / "runs" / "pretrain" / "metrics.jsonl") if r["kind"] == "eval"][-1]
    assert (f"held-out reconstruction loss {last['heldout_rec_loss']:.3f} at step 2 against a collapsed loss of "
            f"{last['heldout_collapsed_loss_sample']:.3f}, ratio {last['heldout_loss_ratio']:.2f}") in text
    assert last["heldout_loss_ratio"] < 0.95  # the shipped pretraining is far from the collapsed solution
    assert (out / "demo.png").stat().st_size > 10_000
    (unseen,) = (out / "unseen").iterdir()
    prediction = nib.load(out / "prediction" / f"{unseen.name}.nii.gz")
    reference = nib.load(next(unseen.glob("*-t1n.nii.gz")))
    assert prediction.shape == reference.shape and np.allclose(prediction.affine, reference.affine)
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    assert rows[0]["case"] == unseen.name and 0.0 <= float(rows[0]["dice_WT"]) <= 1.0
    if real is None:
        assert not (out / "evaluation-real.csv").exists()
        return
    assert "| real cases |" in text and "Real labelled cases, never trained on (1)" in text
    rows = list(csv.DictReader((out / "evaluation-real.csv").open()))
    assert [r["case"] for r in rows] == sorted(p.name for p in real.iterdir() if p.is_dir()) + ["mean"]
    assert all(0.0 <= float(r["lesion_dice_WT"]) <= 1.0 for r in rows)
    assert all(float(r["tp_WT"]) + float(r["fn_WT"]) >= 1 for r in rows)  # every real case holds a tumour
    for case in real.iterdir():
        if case.is_dir():
            written = nib.load(out / "real-prediction" / f"{case.name}.nii.gz")
            source = nib.load(next(case.glob("*-t1n.nii.gz")))
            assert written.shape == source.shape and np.allclose(written.affine, source.affine)
