"""`emim export RUN --out MODEL_DIR`: a model folder (model.safetensors + metadata.json) from a run's last checkpoint.

A fine-tuning run gives a segmentation model for `emim segment` and the Slicer module; a pretraining run gives a
pretraining model (encoder + decoder) for reconstruction.
"""

from __future__ import annotations

import argparse

from emim.contract import MODEL_OUTPUT
from emim.progress import PROGRESS_MODES, Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN", help="fine-tuning or pretraining run folder")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--name", help="model name shown in Slicer (default from the folder name)")
    parser.add_argument("--description", help="free-text description stored in metadata.json")
    parser.add_argument("--force", action="store_true", help="replace a model already in --out")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def run(args: argparse.Namespace) -> int:
    from emim.export import export_model
    from emim.modelfile import load_metadata

    progress = Progress(args.progress)
    folder = export_model(args.run_dir, args.out, args.name, args.description, args.force)
    metadata = load_metadata(folder)
    progress.event("output", path=str(folder), kind=MODEL_OUTPUT, case=None)
    progress.event("done", outputs=[str(folder)], task=metadata["task"], steps=metadata["provenance"]["steps"])
    return 0
