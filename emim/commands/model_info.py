"""`emim model-info MODEL`: what a model folder holds, after checking its weights file is safe and intact."""

from __future__ import annotations

import argparse
import json

from emim.modelfile import describe_model, load_metadata, read_weights


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="model folder (holding model.safetensors and metadata.json)")
    parser.add_argument("--json", action="store_true", help="print metadata.json as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    metadata = load_metadata(args.model)
    read_weights(args.model, metadata)  # refuses pickles, truncated files and hash mismatches before we vouch for it
    if args.json:
        print(json.dumps(metadata, indent=2))
    else:
        print(describe_model(metadata))
        print("weights: safetensors, SHA-256 verified")
    return 0
