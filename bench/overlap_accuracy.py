"""What a smaller sliding-window overlap costs in accuracy: one trained model, several overlaps, same cases.

The CPU default overlap (`cpu_overlap` 0.25 instead of 0.5) is a speed/accuracy trade; this measures both sides
with a real trained model (e.g. the one `make demo` exports) on labelled cases: seconds per case, Dice per
region against the ground truth, and the share of voxels whose label differs from the largest overlap's.

    python bench/overlap_accuracy.py --model demo-output/model --overlaps 0.5,0.25 demo-output/unseen
    python bench/overlap_accuracy.py --smoke    # the starter model on one 64^3 case
"""

from __future__ import annotations

import argparse
import sys
import shutil
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", help="labelled case folders or folders of cases")
    parser.add_argument("--model", help="trained segmentation model folder (with --smoke default: the starter model)")
    parser.add_argument("--overlaps", default="0.5,0.25")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--native-spacing", action="store_true",
                        help="run on each case's own voxel size, not the model's training spacing")
    parser.add_argument("--name", default=None, help="results file stem (default overlap_accuracy_<device>)")
    args = common.parse_args(parser, argv, "one 64^3 case, by default with the starter model")
    if not args.smoke and not (args.cases and args.model):
        parser.error("give --model and at least one case")
    common.ensure_malloc_env()
    common.set_threads(args.threads)
    import nibabel as nib
    import numpy as np
    import torch

    from emim.bundled import STARTER_MODEL, bundled_model
    from emim.evaluate import evaluate_case
    from emim.data.case_inputs import resolve_cases
    from emim.inference.segment import SegmentOptions, segment_case
    from emim.inference.segmentation_model import load_segmentation_model

    args.model = args.model or bundled_model(STARTER_MODEL)
    model = load_segmentation_model(args.model, args.device)
    overlaps = [float(v) for v in args.overlaps.split(",")]
    out = args.results / "overlap-accuracy-work"  # predictions, removed at the end
    cases = resolve_cases(args.cases or common.smoke_cases(out / "smoke"), model.spec)
    info = common.header(torch.device(args.device))
    common.print_header(info)
    regions = [r["name"] for r in model.regions]
    rows = []
    for case in cases:
        predictions = {}
        for overlap in overlaps:
            path = out / f"{overlap}" / f"{case.case_id}.nii.gz"
            start = time.perf_counter()
            options = SegmentOptions(overlap=overlap, native_spacing=args.native_spacing)
            predictions[overlap] = segment_case(model, case, path, options)["label"]
            seconds = time.perf_counter() - start
            row = {"case": case.case_id, "overlap": overlap, "seconds": round(seconds, 2)}
            if case.label is not None:
                scores = evaluate_case(case.case_id, path, case.label, model.regions)
                row.update({f"Dice {r}": round(scores[f"dice_{r}"], 4) for r in regions})
            first = np.asarray(nib.load(str(predictions[overlaps[0]])).dataobj)
            row["voxels differing from first overlap %"] = round(
                100 * float((np.asarray(nib.load(str(path)).dataobj) != first).mean()), 4)
            rows.append(row)
            print(row, flush=True)
    stem = args.name or f"overlap_accuracy_{torch.device(args.device).type}"
    data = {"model": str(args.model), "native_spacing": args.native_spacing, "rows": rows}
    common.write_results(stem, info, data, common.markdown_table(rows, list(rows[0])), args.results)
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
