"""What a model gives on the real BraTS mini cases: global and lesion-wise scores, per case, for a set of
post-processing settings (segmented once; every setting is applied to the same probabilities).

    python bench/real_case_quality.py --model MODEL [--name NAME] [--sweep]
    python bench/real_case_quality.py --smoke [--sweep]    (the starter model on one 64^3 case)

Without --sweep: the model's own post-processing and none. With --sweep: also minimum lesion sizes and keeping
only the largest WT lesion, which is how the default post-processing was chosen (docs/postprocessing.md).
Results: bench/results/real-quality-NAME.{json,md}. Needs ../shared/data/brats-gli-mini (skips cleanly without).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402

SWEEP_SIZES_MM3 = (0.0, 25.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
SUMMARY = ("dice_WT", "dice_TC", "dice_ET", "lesion_dice_WT", "lesion_dice_TC", "lesion_dice_ET", "fp_WT", "fp_TC",
           "fp_ET", "fn_WT", "hd95_WT", "lesion_hd95_WT")


def _settings(model_settings: Any, sweep: bool) -> dict[str, Any]:
    from emim.inference.postprocess import NONE, PostProcess

    chosen = {"model": model_settings, "none": NONE}
    if sweep:
        for size in SWEEP_SIZES_MM3:
            chosen[f"min {size:g} mm3"] = PostProcess(size)
            chosen[f"min {size:g} mm3 + largest WT"] = PostProcess(size, ("WT",))
    return chosen


def evaluate_model(model: Path, work: Path, data: Path, sweep: bool = False) -> dict[str, Any]:
    """{"cases": [...], "settings": {name: {"settings": ..., "rows": [...], "mean": {...}}}} on the cases in `data`
    (the real ones but for a smoke run)."""
    import nibabel as nib
    import numpy as np

    from emim.data.cases import find_cases
    from emim.evaluate import mean_row, score_labels
    from emim.inference.postprocess import label_map
    from emim.inference.segment import SegmentOptions, segment_case
    from emim.inference.segmentation_model import load_segmentation_model

    loaded = load_segmentation_model(model, "cpu")
    names = [r["name"] for r in loaded.regions]
    cases = find_cases(data, loaded.spec)
    results: dict[str, Any] = {"cases": [c.case_id for c in cases], "settings": {}}
    chosen = _settings(loaded.postprocess, sweep)
    rows: dict[str, list[dict[str, Any]]] = {key: [] for key in chosen}
    for case in cases:
        segment_case(loaded, case, work / case.case_id, SegmentOptions(probabilities=True), single=False)
        folder = work / case.case_id
        probs = np.stack([np.asarray(nib.load(folder / f"{case.case_id}_prob_{n}.nii.gz").dataobj) for n in names])
        brain = np.ones(probs.shape[1:], bool)  # segment already zeroed the probabilities outside the brain
        truth = nib.load(case.label)
        gt = np.asarray(truth.dataobj).astype(np.uint8)
        spacing = tuple(float(z) for z in truth.header.get_zooms()[:3])
        for key, settings in chosen.items():
            labels = label_map(probs, brain, spacing, loaded.regions, settings)
            rows[key].append({"case": case.case_id, **score_labels(labels, gt, spacing, loaded.regions)})
    for key, settings in chosen.items():
        mean = {k: v for k, v in mean_row(rows[key], loaded.regions).items() if k not in ("case", "pred", "gt")}
        results["settings"][key] = {"settings": settings.to_metadata(), "rows": rows[key], "mean": mean}
    return results


def compact_scores(results: dict[str, Any]) -> dict[str, Any]:
    """The model's own post-processing only, the SUMMARY metrics rounded: what a model's metadata records."""
    entry = results["settings"]["model"]

    def pick(row: dict[str, Any]) -> dict[str, float]:
        return {c: round(float(row[c]), 4) for c in SUMMARY}

    return {"data": f"{len(results['cases'])} real BraTS 2023 glioma cases, never trained on",
            "postprocess": entry["settings"], "per_case": {r["case"]: pick(r) for r in entry["rows"]},
            "mean": pick(entry["mean"])}


def markdown(results: dict[str, Any]) -> str:
    lines = [f"{len(results['cases'])} real BraTS 2023 GLI cases ({', '.join(results['cases'])}); mean over cases.",
             "", "| post-processing | " + " | ".join(SUMMARY) + " |", "|---" * (len(SUMMARY) + 1) + "|"]
    for key, entry in results["settings"].items():
        lines.append(f"| {key} | " + " | ".join(f"{entry['mean'][c]:.3f}" if "dice" in c else f"{entry['mean'][c]:.1f}"
                                                for c in SUMMARY) + " |")
    model_rows = results["settings"]["model"]["rows"]
    lines += ["", "Per case, the model's post-processing:", "", "| case | " + " | ".join(SUMMARY) + " |",
              "|---" * (len(SUMMARY) + 1) + "|"]
    for row in model_rows:
        lines.append(f"| {row['case']} | " + " | ".join(f"{row[c]:.3f}" if "dice" in c else f"{row[c]:.1f}"
                                                       for c in SUMMARY) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="segmentation model (with --smoke default: the starter model)")
    parser.add_argument("--name", default=None, help="results name (default: the model folder's name)")
    parser.add_argument("--sweep", action="store_true", help="also a range of post-processing settings")
    args = common.parse_args(parser, argv, "one 64^3 case, by default with the starter model")
    if args.model is None and not args.smoke:
        parser.error("--model is required")
    common.ensure_malloc_env()
    from emim.bundled import STARTER_MODEL, bundled_model

    model = args.model or bundled_model(STARTER_MODEL)
    name = args.name or model.name
    work = args.results / f"real-quality-{name}"
    data = common.smoke_cases(work / "smoke")[0].parent if args.smoke else common.MINI_DATA
    if not data.is_dir():
        print(f"skipped: {data} is absent")
        return 0
    info = common.header()
    results = evaluate_model(model, work, data, args.sweep)
    common.write_results(f"real-quality-{name}", info, results, markdown(results), args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
