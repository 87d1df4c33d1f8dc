"""`emim collapse-report DATA`: per mask pattern, the collapsed loss of a data set and whether a constant output
would beat a healthy pretraining on it (the paper's complete-collapse analysis, no training).

Cases are loaded with the training normalisation; crops and patches are those of the chosen preset (`--crop`,
`--patch-size` override). With `--progress json` the last line is a `done` event whose `patterns` hold the table.
"""

from __future__ import annotations

import argparse

from emim.commands.arguments import add_mask_arguments, int_triple, mask_config
from emim.contract import DEFAULT_NORMALIZATION, DEFAULT_PRESET, NORMALIZATIONS, PRESET_NAMES
from emim.progress import PROGRESS_MODES, Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="folder of case folders, one case folder, or a datalist JSON")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=PRESET_NAMES,
                        help="crop and patch size of this preset")
    parser.add_argument("--crop", type=int_triple, help="crop size (default: the preset's)")
    parser.add_argument("--patch-size", type=int, help="patch size (default: the preset's)")
    parser.add_argument("--modalities", help="comma-separated modality names in order (default: from the data)")
    parser.add_argument("--normalization", default=DEFAULT_NORMALIZATION, choices=NORMALIZATIONS)
    add_mask_arguments(parser)
    parser.add_argument("--crops-per-case", type=int, default=8, help="random brain crops per case (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def run(args: argparse.Namespace) -> int:
    import torch

    from emim.config import preset
    from emim.data.cases import dataset_spec, find_cases
    from emim.data.loading import load_case
    from emim.data.brainbox import brain_box
    from emim.errors import EmimError
    from emim.pretrain.collapse_report import HEALTHY_SOURCE, collapse_risk, report_table
    from emim.pretrain.run import heldout_crops

    progress = Progress(args.progress)
    if args.crops_per_case < 1:
        raise EmimError(f"--crops-per-case must be at least 1, got {args.crops_per_case}")
    names = args.modalities.split(",") if args.modalities else list(dataset_spec(args.data).names)
    try:
        config = preset(args.preset, modalities=tuple(names), crop_size=args.crop, patch_size=args.patch_size)
    except ValueError as error:
        raise EmimError(f"--crop/--patch-size: {error}") from None
    mask = mask_config(args)
    cases = find_cases(args.data)
    progress.event("start", command="collapse-report", total=len(cases), cases=len(cases))
    crops = []
    for index, case in enumerate(cases):  # one case in memory at a time
        box = brain_box(load_case(case, names, args.normalization, with_label=False).image)[0]
        crops.append(heldout_crops([box], config.crop_size, args.crops_per_case, seed=args.seed + index))
        progress.step(index + 1, len(cases), case=case.case_id)
    rows = collapse_risk(torch.cat(crops), config.patch_size, mask, args.seed)
    if args.progress == "json":
        progress.event("done", patterns=[r.to_dict() for r in rows], healthy_source=HEALTHY_SOURCE,
                       crop_size=list(config.crop_size), patch_size=config.patch_size, cases=len(cases))
    else:
        print(report_table(rows))
    return 0
