"""Train the starter model that ships in Resources/Models, from generated data only, reproducibly from a seed.

    python bench/starter_model.py --seed 0 --out Resources/Models/EMIM-starter-tiny     (or: make starter-model)

1. `make-sample --randomise --size small`: CASES domain-randomised cases at 2 mm (no real scan, so no data-sharing
   terms follow the weights; 2 mm because a 64^3 window then covers a whole tumour and a real 1 mm case runs in a
   few seconds on a CPU after the model's spacing round trip);
2. E-MIM pretraining (tiny preset, its recipe) on them;
3. UNETR fine-tuning from that encoder (the last cases validate);
4. export (the pretraining too, beside the model as EMIM-starter-tiny-pretraining), then
   `bench/real_case_quality.py`'s evaluation on the real BraTS mini cases (never trained on), whose
   scores are written into the model's metadata (`provenance.real_cases`) when the shared data is present.
Work files go under bench/results/starter-work/; the time per stage is printed and recorded in the metadata.
`--smoke` runs the whole pipeline for 1 step per stage on two 64^3 cases (no generation; scores on a third) into
--results, never into Resources/Models.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import common  # noqa: E402
from emim.bundled import STARTER_MODEL, STARTER_PRETRAINING  # noqa: E402

RECIPE = {"cases": 48, "size": "small", "pretrain_steps": 2000, "finetune_steps": 1000, "finetune_lr": 2e-3,
          "finetune_batch": 2, "warmup_steps": 100, "eval_every": 200}
SMOKE_RECIPE = {**RECIPE, "cases": 2, "pretrain_steps": 1, "finetune_steps": 1, "warmup_steps": 1, "eval_every": 1,
                "finetune_batch": common.SMOKE_FINETUNING["batch_size"]}  # on `common.smoke_cases`
NAME = "E-MIM starter (tiny, generated data only)"
PRETRAINING_NAME = "E-MIM starter pretraining (tiny, generated data only)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help=f"model folder (default: Resources/Models/{STARTER_MODEL}; with "
                                                 f"--smoke <--results>/models/{STARTER_MODEL})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="work folder (default: <--results>/starter-work)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="keep the trained model in --out; record the engine's default post-processing and the "
                             "real-case scores again")
    for key, value in RECIPE.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = common.parse_args(parser, argv, "1 step per stage on two 64^3 cases, the models into --results")
    common.ensure_malloc_env()
    recipe = SMOKE_RECIPE if args.smoke else {key: getattr(args, key) for key in RECIPE}
    models = args.results / "models" if args.smoke else common.ROOT / "Resources" / "Models"
    out = args.out or models / STARTER_MODEL
    work = args.work or args.results / "starter-work"
    real = common.smoke_cases(work / "smoke-real")[0].parent if args.smoke else common.MINI_DATA

    from emim.export import export_model
    from emim.finetune.segmentation import default_config as finetune_config, run_finetuning
    from emim.modelfile import load_model, save_model
    from emim.progress import Progress

    if args.evaluate_only:
        record_real_cases(out, work, real)
        return 0
    data = work / "data"
    times = prepare_pretraining(work, recipe, args.seed, args.device, args.smoke)
    progress = Progress("none")
    start = time.monotonic()
    config = replace(finetune_config(str(data), "tiny"), device=args.device, batch_size=recipe["finetune_batch"],
                     pretrained=str(work / "pretrain"),
                     train=recipe_settings(recipe, recipe["finetune_steps"], recipe["finetune_lr"], args.seed))
    run_finetuning(config, work / "finetune", resume=(work / "finetune" / "config.json").is_file(), progress=progress)
    print(f"fine-tuned in {time.monotonic() - start:.0f} s", flush=True)

    model = export_model(work / "finetune", out, name=NAME, force=True, description=(
        f"UNETR over an E-MIM encoder (tiny preset), pretrained and fine-tuned on {recipe['cases']} generated, "
        "domain-randomised BraTS-layout cases (emim make-sample --randomise); no real scan was used. A starting "
        "point to try the module, not a clinical tool."))
    pretraining = export_pretraining(work, out.parent / STARTER_PRETRAINING, args.seed, recipe)
    weights, metadata = load_model(model)
    metadata["provenance"].update(
        data="generated only: emim make-sample --randomise", run=None, seed=args.seed, recipe=recipe,
        pretrained=pretraining.name, command=f"python bench/starter_model.py --seed {args.seed}",
        seconds={**times, **training_seconds(work)},
        machine=common.header()["machine"])
    save_model(model, weights, metadata)
    record_real_cases(model, work, real)
    print(f"wrote {model}", flush=True)
    return 0


def recipe_settings(recipe: dict[str, Any], steps: int, lr: float, seed: int) -> Any:
    """The recipe's training settings for one stage."""
    from emim.train.trainer import TrainSettings

    return TrainSettings(steps=steps, lr=lr, warmup_steps=recipe["warmup_steps"], eval_every=recipe["eval_every"],
                         checkpoint_every=recipe["eval_every"], seed=seed)


