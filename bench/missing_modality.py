"""What a missing sequence costs, and which answer to it is better: dropping it (a model fine-tuned with modality
dropout segments without it) or filling it (`--fill-missing`: the E-MIM pretraining's modal-mask decoder
synthesises a stand-in, and the model segments with four inputs).

    python bench/missing_modality.py [--ship]      (reuses bench/results/starter-work from `make starter-model`,
                                                    and makes its data and pretraining when they are absent)

Rows: Dice WT/TC/ET with all four sequences and with each single one missing, for the shipped starter model
(fine-tuned without dropout: it refuses to drop, it can fill) and for the same recipe fine-tuned with
`--modality-dropout` from the same pretraining (bench/starter_model.py RECIPE, seed 0), so the two differ only by
dropout. The filler is that pretraining. Two data sets: the three real BraTS mini cases (never trained on) and
held-out generated cases (another seed than the training cases). Scores use the models' default post-processing and
`emim.evaluate.score_labels` (global Dice); fill rows also give `synthetic_r`, how closely the stand-in follows the
real sequence (Pearson correlation inside the brain, mean over cases). The real-case Dice is written into both
models' metadata (`provenance.missing_sequence_dice`), which the Slicer panel shows; `--ship` also exports the
dropout model to Resources/Models/EMIM-starter-tiny-dropout and the filler, the pretraining exported as a model, to
Resources/Models/EMIM-starter-tiny-pretraining (so `--fill-missing EMIM-starter-tiny-pretraining` is what was
measured). `--smoke`: the starter recipe and the dropout fine-tuning for 1 step on two 64^3 cases, scored on one
64^3 case standing in for the real ones (no generated set), without t2f only; everything into --results.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402
from emim.bundled import STARTER_PRETRAINING  # noqa: E402
from bench.starter_model import (RECIPE, SMOKE_RECIPE, export_pretraining, prepare_pretraining,  # noqa: E402
                                 recipe_settings, training_seconds)

STARTER = common.ROOT / "Resources" / "Models" / "EMIM-starter-tiny"
SHIPPED_DROPOUT = common.ROOT / "Resources" / "Models" / "EMIM-starter-tiny-dropout"
SHIPPED_PRETRAINING = common.ROOT / "Resources" / "Models" / STARTER_PRETRAINING
MODALITIES = ("t1n", "t1c", "t2w", "t2f")
GENERATED_CASES = 3
GENERATED_SEED = 1000  # far from the training cases' seed 0
SYNTHETIC_R = "synthetic_r"  # fill rows: the stand-in's correlation with the real sequence


def finetune_with_dropout(work: Path, starter_work: Path, recipe: dict[str, Any], probability: float,
                          seed: int) -> Path:
    """The starter recipe's fine-tuning from its pretraining in `starter_work`, with modality dropout."""
    from emim.export import export_model
    from emim.finetune.segmentation import default_config, run_finetuning
    from emim.progress import Progress

    run = work / "finetune"
    config = replace(default_config(str(starter_work / "data"), "tiny"), device="cpu",
                     batch_size=recipe["finetune_batch"], pretrained=str(starter_work / "pretrain"),
                     modality_dropout=probability,
                     train=recipe_settings(recipe, recipe["finetune_steps"], recipe["finetune_lr"], seed))
    run_finetuning(config, run, resume=(run / "checkpoints" / "last.pt").is_file(), progress=Progress("none"))
    return export_model(run, work / "model", force=True, name=f"E-MIM starter with modality dropout {probability:g} "
                        "(tiny, generated data only)", description=(
                            f"The starter model's recipe with --modality-dropout {probability:g}: segments a case "
                            "with any sequences missing. Pretrained and fine-tuned on generated cases only; a "
                            "starting point, not a clinical tool."))


def scores(model: Any, data: Path, out: Path, missing: str | None, filler: Any = None) -> dict[str, float]:
    """Mean global Dice per region over the cases in `data`, segmenting without `missing` (filled by `filler`);
    when filled, also `SYNTHETIC_R`: the mean over cases of the stand-in's Pearson correlation with the real
    sequence inside the brain (scale-free, so the stand-in's z-scores compare with the raw file)."""
    import nibabel as nib
    import numpy as np

    from emim.data.cases import find_cases
    from emim.evaluate import mean_row, score_labels
    from emim.inference.fill_missing import SYNTHETIC
    from emim.inference.segment import SegmentOptions, segment_case

    rows, correlations = [], []
    for case in find_cases(data, model.spec):
        options = SegmentOptions(missing=[missing] if missing else [], fill=filler)
        label = segment_case(model, case, out, options, single=False)["label"]
        truth = nib.load(case.label)
        spacing = tuple(float(z) for z in truth.header.get_zooms()[:3])
        rows.append(score_labels(np.asarray(nib.load(label).dataobj), np.asarray(truth.dataobj).astype(np.uint8),
                                 spacing, model.regions))
        if filler is not None:
            made = np.asarray(nib.load(out / f"{case.case_id}{SYNTHETIC}{missing}.nii.gz").dataobj)
            real = np.asarray(nib.load(case.images[missing]).dataobj)
            inside = np.any([np.asarray(nib.load(path).dataobj) != 0 for m, path in case.images.items()
                             if m != missing], axis=0)
            correlations.append(float(np.corrcoef(made[inside], real[inside])[0, 1]))
    mean = mean_row(rows, model.regions)
    result = {r["name"]: round(float(mean[f"dice_{r['name']}"]), 3) for r in model.regions}
    if correlations:
        result[SYNTHETIC_R] = round(float(np.mean(correlations)), 3)
    return result


