"""emim's evaluation against the official BraTS package (`brats-evaluation`, the oracle) on the same files.

    python bench/brats_oracle.py --oracle-python /path/to/oracle-venv/bin/python [--model MODEL]

The oracle is AGPL, so it lives in its own environment (`python -m venv V && V/bin/pip install brats-evaluation`)
and runs as a subprocess (bench/oracle_panoptica.py); emim never imports it. Predictions: MODEL (default: the
shipped starter model) on the real BraTS mini cases without and with post-processing (hundreds of lesions to
match when raw), and on three generated, domain-randomised cases. Compared per case and region: TP/FP/FN lesion
counts (must be equal), global Dice and the mean Dice of matched lesions (the oracle's "sq_dsc"; must agree to
1e-4). Results: bench/results/brats-oracle.{json,md}. `--smoke` runs on one 64^3 case (no generated ones), and
without an oracle Python it stops short of the oracle: it writes emim's scores only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402

REGIONS = ("WT", "TC", "ET")


def emim_scores(pred: Path, gt: Path) -> dict[str, dict[str, float]]:
    """Our counts, global Dice and mean matched-lesion Dice per region, from the label files."""
    import nibabel as nib
    import numpy as np

    from emim.labels import BRATS_REGIONS, labels_to_regions
    from emim.lesions import lesion_scores
    from emim.metrics import dice

    truth = nib.load(str(gt))
    spacing = tuple(float(z) for z in truth.header.get_zooms()[:3])
    p = labels_to_regions(np.asarray(nib.load(str(pred)).dataobj), BRATS_REGIONS)
    g = labels_to_regions(np.asarray(truth.dataobj), BRATS_REGIONS)
    out = {}
    for index, region in enumerate(BRATS_REGIONS):
        scores = lesion_scores(p[index], g[index], spacing)
        out[region["name"]] = {"tp": scores.tp, "fp": scores.fp, "fn": scores.fn,
                               "global_dsc": dice(p[index], g[index]),
                               "mean_matched_dsc": float(np.mean(scores.matched_dice)) if scores.tp else None}
    return out


def predictions(model: Path, work: Path, labelled: Path | None, generated: int) -> list[dict[str, str]]:
    """(case, pred, gt) for the `labelled` cases (the real ones; raw and post-processed) and for `generated`
    generated cases (raw)."""
    from emim.data.cases import find_cases
    from emim.inference.postprocess import NONE
    from emim.inference.segment import SegmentOptions, segment_case
    from emim.inference.segmentation_model import load_segmentation_model
    from emim.sample import make_sample_cases

    loaded = load_segmentation_model(model, "cpu")
    sources = [(c, "raw", NONE) for c in find_cases(labelled, loaded.spec)] if labelled else []
    sources += [(c, "model", None) for c, _, _ in sources]
    if generated:
        make_sample_cases(work / "generated", generated, seed=2026, size="small", randomise=True)
        sources += [(c, "raw", NONE) for c in find_cases(work / "generated", loaded.spec)]
    pairs = []
    for case, kind, settings in sources:
        out = work / kind / f"{case.case_id}.nii.gz"
        segment_case(loaded, case, out, SegmentOptions(postprocess=settings))
        pairs.append({"case": f"{case.case_id} ({kind})", "pred": str(out), "gt": str(case.label)})
    return pairs


def compare(ours: dict[str, Any], oracle: dict[str, Any]) -> dict[str, Any]:
    rows, dice_gap, matched_gap, counts_equal = [], 0.0, 0.0, 0
    for case in ours:
        for region in REGIONS:
            a, b = ours[case][region], oracle[case][region]
            same = (a["tp"], a["fp"], a["fn"]) == (b["tp"], b["fp"], b["fn"])
            counts_equal += same
            dice_gap = max(dice_gap, abs(a["global_dsc"] - b["global_dsc"]))
            if a["mean_matched_dsc"] is not None and b["mean_matched_dsc"] is not None:
                matched_gap = max(matched_gap, abs(a["mean_matched_dsc"] - b["mean_matched_dsc"]))
            rows.append({"case": case, "region": region, "emim TP/FP/FN": f"{a['tp']}/{a['fp']}/{a['fn']}",
                         "oracle TP/FP/FN": f"{b['tp']}/{b['fp']}/{b['fn']}", "same counts": same,
                         "emim Dice": round(a["global_dsc"], 6), "oracle Dice": round(b["global_dsc"], 6)})
    return {"rows": rows, "pairs_compared": len(rows), "counts_equal": counts_equal,
            "max_global_dice_gap": dice_gap, "max_matched_dice_gap": matched_gap}


def run_oracle(python: str, pairs: list[dict[str, str]], work: Path) -> dict[str, Any]:
    (work / "pairs.json").write_text(json.dumps(pairs))
    subprocess.run([python, str(Path(__file__).with_name("oracle_panoptica.py")), str(work / "pairs.json"),
                    str(work / "oracle.json")], check=True, capture_output=True, text=True, timeout=3600)
    return json.loads((work / "oracle.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--oracle-python", default=os.environ.get("EMIM_ORACLE_PYTHON"),
                        help="a Python with brats-evaluation installed (default: $EMIM_ORACLE_PYTHON)")
    parser.add_argument("--model", type=Path, default=None, help="segmentation model (default: the starter model)")
    args = common.parse_args(parser, argv, "one 64^3 case; without an oracle Python, emim's scores only")
    if not args.oracle_python and not args.smoke:
        print("skipped: give --oracle-python (a Python with brats-evaluation installed)")
        return 0
    common.ensure_malloc_env()
    from emim.bundled import STARTER_MODEL, bundled_model

    model = args.model or bundled_model(STARTER_MODEL)
    if model is None:
        print(f"skipped: no --model given and no shipped {STARTER_MODEL}")
        return 0
    info = common.header()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if args.smoke:
            labelled = common.smoke_cases(work / "smoke")[0].parent
        else:
            labelled = common.MINI_DATA if common.MINI_DATA.is_dir() else None
        pairs = predictions(model, work, labelled, generated=0 if args.smoke else 3)
        ours = {p["case"]: emim_scores(Path(p["pred"]), Path(p["gt"])) for p in pairs}
        oracle = run_oracle(args.oracle_python, pairs, work) if args.oracle_python else None
    if oracle is None:  # a smoke run without the oracle: everything up to its call
        text = "oracle skipped: no --oracle-python (a Python with brats-evaluation installed)"
        common.write_results("brats-oracle", info, {"model": str(model), "emim": ours, "summary": text}, text,
                             args.results)
        return 0
    result = compare(ours, oracle)
    result["model"] = str(model)
    summary = (f"{result['counts_equal']} of {result['pairs_compared']} (case, region) pairs have the same TP/FP/FN "
               f"lesion counts; largest global Dice difference {result['max_global_dice_gap']:.2e}, largest "
               f"mean matched-lesion Dice difference {result['max_matched_dice_gap']:.2e}.")
    result["summary"] = summary
    columns = ["case", "region", "emim TP/FP/FN", "oracle TP/FP/FN", "same counts", "emim Dice", "oracle Dice"]
    table = common.markdown_table(result["rows"], columns)
    common.write_results("brats-oracle", info, result, f"{summary}\n\n{table}", args.results)
    agree = result["max_global_dice_gap"] < 1e-4 and result["max_matched_dice_gap"] < 1e-4
    return 0 if agree and result["counts_equal"] == result["pairs_compared"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