def prepare_pretraining(work: Path, recipe: dict[str, Any], seed: int, device: str,
                        smoke: bool = False) -> dict[str, float]:
    """Steps 1 and 2 into `work` (data/, pretrain/), resuming what an earlier call left; seconds per stage. Also
    what bench/missing_modality.py needs (the pretraining its dropout model starts from and that fills a gap).
    `smoke`: the data are `common.smoke_cases` (generating even one case takes seconds)."""
    from emim.pretrain.run import default_config as pretrain_config, run_pretraining
    from emim.progress import Progress
    from emim.sample import make_sample_cases

    times: dict[str, float] = {}
    data = work / "data"
    start = time.monotonic()
    if smoke:
        common.smoke_cases(data, recipe["cases"])
    elif len([p for p in data.glob("BraTS-SYN-*") if p.is_dir()]) != recipe["cases"]:  # none yet, or a cut-off run
        make_sample_cases(data, recipe["cases"], seed, size=recipe["size"], randomise=True)
        times["generate"] = round(time.monotonic() - start, 1)
        print(f"generated {recipe['cases']} cases in {times['generate']:.0f} s", flush=True)
    start = time.monotonic()
    config = pretrain_config(str(data), "tiny")
    config = replace(config, device=device, train=recipe_settings(recipe, recipe["pretrain_steps"], config.train.lr,
                                                                  seed), **(common.SMOKE_PRETRAINING if smoke else {}))
    run_pretraining(config, work / "pretrain", resume=(work / "pretrain" / "config.json").is_file(),
                    progress=Progress("none"))
    print(f"pretrained in {time.monotonic() - start:.0f} s", flush=True)
    return times


def export_pretraining(work: Path, out: Path, seed: int, recipe: dict[str, Any]) -> Path:
    """The recipe's pretraining (`prepare_pretraining` into `work`) as a model folder: what `--fill-missing` and
    `--pretrained` take, and what the Slicer module's reconstruction view loads."""
    from emim.export import export_model
    from emim.modelfile import load_model, save_model

    model = export_model(work / "pretrain", out, force=True, name=PRETRAINING_NAME, description=(
        f"E-MIM encoder and reconstruction decoder (tiny preset) pretrained on {recipe['cases']} generated, "
        "domain-randomised BraTS-layout cases; no real scan was used. The starter models were fine-tuned from this "
        "recipe; it synthesises a missing sequence (--fill-missing) and shows masked reconstructions."))
    weights, metadata = load_model(model)
    metadata["provenance"].update(data="generated only: emim make-sample --randomise", run=None, seed=seed,
                                  recipe={k: recipe[k] for k in ("cases", "size", "pretrain_steps", "warmup_steps")},
                                  seconds={"pretrain": training_seconds(work).get("pretrain")})
    save_model(model, weights, metadata)
    return model


def training_seconds(work: Path) -> dict[str, float]:
    """Training time of each run as its metrics recorded it (right also when a finished run was only resumed)."""
    from emim.train.runfolder import read_metrics

    seconds = {}
    for stage in ("pretrain", "finetune"):
        path = work / stage / "metrics.jsonl"
        records = [r for r in read_metrics(path) if "elapsed_s" in r] if path.is_file() else []
        if records:
            seconds[stage] = round(float(records[-1]["elapsed_s"]), 1)
    return seconds


def record_real_cases(model: Path, work: Path, real: Path) -> None:
    """Write the engine's default post-processing and, when the `real` cases are here, their scores with it into
    the model's metadata (the weights and their checksum stay as they are)."""
    from emim.inference.postprocess import DEFAULT
    from emim.modelfile import load_model, save_model

    from bench.real_case_quality import compact_scores, evaluate_model

    weights, metadata = load_model(model)
    metadata["inference"]["postprocess"] = DEFAULT.to_metadata()
    metadata["provenance"]["seconds"].update(training_seconds(work))
    save_model(model, weights, metadata)
    if real.is_dir():
        metadata["provenance"]["real_cases"] = compact_scores(evaluate_model(model, work / "real", real))
        save_model(model, weights, metadata)


if __name__ == "__main__":
    raise SystemExit(main())
