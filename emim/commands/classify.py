"""`emim classify --model MODEL INPUT... | --image NAME=PATH ...`: class probabilities per case, as a table.

INPUT is a case folder or a folder of cases (files assigned by the model's modality patterns), or the files of
one case given with `--image t1n=PATH --image t1c=PATH ...`. Each case is seen as tiles of the model's crop size
over the brain's bounding box whose mean feature is classified. With `--progress json` stdout holds only JSON
lines, ending with `{"event": "done", "probabilities": {case: {class: p}}, "predicted": {case: class}}`. With
`--output DIR`, each case also gets DIR/<case>.classification.json (its probabilities and predicted class) and
DIR/<case>.report.json (engine version, model SHA-256, settings, inputs with SHA-256, seconds); without it the
same reports come in the done event (`"reports": {case: report}`), since there is no folder to put them beside.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emim.commands.arguments import add_case_inputs, case_inputs, check_case_inputs
from emim.progress import PROGRESS_MODES, Progress
from emim.contract import DEVICE_CHOICES


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_case_inputs(parser, "case folder(s) or folder(s) of cases")
    parser.add_argument("--model", required=True, help="classification model folder (from finetune-classifier)")
    parser.add_argument("--resample", action="store_true",
                        help="resample modalities whose grid differs onto the first modality (physical space)")
    parser.add_argument("--sw-batch-size", type=int, default=None, help="tiles per forward pass (default: model's)")
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--output", metavar="DIR",
                        help="also write <case>.classification.json and the run report <case>.report.json here")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def run(args: argparse.Namespace) -> int:
    from emim.inference.classify import classify_case, load_classification_model
    from emim.report import RunReport
    from emim.inference.case_io import check_modalities
    from emim.modelfile import model_folder

    check_case_inputs(args)
    progress = Progress(args.progress)
    model = load_classification_model(args.model, args.device, lambda m: progress.event("warning", message=m))
    cases = case_inputs(args, model.spec)
    for case in cases:
        check_modalities(case, model.spec)
    progress.event("start", command="classify", total=len(cases), device=str(model.device),
                   classes=model.class_names)
    results: dict[str, dict[str, float]] = {}
    reports: dict[str, Any] = {}
    for index, case in enumerate(cases):
        report = RunReport("classify", model.metadata, model_folder(args.model), str(model.device))
        with report.stage("classify"):
            results[case.case_id] = classify_case(model, case, args.resample, args.sw_batch_size)
        if args.output:
            write_classification(Path(args.output), case, model, results[case.case_id], report, args)
        else:  # no folder to put the report beside: it travels in the done event
            reports[case.case_id] = json.loads(report.text(case.case_id, _images(case, model), _settings(args, model),
                                                           [], case.dicom))
        progress.step(index + 1, len(cases), case=case.case_id)
    predicted = {case: max(p, key=p.get) for case, p in results.items()}
    if args.progress == "json":
        progress.event("done", probabilities=results, predicted=predicted, **({"reports": reports} if reports else {}))
    else:
        width = max(len("case"), *(len(case) for case in results)) + 2
        columns = [max(len(name), 6) + 2 for name in model.class_names]
        print("case".ljust(width) + "".join(n.rjust(w) for n, w in zip(model.class_names, columns))
              + "  predicted", file=sys.stdout)
        for case, probabilities in results.items():
            print(case.ljust(width) + "".join(f"{probabilities[n]:.4f}".rjust(w)
                                              for n, w in zip(model.class_names, columns))
                  + f"  {predicted[case]}", file=sys.stdout)
    return 0


def write_classification(folder: Path, case: Any, model: Any, probabilities: dict[str, float], report: Any,
                         args: argparse.Namespace) -> None:
    """<case>.classification.json and <case>.report.json in `folder`, checked and written like segment outputs."""
    from emim.report import REPORT
    from emim.inference.case_io import write_case_outputs

    result = folder / f"{case.case_id}.classification.json"
    text = json.dumps({"case": case.case_id, "probabilities": probabilities,
                       "predicted": max(probabilities, key=probabilities.get)}, indent=2) + "\n"
    write_case_outputs({result: text, folder / f"{case.case_id}{REPORT}": report.text(
        case.case_id, _images(case, model), _settings(args, model), [result], case.dicom)}, folder, case)


def _images(case: Any, model: Any) -> dict[str, Path]:
    return {m: case.images[m] for m in model.spec.names}


def _settings(args: argparse.Namespace, model: Any) -> dict[str, Any]:
    """What the run report records of how the case was classified."""
    return {"resample": args.resample, "sw_batch_size": args.sw_batch_size, **model.preprocessing}
