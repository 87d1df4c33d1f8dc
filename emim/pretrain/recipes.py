"""The options a pretraining uses when the command line leaves them out, defined once.

Standard library only: `emim pretrain --help` shows them without importing torch (`emim.pretrain.run` uses them).
"""

from __future__ import annotations

# Continuing a pretraining (`emim pretrain --init`): the preset's batch at this share of its learning rate, so the
# first steps on the new cases refine the network it starts from rather than shake it out of its solution (the demo's
# 200 steps on generated cases from the shipped pretraining: held-out loss ratio 0.890 -> 0.868 at 1e-3, with a bump
# to 0.894 at step 66 at the full 3e-3 before 0.866).
INIT_LR_SHARE = 1 / 3
HELDOUT_CROPS = 8  # fixed crops the collapse diagnostics are measured on
