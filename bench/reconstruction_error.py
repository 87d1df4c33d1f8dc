"""How well a pretraining reconstructs a whole case it did not train on: per mask pattern, the masked-voxel MSE of
`emim reconstruct`'s output against the variance of the hidden voxels (what a constant output would score).

Runs the engine's own reconstruction path (the one the Slicer module shows) and reads its NIfTI outputs back.
Writes bench/results/reconstruction_error.{json,md}. Usage:

    python bench/reconstruction_error.py --model RUN_OR_MODEL --case ../shared/data/brats-gli-mini/BraTS-GLI-01404-000
    python bench/reconstruction_error.py --smoke    # the shipped pretraining on one 64^3 case
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402

PATTERNS = ("patch", "position", "modal")


def pattern_error(model, case, pattern: str, seed: int, normalised: np.ndarray) -> dict[str, float]:
    """Masked-voxel MSE over brain voxels and the variance of those voxels, all modalities pooled."""
    import nibabel as nib

    from emim.inference.reconstruct import reconstruct_case

    with tempfile.TemporaryDirectory() as folder:
        records = reconstruct_case(model, case, folder, pattern, seed)
        errors, targets = [], []
        for index, modality in enumerate(model.modalities):
            paths = {r["kind"]: r["path"] for r in records if r["modality"] == modality}
            hidden = np.asanyarray(nib.load(paths["mask"]).dataobj).astype(bool)
            hidden &= normalised[index] != 0  # brain voxels: the background is 0 and not predicted
            prediction = np.asanyarray(nib.load(paths["reconstruction"]).dataobj)
            errors.append((prediction[hidden] - normalised[index][hidden]) ** 2)
            targets.append(normalised[index][hidden])
    error, target = np.concatenate(errors), np.concatenate(targets)
    return {"pattern": pattern, "masked_mse": float(error.mean()), "hidden_variance": float(target.var()),
            "ratio": float(error.mean() / target.var()), "hidden_voxels": int(target.size)}


def main(argv: list[str] | None = None) -> None:
    from emim.bundled import STARTER_PRETRAINING, bundled_model
    from emim.data.cases import find_cases
    from emim.data.loading import load_case
    from emim.inference.reconstruct import load_reconstructor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pretraining run folder, checkpoint or model folder (with --smoke default: "
                                        "the shipped pretraining)")
    parser.add_argument("--case", help="a case folder the pretraining did not train on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = common.parse_args(parser, argv, "one 64^3 case, by default with the shipped pretraining")
    common.ensure_malloc_env()
    if args.smoke:
        args.model = args.model or bundled_model(STARTER_PRETRAINING)
        args.case = args.case or common.smoke_cases(args.results / "smoke")[0]
    elif not (args.model and args.case):
        parser.error("give --model and --case")
    model = load_reconstructor(args.model, args.device)
    case = find_cases(args.case, model.weights.spec)[0]
    loaded = load_case(case, model.modalities, model.weights.normalization, with_label=False)
    normalised = np.stack([loaded.to_reference(channel) for channel in loaded.image])
    rows = [pattern_error(model, case, pattern, args.seed, normalised) for pattern in PATTERNS]
    text = (f"Reconstruction of {case.case_id} (not trained on) by {args.model}, seed {args.seed}, brain voxels "
            "only:\n\n" + common.markdown_table(rows, ["pattern", "masked_mse", "hidden_variance", "ratio",
                                                       "hidden_voxels"]))
    common.write_results("reconstruction_error", common.header(args.device), {"rows": rows, **vars(args)}, text,
                         args.results)


if __name__ == "__main__":
    main()
