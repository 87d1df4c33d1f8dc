"""`emim segment --model MODEL --output OUT [options] INPUT...`: label maps on exactly the input's grid.

INPUT is a case folder or a folder of case folders (files assigned to the model's modalities by its name
patterns); or give every modality explicitly with `--image t1n=PATH --image t1c=PATH ...` and no INPUT. One case
and OUT ending in .nii.gz writes that file; otherwise OUT is a folder of <case>.nii.gz (and
<case>_prob_<region>.nii.gz with --probabilities). Beside every label map, <case>.volumes.csv holds the mL and
lesion count of each region and label (`emim.volumes`); a folder OUT also gets volumes.csv for the whole batch, and
the `done` event carries each case's region volumes. A case without a sequence is segmented by a model fine-tuned
with modality dropout (`--missing`, or no file), or by any model with `--fill-missing PRETRAINING`, which
synthesises the sequence first (see `emim.inference.fill_missing`). INPUT may be a folder of DICOM series (one
case per study, series matched to modalities by their descriptions: `emim.data.dicom`); `--output-format dicom-seg`
then writes the label map as a DICOM SEG referencing the source series (`emim.inference.dicom_seg`). In a batch
a failing case is reported and the others still run; the exit status is 1 when any case failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emim.commands.arguments import PERMILLE, add_case_inputs, case_inputs, check_case_inputs
from emim.contract import DEVICE_CHOICES, OUTPUT_FORMATS
from emim.inference.postprocess import NONE, POSTPROCESS_CHOICES, PostProcess
from emim.progress import PROGRESS_MODES, Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_case_inputs(parser, "case folder(s) or folder(s) of cases")
    parser.add_argument("--model", required=True,
                        help="exported segmentation model folder, or a shipped model's name (EMIM-starter-tiny), "
                             "which always means the shipped model: ./NAME for a folder of that name")
    parser.add_argument("--output", required=True, help="OUT.nii.gz for one case, or an output folder")
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--overlap", type=float, help="sliding-window overlap (default: the model's, 0.5)")
    parser.add_argument("--sw-batch-size", type=int, help="windows per forward pass (default: the model's)")
    parser.add_argument("--probabilities", action="store_true", help="also write per-region probability maps")
    parser.add_argument("--resample", action="store_true",
                        help="resample modalities on other grids onto the reference modality (physical space)")
    parser.add_argument("--native-spacing", action="store_true",
                        help="run the model on the case's own voxel size even when it was trained on another "
                             "(default: resample to the model's spacing and back when they differ by over 20%%)")
    parser.add_argument("--postprocess", choices=POSTPROCESS_CHOICES, default="model",
                        help="model: clean the label map with the model's recorded settings (drop lesions below a "
                             "size, optionally keep only the largest); none: keep every lesion. Labels outside the "
                             "brain (all-zero input voxels) are always removed")
    parser.add_argument("--min-lesion-mm3", type=float, metavar="MM3",
                        help="drop lesions of any region smaller than this (default: the model's setting)")
    parser.add_argument("--keep-largest", action="append", metavar="REGION",
                        help="keep only the largest lesion of this region, e.g. WT (repeatable; default: the "
                             "model's setting)")
    parser.add_argument("--missing", action="append", default=[], metavar="MODALITY",
                        help="segment without this sequence even if its file is there (repeatable); a model "
                             "fine-tuned with --modality-dropout also segments a case that has no file for one, "
                             "other models refuse both")
    parser.add_argument("--fill-missing", metavar="PRETRAINING",
                        help="synthesise each missing sequence with this E-MIM pretraining (run folder, checkpoint, "
                             "pretraining model or a shipped one's name: EMIM-starter-tiny-pretraining, ./NAME for a "
                             "folder so named; same modalities and normalisation as the model) and segment with "
                             "it as if acquired; written as <case>_synthetic_<modality>.nii.gz beside the label map. "
                             "Lets any model segment a case without a sequence")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="nifti",
                        help="nifti: <case>.nii.gz label map; dicom-seg: <case>.seg.dcm, a DICOM Segmentation that "
                             "references the source series (DICOM input only; needs highdicom)")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.inference.fill_missing import check_filler
    from emim.inference.reconstruct import load_reconstructor
    from emim.inference.segment import SegmentOptions, segment_case
    from emim.inference.segmentation_model import load_segmentation_model
    from emim.safepaths import check_output_folder

    check_case_inputs(args)
    progress = Progress(args.progress)
    model = load_segmentation_model(args.model, args.device, lambda m: progress.event("warning", message=m))
    filler = load_reconstructor(args.fill_missing, args.device) if args.fill_missing else None
    if filler is not None:
        check_filler(filler, model.spec, model.normalization)
    cases = case_inputs(args, model.spec, model.takes_missing or filler is not None)
    settings = postprocess_settings(args, model.postprocess)
    settings.check_regions(model.regions)
    options = SegmentOptions(overlap=args.overlap, sw_batch_size=args.sw_batch_size, probabilities=args.probabilities,
                             resample=args.resample, native_spacing=args.native_spacing, postprocess=settings,
                             missing=args.missing, fill=filler, output_format=args.output_format)
    output = Path(args.output)
    check_output_folder(output, [case.folder for case in cases], [Path(p) for p in args.inputs or ()])
    if len(cases) > 1 and output.name.lower().endswith(".nii.gz"):
        raise EmimError(f"{len(cases)} cases cannot all be written to the one file {output}; give a folder")
    progress.event("start", command="segment", total=len(cases), cases=[c.case_id for c in cases],
                   device=str(model.device), model=str(args.model))
    outputs, failed, volume_files = [], [], []
    for index, case in enumerate(cases):
        def on_windows(done: int, total: int, index: int = index, case_id: str = case.case_id) -> None:
            units = int(PERMILLE * (index + done / total) / len(cases))
            progress.step(units, PERMILLE, case=case_id, window=done, windows=total)

        try:
            written = segment_case(model, case, output, options, progress=progress, single=len(cases) == 1,
                                   on_windows=on_windows)
            outputs.append(str(written["label"]))
            volume_files.append(written["volumes"])
        except Exception as error:  # noqa: BLE001  (one bad case never stops the batch; --debug shows why)
            message = case_failure(error, case.case_id, getattr(args, "debug", False))
            failed.append({"case": case.case_id, "message": message})
            progress.event("error", case=case.case_id, message=message)
    volumes = batch_volumes(volume_files, None if output.name.lower().endswith(".nii.gz") else output)
    progress.event("done", outputs=outputs, succeeded=len(outputs), failed=failed, volumes_ml=volumes,
                   message=f"{len(outputs)} of {len(cases)} case(s) segmented"
                           + (f"; failed: {', '.join(f['case'] for f in failed)}" if failed else ""))
    return 1 if failed else 0


def case_failure(error: Exception, case_id: str, debug: bool) -> str:
    """What a batch says of a case that failed: the engine's own message, or the unforeseen error named (its
    traceback on stderr with --debug), so the batch can go on to the next case."""
    from emim.errors import EmimError

    if isinstance(error, EmimError):
        return str(error)
    if debug:
        import traceback

        traceback.print_exc()
    return (f"case {case_id}: unexpected {type(error).__name__}: {error}. Check the case's files; run again with "
            "--debug for the traceback, and report it.")


def postprocess_settings(args: argparse.Namespace, recorded: PostProcess) -> PostProcess:
    """The model's post-processing, or none, with the size and largest-lesion options laid over it."""
    from dataclasses import replace

    settings = NONE if args.postprocess == "none" else recorded
    if args.min_lesion_mm3 is not None:
        settings = replace(settings, min_lesion_mm3=args.min_lesion_mm3)
    if args.keep_largest:
        settings = replace(settings, largest=tuple(args.keep_largest))
    return settings


def batch_volumes(files: list[Path], folder: Path | None) -> dict[str, dict[str, float]]:
    """{case: {region: mL}} from the cases' volume files; into a folder output, also volumes.csv for the batch."""
    import csv
    import io

    from emim.atomic_write import write_file
    from emim.volumes import COLUMNS, region_volumes

    rows = []
    for path in files:
        with path.open(encoding="utf-8") as handle:
            rows += csv.DictReader(handle)
    if folder is not None and rows:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_file(folder / "volumes.csv", text.getvalue())
    cases: dict[str, list] = {}
    for row in rows:
        cases.setdefault(row["case"], []).append(row)
    return {case: region_volumes(case_rows) for case, case_rows in cases.items()}
