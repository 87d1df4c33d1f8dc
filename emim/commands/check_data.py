"""`emim check-data PATH`: a per-case table of problems and fixes; exit 0 when every case is usable, 1 otherwise.

With `--json`, stdout carries one JSON object per line (docs/engine-interface.md): `start`, a `progress` event
per case, then `done` whose fields are the whole report (`ok`, `summary`, `cases` with their `problems`), or
`error` when the data set cannot be read at all.
"""

from __future__ import annotations

import argparse
import json


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="folder of case folders, one case folder, or a datalist JSON")
    parser.add_argument("--modalities", help="comma-separated modalities in channel order "
                        "(default: the data set's own, or BraTS t1n,t1c,t2w,t2f)")
    parser.add_argument("--resample", action="store_true",
                        help="accept modalities on other grids: they will be resampled onto the first modality")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="grid tolerance, relative to the voxel spacing (default 1e-3)")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout (for the Slicer modules)")


def run(args: argparse.Namespace) -> int:
    from emim.data.cases import dataset_spec
    from emim.data.check import check_dataset
    from emim.progress import Progress

    progress = Progress("json" if args.json else "bar")
    spec = dataset_spec(args.path)  # an EmimError becomes an `error` event in emim.cli
    if args.modalities:
        spec = spec.select([m.strip() for m in args.modalities.split(",") if m.strip()])
    progress.event("start", command="check-data", path=str(args.path), modalities=list(spec.names))
    report = check_dataset(args.path, spec, resample=args.resample, tolerance=args.tolerance,
                           on_case=lambda done, total, case: progress.step(done, total, case=case.case_id))
    if args.json:
        print(json.dumps({"event": "done", **report.to_dict()}), flush=True)
    else:
        print(report.table())
    return 0 if report.ok() else 1
