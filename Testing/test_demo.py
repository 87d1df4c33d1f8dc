"""The README's main command, shortened: every stage runs and leaves its report, picture and evaluation."""

import csv

import nibabel as nib
import numpy as np

from emim.demo import run_demo
from emim.progress import Progress


def test_demo_runs_every_stage_and_writes_report_and_picture(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(out, cases=2, pretrain_steps=2, finetune_steps=2, device="cpu", progress=Progress("none"))
    text = report.read_text()
    for stage in ("sample data", "check data", "pretraining", "fine-tuning", "segmentation", "evaluation"):
        assert f"| {stage} |" in text
    assert (out / "demo.png").stat().st_size > 10_000
    (unseen,) = (out / "unseen").iterdir()
    prediction = nib.load(out / "prediction" / f"{unseen.name}.nii.gz")
    reference = nib.load(next(unseen.glob("*-t1n.nii.gz")))
    assert prediction.shape == reference.shape and np.allclose(prediction.affine, reference.affine)
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    assert rows[0]["case"] == unseen.name and 0.0 <= float(rows[0]["dice_WT"]) <= 1.0
    # a second run replaces an earlier demo folder instead of refusing or mixing outputs
    assert run_demo(out, cases=2, pretrain_steps=1, finetune_steps=1, device="cpu",
                    progress=Progress("none")).is_file()
