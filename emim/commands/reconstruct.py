"""`emim reconstruct --model PRETRAINING --mask hybrid|modal|position|patch --seed S --output DIR INPUT`.

Hides patches of a case with the chosen mask pattern and lets a pretraining predict them, to judge what it learnt.
PRETRAINING is a pretraining run folder, one of its checkpoints, or an exported pretraining model. The whole
volume is tiled with crops of the model's crop size (no overlap) and each crop's mask is drawn from the seed, so
a seed always gives the same masks. Per modality, DIR holds `<m>_masked.nii.gz` (hidden patches 0),
`<m>_reconstruction.nii.gz` (prediction in hidden patches, the input elsewhere) and `<m>_mask.nii.gz` (uint8,
1 = hidden), on the input's exact grid, in the pretraining's normalised intensity units. With several cases each
gets DIR/<case>/. `--mask modal` hides the same modality in every crop: the seed picks it, or `--hide NAME`.
Crops of pure air are masked but not predicted (their hidden voxels stay 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emim.commands.arguments import PERMILLE, add_case_inputs, case_inputs, check_case_inputs
from emim.contract import DEVICE_CHOICES, MASK_CHOICES
from emim.progress import PROGRESS_MODES, Progress


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_case_inputs(parser, "case folder (or folder of cases)")
    parser.add_argument("--model", required=True, metavar="PRETRAINING",
                        help="pretraining run folder, checkpoint (RUN/checkpoints/last.pt) or pretraining model folder")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the NIfTI outputs")
    parser.add_argument("--mask", default="hybrid", choices=MASK_CHOICES, help="mask pattern (default hybrid)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks (same seed, same masks)")
    parser.add_argument("--hide", metavar="NAME", help="with --mask modal: the modality to hide (default: from seed)")
    parser.add_argument("--patch-ratio", type=float, help="share of hidden patches (default: the pretraining's)")
    parser.add_argument("--position-ratio", type=float,
                        help="share of hidden positions (default: the pretraining's)")
    parser.add_argument("--resample", action="store_true",
                        help="resample modalities whose grid differs onto the first modality (physical space)")
    parser.add_argument("--batch-size", type=int, default=2, help="crops per forward pass")
    parser.add_argument("--device", default="auto", help=f"one of {DEVICE_CHOICES} or cuda:N")
    parser.add_argument("--progress", default="bar", choices=PROGRESS_MODES)


def run(args: argparse.Namespace) -> int:
    from emim.errors import EmimError
    from emim.inference.reconstruct import load_reconstructor, reconstruct_case
    from emim.safepaths import check_output_folder

    check_case_inputs(args)
    progress = Progress(args.progress)
    for name in ("patch_ratio", "position_ratio"):
        value = getattr(args, name)
        if value is not None and not 0 < value < 1:
            raise EmimError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
    if args.batch_size < 1:
        raise EmimError(f"--batch-size must be at least 1, got {args.batch_size}")
    model = load_reconstructor(args.model, args.device, lambda m: progress.event("warning", message=m))
    spec = model.weights.spec
    cases = case_inputs(args, spec)
    check_output_folder(Path(args.output), [case.folder for case in cases], [Path(p) for p in args.inputs or ()])
    progress.event("start", command="reconstruct", total=len(cases), device=str(model.device), mask=args.mask,
                   seed=args.seed, model=str(args.model))
    outputs = []
    for index, case in enumerate(cases):
        def on_batch(done: int, total: int, index: int = index, case_id: str = case.case_id) -> None:
            units = int(PERMILLE * (index + done / max(total, 1)) / len(cases))
            progress.step(units, PERMILLE, case=case_id, window=done, windows=total)

        folder = Path(args.output) if len(cases) == 1 else Path(args.output) / case.case_id
        outputs += reconstruct_case(model, case, folder, args.mask, args.seed, args.hide, args.patch_ratio,
                                    args.position_ratio, args.resample, args.batch_size, progress, on_batch)
    progress.event("done", outputs=outputs)
    return 0
