"""The end-to-end demo: sample data -> check -> E-MIM pretraining -> UNETR fine-tuning -> export -> segment an
unseen case -> evaluate (global and lesion-wise) -> picture and report; with `real_cases`, also the real labelled
cases of that folder, which no model here ever trained on. It is the README's main command and runs on 2 CPU cores
in minutes.

The pretraining continues the shipped one (`emim pretrain --init EMIM-starter-tiny-pretraining`): a couple of hundred
steps from random weights sit at the collapsed solution (predicting each hidden view's mean) for most of the run,
which the diagnostics rightly warn about, whereas the shipped pretraining has long left it. The report shows the
held-out reconstruction loss it ends at beside that collapsed loss.
"""

from __future__ import annotations

import io
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from emim.atomic_write import write_file
from emim.contract import BRATS_MODALITIES, DEFAULT_PRESET, EVAL_RECORD, LOG_EVERY, METRICS_FILE
from emim.errors import EmimError
from emim.progress import Progress
from emim.train.trainer import TrainSettings

if TYPE_CHECKING:
    from emim.inference.segmentation_model import SegmentationModel


def _settings(steps: int, lr: float, eval_every: int) -> TrainSettings:
    return TrainSettings(steps=steps, lr=lr, warmup_steps=max(1, steps // 20), log_every=LOG_EVERY,
                         eval_every=eval_every, checkpoint_every=eval_every)


def run_demo(out: str | Path, cases: int = 6, pretrain_steps: int = 200, finetune_steps: int = 300,
             seed: int = 0, device: str = "auto", progress: Progress | None = None,
             real_cases: str | Path | None = None) -> Path:
    """Run the whole path into `out` and return the report's path; `out` must be new or an earlier demo folder.
    `real_cases`: a folder of labelled cases (e.g. the BraTS mini cases) to segment and evaluate as well."""
    from emim.bundled import STARTER_PRETRAINING
    from emim.data.case_inputs import one_case
    from emim.evaluate import evaluate, mean_row, write_csv
    from emim.inference.segment import segment_case
    from emim.inference.segmentation_model import load_segmentation_model

    progress = progress or Progress("bar")
    out = Path(out)
    if out.exists():
        if not (out / "report.md").exists() and any(out.iterdir()):
            raise EmimError(f"{out} exists and is not an earlier demo folder; choose a new --out")
        shutil.rmtree(out)
    if real_cases is not None and not Path(real_cases).is_dir():
        raise EmimError(f"--real-cases {real_cases} is not a folder; give a folder of labelled cases (BraTS layout) "
                        "or leave it out.")
    stages = _Stages(progress)
    unseen = _sample_data(out, cases, seed, stages)
    model = _train(out, device, pretrain_steps, finetune_steps, stages)
    reconstruction = _reconstruction(out / "runs" / "pretrain", STARTER_PRETRAINING)
    with stages("segmentation"):
        loaded = load_segmentation_model(model, device, lambda m: progress.event("warning", message=m))
        written = segment_case(loaded, one_case(unseen, loaded.spec), out / "prediction" / f"{unseen.name}.nii.gz",
                               progress=progress)
        prediction = written["label"]
    with stages("evaluation"):
        rows = evaluate(prediction, unseen, loaded.regions)
        rows.append(mean_row(rows, loaded.regions))
        write_csv(rows, out / "evaluation.csv", loaded.regions)
    real_rows: list[dict] = []
    if real_cases is not None:
        with stages("real cases"):
            real_rows = _real_cases(loaded, Path(real_cases), out / "real-prediction", progress)
            real_rows.append(mean_row(real_rows, loaded.regions))
            write_csv(real_rows, out / "evaluation-real.csv", loaded.regions)
    picture = _picture(unseen, prediction, out / "demo.png")
    report_path = _report(out, rows, real_rows, stages.seconds, picture, cases, pretrain_steps, finetune_steps,
                          reconstruction)
    progress.event("done", report=str(report_path), picture=str(picture),
                   dice={k: v for k, v in rows[0].items() if k.startswith("dice_")})
    return report_path


class _Stages:
    """`with stages(name):` announces a stage (a `start` event) and records its seconds for the report."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.progress.event("start", command="demo", stage=name, message=f"demo: {name}")
        started = time.monotonic()
        yield
        self.seconds[name] = time.monotonic() - started


def _sample_data(out: Path, cases: int, seed: int, stages: _Stages) -> Path:
    """`cases` checked sample cases in out/data, and one more moved to out/unseen (returned) that no run sees."""
    from emim.data.check import check_dataset
    from emim.sample import make_sample_cases

    with stages("sample data"):
        folders = make_sample_cases(out / "data", cases + 1, seed, size="small")
        unseen = out / "unseen" / folders[-1].name
        unseen.parent.mkdir(parents=True)
        shutil.move(str(folders[-1]), unseen)
    with stages("check data"):
        report = check_dataset(out / "data")
        if not report.ok():
            raise EmimError(f"the generated sample data failed its check:\n{report.table()}")
    return unseen


def _train(out: Path, device: str, pretrain_steps: int, finetune_steps: int, stages: _Stages) -> Path:
    """Continue the shipped pretraining on out/data, fine-tune UNETR from it, and export the model (its folder)."""
    from emim.bundled import STARTER_PRETRAINING
    from emim.export import export_model
    from emim.finetune.segmentation import default_config as finetune_config, run_finetuning
    from emim.pretrain.run import init_config as pretrain_config, run_pretraining

    with stages("pretraining"):
        # continue the shipped pretraining (its network, normalisation and learning-rate share of the preset's recipe)
        config = pretrain_config(str(out / "data"), STARTER_PRETRAINING)
        config = replace(config, device=device,
                         train=_settings(pretrain_steps, config.train.lr, max(1, pretrain_steps // 3)))
        run_pretraining(config, out / "runs" / "pretrain", progress=stages.progress)
    with stages("fine-tuning"):
        config = replace(finetune_config(str(out / "data"), DEFAULT_PRESET), device=device, val_cases=1,
                         batch_size=1, pretrained=str(out / "runs" / "pretrain"),
                         train=_settings(finetune_steps, 2e-3, max(1, finetune_steps // 2)))
        run_finetuning(config, out / "runs" / "finetune", progress=stages.progress)
        return export_model(out / "runs" / "finetune", out / "model", name="E-MIM demo (tiny, sample data)")


def _reconstruction(run: Path, source: str) -> list[str]:
    """Report lines: the held-out reconstruction loss the pretraining started and ended at, beside the collapsed
    loss (metrics.jsonl: heldout_rec_loss, heldout_collapsed_loss_sample, heldout_loss_ratio) and what they mean."""
    from emim.pretrain.diagnostics import COLLAPSE_LOSS_RATIO
    from emim.train.runfolder import read_metrics

    evals = [r for r in read_metrics(run / METRICS_FILE) if r.get("kind") == EVAL_RECORD and "heldout_loss_ratio" in r]
    if not evals:
        return []
    first, last = evals[0], evals[-1]
    return [f"Pretraining, continued from {source}: held-out reconstruction loss {last['heldout_rec_loss']:.3f} at "
            f"step {last['step']} against a collapsed loss of {last['heldout_collapsed_loss_sample']:.3f}, ratio "
            f"{last['heldout_loss_ratio']:.2f} (step {first['step']}: {first['heldout_loss_ratio']:.2f}). The "
            "collapsed loss is what predicting each hidden view's mean scores; a ratio clearly below 1 means the "
            "network reconstructs what it cannot see, and one at "
            f"{COLLAPSE_LOSS_RATIO:g} or above with flat predictions means it has collapsed to that constant."]


def _real_cases(loaded: SegmentationModel, folder: Path, out: Path, progress: Progress) -> list[dict]:
    """Segment and evaluate every labelled case of `folder` with the demo's (loaded) model."""
    from emim.evaluate import evaluate
    from emim.data.case_inputs import resolve_cases
    from emim.inference.segment import segment_case

    cases = [case for case in resolve_cases([folder], loaded.spec) if case.label is not None]
    if not cases:
        raise EmimError(f"{folder} holds no labelled case to evaluate the demo model on; give a folder of BraTS "
                        "cases with their -seg files, or leave --real-cases out.")
    rows = []
    for case in cases:
        rows += evaluate(segment_case(loaded, case, out, single=False, progress=progress)["label"], case.label,
                         loaded.regions)
    return rows


def _picture(case: Path, prediction: Path, path: Path) -> Path:
    """Axial slice through the tumour: the four modalities, then the true and the predicted labels on t1c."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib
    import numpy as np
    from matplotlib.colors import ListedColormap

    from emim.labels import BRATS_LABELS

    def axial(array: np.ndarray, z: int) -> np.ndarray:
        return np.rot90(array[:, :, z])

    truth = np.asarray(nib.load(next(case.glob("*-seg.nii.gz"))).dataobj)
    predicted = np.asarray(nib.load(prediction).dataobj)
    z = int(np.argmax((truth > 0).sum(axis=(0, 1))))
    images = {m: np.asarray(nib.load(next(case.glob(f"*-{m}.nii.gz"))).dataobj) for m in BRATS_MODALITIES}
    colours = ListedColormap([(0, 0, 0, 0)] + [tuple(c / 255 for c in lb["color"]) + (0.55,) for lb in BRATS_LABELS])
    fig, axes = plt.subplots(1, 6, figsize=(15, 3))
    for ax, (name, image) in zip(axes, images.items()):
        ax.imshow(axial(image, z), cmap="gray")
        ax.set_title(name)
    for ax, (title, label) in zip(axes[4:], (("true labels on t1c", truth), ("predicted on t1c", predicted))):
        ax.imshow(axial(images["t1c"], z), cmap="gray")
        ax.imshow(axial(label, z), cmap=colours, vmin=0, vmax=3, interpolation="nearest")
        ax.set_title(title)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{case.name}, axial slice {z}: red necrotic core, green edema, yellow enhancing tumour")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, dpi=80, format="png")
    plt.close(fig)
    return write_file(path, image.getvalue())


def _table(rows: list[dict]) -> list[str]:
    """Global Dice and HD95, and the lesion-wise view: lesion Dice WT and false-positive lesions per region."""
    lines = ["| case | Dice WT | Dice TC | Dice ET | HD95 WT (mm) | lesion Dice WT | FP lesions WT / TC / ET |",
             "|---|---|---|---|---|---|---|"]
    def count(value: float) -> str:  # whole lesions per case; means to one decimal
        return f"{value:g}" if float(value).is_integer() else f"{value:.1f}"

    return lines + [f"| {r['case']} | {r['dice_WT']:.3f} | {r['dice_TC']:.3f} | {r['dice_ET']:.3f} | "
                    f"{r['hd95_WT']:.1f} | {r['lesion_dice_WT']:.3f} | "
                    f"{count(r['fp_WT'])} / {count(r['fp_TC'])} / {count(r['fp_ET'])} |" for r in rows]


def _report(out: Path, rows: list[dict], real_rows: list[dict], times: dict[str, float], picture: Path, cases: int,
            pretrain_steps: int, finetune_steps: int, reconstruction: list[str] = ()) -> Path:
    import torch

    lines = ["# E-MIM demo report", "",
             f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.platform()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads", "",
             f"{cases} semi-synthetic training cases (one of them for validation) and one unseen case; `tiny` preset; "
             f"{pretrain_steps} E-MIM pretraining steps (continuing the shipped pretraining), {finetune_steps} "
             "UNETR fine-tuning steps.", ""] + [line for text in reconstruction for line in (text, "")] + [
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in times.items()]
    lines += [f"| total | {sum(times.values()):.1f} |", "", "Unseen generated case:", ""] + _table(rows)
    if real_rows:
        lines += ["", f"Real labelled cases, never trained on ({len(real_rows) - 1}):", ""] + _table(real_rows)
    lines += ["", f"![demo]({picture.name})", "",
              "A CPU demo budget is far too small for a good model: it shows the path works end to end, not what "
              "E-MIM reaches with real data and a GPU.", ""]
    return write_file(out / "report.md", "\n".join(lines))
