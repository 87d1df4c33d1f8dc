"""The training options a segmentation fine-tuning uses when the command line leaves them out, defined once.

Standard library only: `emim finetune --help` shows them without importing torch (`emim.finetune.segmentation`
re-exports them beside `FinetuneConfig`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Steps, learning rate, batch, encoder freezing and validation interval of a fine-tuning."""

    steps: int
    lr: float
    batch_size: int
    freeze_encoder_steps: int
    eval_every: int
    weight_decay: float = 1e-5  # the warm-up is 5% of the steps unless --warmup is given

    def describe(self) -> str:
        frozen = (f"encoder frozen for the first {self.freeze_encoder_steps} steps" if self.freeze_encoder_steps
                  else "encoder trained from the start")
        return (f"{self.steps} steps, learning rate {self.lr:g}, batch {self.batch_size}, {frozen}, validation every "
                f"{self.eval_every} steps")


# A new network (random decoder, the encoder random or from --pretrained).
SCRATCH_RECIPE = Recipe(steps=1000, lr=1e-4, batch_size=2, freeze_encoder_steps=0, eval_every=100)
# `--init MODEL`: the whole network is already trained, and the user has a handful of labelled cases, so a low
# learning rate and a short run adapt it without forgetting what it knew (3 real BraTS cases at 2 mm on 2 CPU cores:
# well under 15 minutes). The encoder stays frozen for the first fifth, so the decoder adapts to the new scans'
# features before the encoder moves. A starting point, not a measured optimum: bench/label_efficiency.py measures it.
INIT_RECIPE = Recipe(steps=500, lr=2e-4, batch_size=2, freeze_encoder_steps=100, eval_every=100)
