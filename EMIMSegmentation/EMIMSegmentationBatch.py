"""Segment every case folder under --input with an exported E-MIM model; one bad case never stops the batch.

In 3D Slicer:   Slicer --no-main-window --python-script EMIMSegmentationBatch.py --input DIR --model MODEL --output DIR
Plain Python:   python EMIMSegmentationBatch.py ...   (needs the PyPI package slicer-core; same Logic, no Qt)

Writes OUTPUT/<case>.seg.nrrd (and OUTPUT/<case>.nii.gz labels with --nifti), then a summary; the exit status is
1 when any case failed. --check only loads the cases and checks modalities and grids, without running the model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import slicer  # noqa: E402

from EMIMSegmentationLib.errors import EMIMSegmentationError  # noqa: E402
from EMIMCommonLib.headless import bootstrap, running_in_slicer  # noqa: E402
from EMIMSegmentationLib.logic import SegmentationLogic  # noqa: E402
from emim.contract import DEVICE_CHOICES  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="EMIMSegmentationBatch", description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, type=Path, help="folder of case folders")
    parser.add_argument("--model", required=True, type=Path, help="exported model folder (metadata.json)")
    parser.add_argument("--output", required=True, type=Path, help="folder for the results")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default=DEVICE_CHOICES[0])
    parser.add_argument("--overlap", type=float, help="sliding-window overlap (default: the model's)")
    parser.add_argument("--resample", action="store_true", help="resample mismatched modalities onto the reference")
    parser.add_argument("--native-spacing", action="store_true",
                        help="run on each case's own voxel size even where the model was trained on another")
    parser.add_argument("--nifti", action="store_true", help="also write the labels as NIfTI")
    parser.add_argument("--check", action="store_true", help="only check inputs, do not segment")
    return parser.parse_args(argv)


def save_outputs(segmentation, reference, case: str, output: Path, nifti: bool) -> list[Path]:
    """`.seg.nrrd` through the segmentation storage node; optional NIfTI labels on the reference grid."""
    written = [output / f"{case}.seg.nrrd"]
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(written[0]))
    if not storage.WriteData(segmentation):
        raise EMIMSegmentationError(f"could not write {written[0]}")
    if nifti:
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
        slicer.modules.segmentations.logic().ExportAllSegmentsToLabelmapNode(
            segmentation, labelmap, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        written.append(output / f"{case}.nii.gz")
        volume_storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
        volume_storage.SetFileName(str(written[1]))
        if not volume_storage.WriteData(labelmap):
            raise EMIMSegmentationError(f"could not write {written[1]}")
    return written


def run_case(logic: SegmentationLogic, folder: Path, args: argparse.Namespace) -> str:
    """One case: load, check, segment, save. Returns a short result text; raises on failure."""
    model = logic.readModel(args.model)
    inputs = logic.loadCase(folder, model)
    mismatches = logic.geometryMismatches(inputs, model)
    if mismatches and not args.resample:
        raise EMIMSegmentationError(" ".join(mismatches) + " (use --resample)")
    if args.check:
        return "inputs ok" + (" (will resample)" if mismatches else "")
    segmentation = logic.segment(inputs, model, device=args.device, resample=args.resample, overlap=args.overlap,
                                 nativeSpacing=args.native_spacing, waitForCompletion=True,
                                 logCallback=lambda text: print(f"  {text}", flush=True))
    reference = inputs[model.modalities[0].name]
    written = save_outputs(segmentation, reference, folder.name, args.output, args.nifti)
    return "wrote " + ", ".join(p.name for p in written)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not running_in_slicer():
        bootstrap()
    logic = SegmentationLogic()
    try:
        logic.readModel(args.model)
    except EMIMSegmentationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.mkdir(parents=True, exist_ok=True)
    cases = sorted(p for p in args.input.iterdir() if p.is_dir() and not p.name.startswith("."))
    results: list[tuple[str, bool, str]] = []
    for index, folder in enumerate(cases, 1):
        start = time.monotonic()
        print(f"[{index}/{len(cases)}] {folder.name}", flush=True)
        try:
            results.append((folder.name, True, run_case(logic, folder, args)))
        except EMIMSegmentationError as error:
            results.append((folder.name, False, str(error)))
        print(f"  {'ok' if results[-1][1] else 'FAILED'} in {time.monotonic() - start:.1f} s: {results[-1][2]}",
              flush=True)
        slicer.mrmlScene.Clear(0)
    failed = [r for r in results if not r[1]]
    print(f"Summary: {len(results) - len(failed)} of {len(results)} cases succeeded, {len(failed)} failed.")
    for name, _, message in failed:
        print(f"  FAILED {name}: {message}")
    return 1 if failed else 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    if running_in_slicer():
        slicer.util.exit(code)
    sys.exit(code)
