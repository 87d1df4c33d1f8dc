"""`emim finetune-classifier DATA --labels CSV --run RUN [options]`: case-level classification fine-tuning.

The labels CSV has a header and one line per case: `case_id,label` (labels may be words or integers). The E-MIM
encoder (from `--pretrained RUN_OR_CHECKPOINT_OR_MODEL`, or random) feeds a LayerNorm + Linear head on its mean
last-level tokens; validation ROC AUC and accuracy on held-out cases are logged each evaluation. `--export MODEL`
writes the model folder at the end; `--resume` continues a run. Multi-GPU: `torchrun ... -m emim finetune-classifier`.
"""

from __future__ import annotations

import argparse
import os

from emim.commands.arguments import add_training_arguments, train_settings
from emim.contract import MODEL_OUTPUT, VAL_FRACTION
from emim.progress import Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "data set: folder of cases, one case folder, or datalist JSON", steps=500,
                           lr=1e-4, weight_decay=0.05, eval_every=50, eval_help="validation every N steps")
    parser.add_argument("--labels", help="CSV with a header and one `case_id,label` line per case")
    parser.add_argument("--pretrained", metavar="SOURCE",
                        help="initialise the encoder from a pretraining run folder, checkpoint, model folder or "
                             "shipped pretraining's name (EMIM-starter-tiny-pretraining)")
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                        help="share of cases held out for validation AUC/accuracy, stratified by class "
                             "(0: validate on the training cases)")
    parser.add_argument("--export", metavar="MODEL", help="write the trained model folder here when done")


def config_from_args(args: argparse.Namespace):
    from emim.config import preset
    from emim.data.cases import dataset_spec
    from emim.finetune.classification import ClassifierConfig

    spec = dataset_spec(args.data)
    if args.modalities:
        spec = spec.select(args.modalities.split(","))
    return ClassifierConfig(
        data=str(args.data), labels=str(args.labels),
        model=preset(args.preset, modalities=spec.names, crop_size=args.crop),
        train=train_settings(args),
        pretrained=args.pretrained, batch_size=args.batch_size, val_fraction=args.val_fraction,
        normalization=args.normalization, resample=args.resample, device=args.device, cache=args.cache,
        modality_spec=spec.to_metadata())


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.export import export_model
    from emim.finetune.classification import resume_classifier_training, run_classifier_training

    progress = Progress(args.progress)
    if args.resume:
        resume_classifier_training(args.run, args.device, progress, args.cache)
    elif args.data is None or args.labels is None:
        raise EmimError("give the data set and its labels CSV: emim finetune-classifier DATA --labels CSV --run RUN")
    else:
        run_classifier_training(config_from_args(args), args.run, progress=progress)
    if args.export and os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 exports
        folder = export_model(args.run, args.export)
        progress.event("output", path=str(folder), kind=MODEL_OUTPUT)
    return 0
