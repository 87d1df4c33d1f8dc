"""What a missing sequence costs: Dice WT/TC/ET on the real BraTS mini cases with all four sequences and with each one
missing, for the shipped starter model (fine-tuned without modality dropout: it refuses a missing sequence) and for
the same recipe fine-tuned with `--modality-dropout` from the same pretraining.

    python bench/missing_modality.py            (after `make starter-model`, whose pretraining run it reuses)

The dropout model is fine-tuned exactly as the starter model (bench/starter_model.py RECIPE, seed 0, its generated
cases and pretraining run) with modality dropout P added, so the rows differ only by it. Scores use the models'
default post-processing and `emim.evaluate.score_labels` (global Dice).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402
from bench.starter_model import RECIPE  # noqa: E402

STARTER_WORK = common.RESULTS / "starter-work"
MODALITIES = ("t1n", "t1c", "t2w", "t2f")


def finetune_with_dropout(work: Path, probability: float, seed: int) -> Path:
    from emim.export import export_model
    from emim.finetune.segmentation import default_config, run_finetuning
    from emim.progress import Progress
    from emim.train.trainer import TrainSettings

    run = work / "finetune"
    config = replace(default_config(str(STARTER_WORK / "data"), "tiny"), device="cpu",
                     batch_size=RECIPE["finetune_batch"], pretrained=str(STARTER_WORK / "pretrain"),
                     modality_dropout=probability,
                     train=TrainSettings(steps=RECIPE["finetune_steps"], lr=RECIPE["finetune_lr"],
                                         warmup_steps=RECIPE["warmup_steps"], eval_every=RECIPE["eval_every"],
                                         checkpoint_every=RECIPE["eval_every"], seed=seed))
    run_finetuning(config, run, resume=(run / "checkpoints" / "last.pt").is_file(), progress=Progress("none"))
    return export_model(run, work / "model", force=True)


def scores(model: Path, work: Path, missing: str | None) -> dict[str, float]:
    """Mean global Dice per region over the real cases, segmenting without `missing`."""
    import nibabel as nib
    import numpy as np

    from emim.data.cases import find_cases
    from emim.evaluate import mean_row, score_labels
    from emim.inference.segment import load_segmentation_model, segment_case

    loaded = load_segmentation_model(model, "cpu")
    rows = []
    for case in find_cases(common.MINI_DATA, loaded.spec):
        label = segment_case(loaded, case, work / (missing or "all"), single=False,
                             missing=[missing] if missing else [])
        truth = nib.load(case.label)
        spacing = tuple(float(z) for z in truth.header.get_zooms()[:3])
        rows.append(score_labels(np.asarray(nib.load(label).dataobj), np.asarray(truth.dataobj).astype(np.uint8),
                                 spacing, loaded.regions))
    mean = mean_row(rows, loaded.regions)
    return {f"dice_{r['name']}": round(float(mean[f"dice_{r['name']}"]), 3) for r in loaded.regions}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=common.RESULTS / "missing-work")
    args = parser.parse_args()
    if not common.MINI_DATA.is_dir() or not (STARTER_WORK / "pretrain").is_dir():
        raise SystemExit(f"needs {common.MINI_DATA} and the starter model's work folder {STARTER_WORK}")
    info = common.header("cpu")
    model = finetune_with_dropout(args.work, args.dropout, args.seed)
    starter = common.ROOT / "Resources" / "Models" / "EMIM-starter-tiny"
    rows: list[dict[str, Any]] = [{"model": "starter (no dropout)", "missing": "none",
                                   **scores(starter, args.work / "starter", None)}]
    rows += [{"model": "starter (no dropout)", "missing": m, "note": "refused"} for m in MODALITIES]
    for missing in (None, *MODALITIES):
        rows.append({"model": f"dropout {args.dropout:g}", "missing": missing or "none",
                     **scores(model, args.work / "dropout", missing)})
        print(rows[-1], flush=True)
    columns = ["model", "missing", "dice_WT", "dice_TC", "dice_ET", "note"]
    common.write_results("missing_modality_cpu", info, {"rows": rows, "dropout": args.dropout, "recipe": RECIPE},
                         common.markdown_table(rows, columns))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
