"""The oracle half of bench/brats_oracle.py: run the official `brats-evaluation` package (AGPL, installed in its
own environment, never imported by emim) on prediction/reference pairs and print its numbers as JSON.

    ORACLE_PYTHON bench/oracle_panoptica.py PAIRS.json OUT.json

PAIRS.json: [{"case": ..., "pred": ..., "gt": ...}]. OUT.json: {case: {region: {tp, fp, fn, global_dsc,
global_hd95, mean_matched_dsc, mean_matched_hd95}}} with the package's glioma configuration. Imports nothing of
emim, so it runs in an environment that has only the official package.
"""

import json
import sys
from importlib.resources import files

from panoptica import Panoptica_Evaluator


def main() -> int:
    pairs = json.loads(open(sys.argv[1]).read())
    config = str(files("brats_evaluation").joinpath("configs", "config_gli.yaml"))
    evaluator = Panoptica_Evaluator.load_from_config(config)
    results = {}
    for pair in pairs:
        groups = evaluator.evaluate(pair["pred"], pair["gt"])
        results[pair["case"]] = {
            region.upper(): {"tp": r.tp, "fp": r.fp, "fn": r.fn, "global_dsc": r.global_bin_dsc,
                             "global_hd95": r.global_bin_hd95, "mean_matched_dsc": r.sq_dsc,
                             "mean_matched_hd95": r.sq_hd95}
            for region, r in groups.items() if region in ("wt", "tc", "et")}
    with open(sys.argv[2], "w") as handle:
        json.dump(results, handle, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