def measure(name: str, model: Any, filler: Any, data: Path, out: Path, drops: bool,
            modalities: tuple[str, ...]) -> dict[str, Any]:
    """{"all": Dice, "drop": {m: Dice}, "fill": {m: Dice}} of one model on one data set (no "drop" if it refuses),
    for each missing modality of `modalities`."""
    result: dict[str, Any] = {"all": scores(model, data, out / "all", None)}
    print(name, data.name, "all", result["all"], flush=True)
    for strategy in ("drop", "fill") if drops else ("fill",):
        result[strategy] = {}
        for missing in modalities:
            result[strategy][missing] = scores(model, data, out / f"{strategy}-{missing}", missing,
                                               filler if strategy == "fill" else None)
            print(name, data.name, strategy, missing, result[strategy][missing], flush=True)
    return result


def table_rows(name: str, data: str, measured: dict[str, Any], modalities: tuple[str, ...]) -> list[dict[str, Any]]:
    def dice(values: dict[str, float]) -> dict[str, float]:
        return {key if key == SYNTHETIC_R else f"dice_{key}": value for key, value in values.items()}

    rows = [{"data": data, "model": name, "missing": "none", "answer": "-", **dice(measured["all"])}]
    for missing in modalities:
        if "drop" not in measured:
            rows.append({"data": data, "model": name, "missing": missing, "answer": "drop", "note": "refused"})
        for strategy in ("drop", "fill"):
            if strategy in measured:
                rows.append({"data": data, "model": name, "missing": missing, "answer": strategy,
                             **dice(measured[strategy][missing])})
    return rows


def record(model_folder: Path, measured: dict[str, Any], filler: Any, real: Path) -> None:
    """Write the real-case Dice into the model's metadata (weights and checksum unchanged)."""
    from emim.contract import MISSING_DICE
    from emim.modelfile import load_model, save_model

    weights, metadata = load_model(model_folder)
    metadata["provenance"][MISSING_DICE] = {
        "cases": f"the {len(list(real.iterdir()))} real BraTS mini cases", **measured,
        "fill_pretraining": filler.description()["name"],
        "command": "python bench/missing_modality.py"}
    save_model(model_folder, weights, metadata)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="work folder (default: <--results>/missing-work)")
    parser.add_argument("--ship", action="store_true",
                        help=f"export the dropout model to {SHIPPED_DROPOUT} and the filler to {SHIPPED_PRETRAINING}")
    args = common.parse_args(parser, argv, "1 training step per stage on two 64^3 cases, one scored, t2f missing")
    if args.smoke and args.ship:
        parser.error("--smoke never writes into Resources/Models: leave out --ship")
    work = args.work or args.results / "missing-work"
    real = common.smoke_cases(work / "smoke-real")[0].parent if args.smoke else common.MINI_DATA
    if not real.is_dir():
        raise SystemExit(f"needs the real mini cases in {real}")
    common.ensure_malloc_env()
    from emim.inference.reconstruct import load_reconstructor
    from emim.inference.segmentation_model import load_segmentation_model
    from emim.modelfile import load_model, save_model
    from emim.sample import make_sample_cases

    info = common.header("cpu")
    recipe = SMOKE_RECIPE if args.smoke else RECIPE
    modalities = ("t2f",) if args.smoke else MODALITIES
    starter_work = args.results / "starter-work"
    prepare_pretraining(starter_work, dict(recipe), args.seed, "cpu", args.smoke)
    pretraining = export_pretraining(starter_work, SHIPPED_PRETRAINING if args.ship else
                                     work / STARTER_PRETRAINING, args.seed, recipe)
    dropout_folder = finetune_with_dropout(work, starter_work, recipe, args.dropout, args.seed)
    datasets = {"real": real}
    if not args.smoke:
        datasets["generated"] = generated = work / "generated"
        if len([p for p in generated.glob("BraTS-SYN-*") if p.is_dir()]) != GENERATED_CASES:
            make_sample_cases(generated, GENERATED_CASES, GENERATED_SEED, size=RECIPE["size"], randomise=True)
    filler = load_reconstructor(pretraining, "cpu")
    models = {"starter (no dropout)": (STARTER, False), f"dropout {args.dropout:g}": (dropout_folder, True)}
    rows: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    for name, (folder, drops) in models.items():
        model = load_segmentation_model(folder, "cpu")
        for label, data in datasets.items():
            results[f"{name} / {label}"] = measured = measure(name, model, filler, data,
                                                              work / "out" / folder.name / label, drops, modalities)
            rows += table_rows(name, label, measured, modalities)
            if label == "real" and (args.ship or folder != STARTER):  # shipped files change only with --ship
                record(folder, measured, filler, real)
    if args.ship:
        weights, metadata = load_model(dropout_folder)
        metadata["provenance"].update(data="generated only: emim make-sample --randomise", run=None, seed=args.seed,
                                      recipe={**RECIPE, "modality_dropout": args.dropout},
                                      pretrained=STARTER_PRETRAINING,
                                      command=f"python bench/missing_modality.py --ship --seed {args.seed}",
                                      seconds={"pretrain": training_seconds(starter_work).get("pretrain"),
                                               "finetune": training_seconds(work).get("finetune")})
        save_model(SHIPPED_DROPOUT, weights, metadata)
    columns = ["data", "model", "missing", "answer", "dice_WT", "dice_TC", "dice_ET", SYNTHETIC_R, "note"]
    common.write_results("missing_modality_cpu", info, {"results": results, "dropout": args.dropout,
                                                        "recipe": recipe}, common.markdown_table(rows, columns),
                         args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
