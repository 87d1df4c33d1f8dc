"""Opening and closing one training run: the part every runner (pretraining, segmentation and classification
fine-tuning) shares, so torchrun, device choice, seeding and run-folder rules are the same everywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from emim.contract import LAST_CHECKPOINT
from emim.errors import EmimError
from emim.progress import Progress
from emim.train import distributed
from emim.device import resolve_device
from emim.train.runfolder import RunFolder
from emim.train.trainer import Task, TrainSettings, seed_everything, train

T = TypeVar("T")


@dataclass
class RunSession:
    dist: distributed.DistInfo
    run: RunFolder
    device: torch.device
    progress: Progress

    def batch_seed(self, seed: int, start_step: int) -> int:
        """A data-stream seed that differs per rank and is reproducible from the step a (resumed) run starts at."""
        return seed + 100_003 * start_step + 7 * self.dist.rank

    def shard(self, items: Sequence[T]) -> list[T]:
        """The items this rank trains on: every world_size-th, so ranks read disjoint cases (all of them when
        there are fewer items than ranks)."""
        world = self.dist.world_size
        return list(items[self.dist.rank::world]) if len(items) >= world else list(items)

    def prepare(self, work: Callable[[], T]) -> T:
        """This rank's data preparation (its shard of the cache, validation cases). Under torchrun a problem found
        by one rank stops every rank together, the finder with its message and the others saying why, instead of
        the others being killed mid-step by torchrun's agent (or, without an agent that tears the group down,
        waiting in the next collective until its timeout)."""
        problem: EmimError | None = None
        try:
            result = work()
        except EmimError as error:
            problem = error
        if distributed.any_rank(problem is not None, self.dist, self.device):
            raise problem or EmimError("another torchrun rank found a problem with its cases and stopped; its "
                                       "message is in the output above")
        return result


def open_run(run_dir: str | Path, device: str, seed: int, resume: bool, progress: Progress | None) -> RunSession:
    """Join torchrun if launched by it, lock the run folder (main rank), pick the device, seed every rank."""
    dist = distributed.setup(device)
    progress = (progress or Progress("bar")) if dist.is_main else Progress("none")
    if not resume and (Path(run_dir) / LAST_CHECKPOINT).exists():
        raise EmimError(f"{run_dir} already holds a run; use --resume to continue it or choose a new run folder")
    run = RunFolder(run_dir, write=dist.is_main)
    chosen = distributed.device_for(dist, resolve_device(device, lambda m: progress.event("warning", message=m)))
    seed_everything(seed + dist.rank)
    return RunSession(dist, run, chosen, progress)


def train_run(session: RunSession, task: Task, batches: Callable[[int], Iterator[Any]], settings: TrainSettings,
              resume: bool) -> Path:
    """Drive the shared loop, report `done`, and leave the process group whatever happens."""
    try:
        step = train(task, batches, settings, session.run, session.progress, session.dist, session.device,
                     resume=resume)
        # the main rank ends later (last evaluation and checkpoint): the others wait for it here, since a gloo
        # group torn down by one rank while another still uses it has aborted a run at exit (SIGABRT, seen once)
        distributed.barrier(session.dist)
        session.progress.event("done", run_dir=str(session.run.path), step=step,
                               checkpoint=str(session.run.last_checkpoint))
    finally:
        distributed.cleanup(session.dist)
    return session.run.last_checkpoint
