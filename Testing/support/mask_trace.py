"""Run a real E-MIM pretraining (under torchrun) and record a digest of every mask each rank draws, per step.

`python mask_trace.py DATA RUN OUT fresh|stop-at K|resume`: `stop-at K` asks the run to stop (as the Slicer module's
Stop does, with SIGTERM) during step K, so it checkpoints at step K + 1; `resume` continues it. Each rank writes
OUT/rank<R>.json: [[step, digest], ...]. Used by test_pretrain's two-process resume test.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

import emim.pretrain.run as run_module
import emim.pretrain.task as task_module
from emim.progress import Progress
from emim.train.trainer import TrainSettings

STEPS = 4
drawn: list[list] = []
current: dict = {"step": None}  # the training step being drawn for (None: a held-out evaluation)
stop_at = int(sys.argv[5]) if sys.argv[4] == "stop-at" else None
sample_batch = task_module.sample_batch


def recording_sample_batch(*args, **kwargs):
    masks, patterns = sample_batch(*args, **kwargs)
    if current["step"] is not None:
        drawn.append([current["step"], hashlib.sha1(masks.numpy().tobytes()).hexdigest()])
    return masks, patterns


class RecordingTask(task_module.PretrainTask):
    def loss(self, model, batch, step):
        current["step"] = step
        if step == stop_at:
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop: checkpoint after this step, then exit
        try:
            return super().loss(model, batch, step)
        finally:
            current["step"] = None


task_module.sample_batch = recording_sample_batch
run_module.PretrainTask = RecordingTask

data, run_dir, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
if sys.argv[4] == "resume":
    run_module.resume_pretraining(run_dir, device="cpu", progress=Progress("none"))
else:
    config = replace(run_module.default_config(data, "tiny"), batch_size=1, device="cpu", heldout_crops=1,
                     train=TrainSettings(steps=STEPS, lr=1e-3, warmup_steps=1, eval_every=1000,
                                         checkpoint_every=1000, seed=3))
    run_module.run_pretraining(config, run_dir, progress=Progress("none"))
out.mkdir(parents=True, exist_ok=True)
(out / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(drawn))
