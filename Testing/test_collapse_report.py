"""`emim collapse-report`: the per-pattern collapsed losses of a data set and a verdict, without training."""

from __future__ import annotations

import json

import torch

from emim.pretrain.collapse_report import collapse_risk
from emim.pretrain.masks import MaskConfig


def test_the_command_prints_a_verdict_per_pattern_on_generated_cases(tmp_path, emim):
    from emim.sample import make_sample_cases

    data = tmp_path / "cases"
    make_sample_cases(data, 2, seed=3, size="small")
    result = emim("collapse-report", str(data), "--progress", "json", "--crops-per-case", "2")
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout.splitlines()[-1])
    assert done["event"] == "done" and done["cases"] == 2 and done["patch_size"] == 16
    rows = {row["pattern"]: row for row in done["patterns"]}
    assert set(rows) == {"patch", "position", "modal"}
    for row in rows.values():
        assert row["probability"] > 0 and row["verdict"]
        # knowing each hidden patch's own mean can only help: per-patch collapsed loss below the per-view one
        assert 0 < row["collapsed_loss_patch"] < row["collapsed_loss_view"]
    table = emim("collapse-report", str(data), "--crops-per-case", "1", "--progress", "none")
    assert table.returncode == 0 and all(p in table.stdout for p in ("patch", "position", "modal"))


def test_constant_crops_have_no_headroom_and_are_called_a_risk():
    crops = torch.ones(2, 4, 32, 32, 32)
    crops[:, :, :16] = -1.0  # two flat halves: every 16^3 patch is constant
    rows = collapse_risk(crops, 16, MaskConfig("hybrid"))
    for row in rows:
        assert abs(row.collapsed_loss_patch) < 1e-6 and row.headroom > 0.99
    flat = collapse_risk(torch.randn(2, 4, 32, 32, 32), 16, MaskConfig("hybrid"))
    assert all(row.verdict.startswith("risk") for row in flat)  # white noise: patch means explain nothing
