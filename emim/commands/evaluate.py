"""`emim evaluate PRED GT`: global and BraTS lesion-wise Dice and HD95 and lesion counts per region per case and
their mean, as two tables and optionally a CSV."""

from __future__ import annotations

import argparse
import sys

CONVENTIONS = """\
regions: BraTS TC = labels {1,3}, WT = {1,2,3}, ET = {3} (or the regions of --labels-from MODEL).
HD95 (mm): 95th percentile of the pooled symmetric surface distances, using the voxel spacing.
empty masks (BraTS convention): both empty -> Dice 1, HD95 0; one empty -> Dice 0, HD95 373.13 mm.
lesion-wise (as the official brats-evaluation package): lesions = 26-connected components, matched one to
  one by Dice (any overlap);
  lesDice = sum of matched Dice / (TP + FP + FN); lesHD95 = (sum of matched HD95 + 374 mm per FP and FN)
  / (TP + FP + FN); TP/FP/FN = matched, invented and missed lesions.
pairing: case id = file name without extension and without a trailing -seg/_seg/-label/_gt, so
  BraTS-GLI-00360-000.nii.gz or BraTS-GLI-00360-000-seg.nii.gz pairs with BraTS-GLI-00360-000-seg.nii.gz;
  a file named only seg/label (p001/seg.nii.gz) takes its folder's name. In a folder (and its sub-folders)
  the label maps are the files named so, or, when none is, every NIfTI file directly in it. Two single files
  are paired whatever their names.
The prediction must be on the ground truth's grid (shape and affine); it is refused otherwise."""


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = CONVENTIONS
    parser.add_argument("pred", metavar="PRED", help="predicted label map, or a folder of them")
    parser.add_argument("gt", metavar="GT", help="ground-truth label map, a folder of them (e.g. a BraTS data "
                                                 "folder) or a datalist JSON")
    parser.add_argument("--csv", metavar="OUT.csv", help="also write the per-case metrics and the mean as CSV")
    parser.add_argument("--labels-from", metavar="MODEL", help="use the regions of this model folder's metadata "
                                                                "instead of the BraTS ones")


def run(args: argparse.Namespace) -> int:
    from emim.evaluate import (LESION_METRICS, evaluate_case, format_header, format_row, mean_row, pair_cases,
                               write_csv)
    from emim.labels import BRATS_REGIONS

    regions = BRATS_REGIONS
    if args.labels_from:
        from emim.errors import EmimError
        from emim.modelfile import load_metadata

        metadata = load_metadata(args.labels_from)
        if metadata["task"] != "segmentation":
            raise EmimError(f"{args.labels_from} is a {metadata['task']} model; --labels-from needs a "
                            "segmentation model (its metadata defines the regions).")
        regions = metadata["regions"]
    pairing = pair_cases(args.pred, args.gt)
    if pairing.only_pred:
        print(f"warning: no ground truth for {len(pairing.only_pred)} prediction(s), not evaluated: "
              f"{', '.join(pairing.only_pred)}", file=sys.stderr)
    if pairing.only_gt:
        print(f"note: {len(pairing.only_gt)} ground-truth case(s) have no prediction, not evaluated: "
              f"{', '.join(pairing.only_gt)}", file=sys.stderr)
    width = max(len("mean"), *(len(case) for case, _, _ in pairing.pairs)) + 2
    rows: list[dict] = []
    for case, pred, gt in pairing.pairs:
        row = evaluate_case(case, pred, gt, regions)
        if not rows:  # after the first case, so a refused first case prints only the error
            print(format_header(regions, width))
        rows.append(row)
        print(format_row(row, regions, width), flush=True)
    summary = mean_row(rows, regions)
    print(format_row(summary, regions, width))
    print("\nlesion-wise (as brats-evaluation: one-to-one lesion matching, 374 mm penalty)")
    print(format_header(regions, width, LESION_METRICS))
    for row in rows + [summary]:
        print(format_row(row, regions, width, LESION_METRICS))
    if args.csv:
        print(f"wrote {write_csv(rows + [summary], args.csv, regions)}", file=sys.stderr)
    return 0
