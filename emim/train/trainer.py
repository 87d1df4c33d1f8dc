"""The step loop shared by pretraining and fine-tuning.

It owns what every run needs and what is easy to get subtly wrong: AdamW + warm-up/cosine, bf16 autocast on CUDA,
gradient accumulation (without DDP syncs on the inner micro-steps) and clipping, DDP under torchrun, metrics and
progress every few steps, atomic checkpoints, `--resume` at the saved step with the saved optimizer and scheduler
(random states are re-derived per rank from the seed and the step), and a clean stop on SIGTERM/SIGINT that first
writes a checkpoint (the Slicer module's Stop).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from emim.contract import CHECKPOINT_FOLDER, EVAL_RECORD, LOG_EVERY, RUN_WARNING, TRAIN_RECORD
from emim.progress import Progress
from emim.train.checkpoint import load_checkpoint, save_checkpoint
from emim.device import autocast
from emim.train.distributed import DistInfo, any_rank, mean_over_ranks
from emim.train.optim import build_optimizer, warmup_cosine
from emim.train.runfolder import RunFolder


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 1000
    lr: float = 1.5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    accumulate: int = 1
    log_every: int = LOG_EVERY
    eval_every: int = 50
    checkpoint_every: int = 50
    keep_every: int = 0  # also keep checkpoints/step-N.pt every this many steps (0 = only last.pt)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Task(Protocol):
    """What a training task gives the loop."""

    model: nn.Module

    def loss(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one micro-batch with the (possibly DDP-wrapped) model, and values to log."""

    def evaluate(self, step: int) -> dict[str, Any]:
        """Periodic diagnostics or validation on the main rank; may contain a 'warnings' list of messages."""

    def state_dict(self) -> dict[str, Any]:
        """Task-owned state to checkpoint beyond the model (e.g. mask generator), tensors and plain values only."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag so the loop can save a checkpoint before it exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stream_seed(stream: str, seed: int, rank: int, step: int) -> int:
    """A 63-bit seed of one named random stream (pretraining masks, modality dropout) at (run seed, rank, step):
    distinct per stream, rank and step, so ranks differ and a resumed run draws what the uninterrupted one did."""
    return int.from_bytes(hashlib.sha256(f"{stream} {seed} {rank} {step}".encode()).digest()[:8], "little") >> 1


def step_seed(seed: int, rank: int, step: int) -> int:
    """The global random state a rank resumes at `step` with (dropout draws from it)."""
    return seed + 1_000_003 * step + 7 * rank


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(task: Task, batches: Callable[[int], Iterator[Any]], settings: TrainSettings, run: RunFolder,
          progress: Progress, dist: DistInfo, device: torch.device, resume: bool = False) -> int:
    """Train `task.model` for settings.steps optimiser steps; returns the step reached (less if stopped).

    `batches(start_step)` returns an iterator of micro-batches already on `device`; it is re-created at the resume
    step so the data order after a resume is reproducible.
    """
    loop = _Loop(task, settings, run, progress, dist, device, resume and run.last_checkpoint.is_file())
    iterator = batches(loop.step)
    loop.model.train()
    if loop.step == 0:
        loop.evaluate()
    with _StopRequest() as stop:
        while loop.step < settings.steps:
            loss, logs, grad_norm = loop.optimiser_step(iterator)
            step = loop.step
            if step % settings.log_every == 0 or step == settings.steps:
                loop.record_training(loss, logs, grad_norm)
            if step % settings.eval_every == 0 or step == settings.steps:
                loop.evaluate()
            stopping = any_rank(stop.requested, dist, device)
            if step % settings.checkpoint_every == 0 or step == settings.steps or stopping:
                loop.checkpoint()
            if stopping:
                break
    if loop.step < settings.steps:
        progress.event("warning", step=loop.step, message=f"stopped at step {loop.step}; resume with --resume")
    return loop.step


class _Loop:
    """One run's model, optimiser, schedule and step, and what the loop does with them between steps."""

    def __init__(self, task: Task, settings: TrainSettings, run: RunFolder, progress: Progress, dist: DistInfo,
                 device: torch.device, resume: bool) -> None:
        self.task, self.settings, self.run, self.progress, self.dist, self.device = \
            task, settings, run, progress, dist, device
        self.model = task.model.to(device)
        self.optimizer = build_optimizer(self.model, settings.lr, settings.weight_decay)
        self.scheduler = warmup_cosine(self.optimizer, settings.warmup_steps, settings.steps)
        self.step = 0
        if resume:
            self._resume()
        # wrapped after the resume, so that DDP starts every rank from the restored weights
        self.wrapped: nn.Module = DistributedDataParallel(self.model, find_unused_parameters=True) \
            if dist.enabled else self.model
        self.started = time.monotonic()
        self.data_wait = 0.0

    def _resume(self) -> None:
        """Continue from the run's last checkpoint: weights, optimiser, schedule, task state, and the step."""
        state = load_checkpoint(self.run.last_checkpoint, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.task.load_state_dict(state.get("task", {}))
        self.step = int(state["step"])
        # per rank: rank 0's saved random state is not the others'
        seed_everything(step_seed(self.settings.seed, self.dist.rank, self.step))
        self.run.truncate_metrics_after(self.step)
        self.run.log(f"resumed from {self.run.last_checkpoint} at step {self.step}")
        self.progress.event("warning" if self.step >= self.settings.steps else "start", command="resume",
                            step=self.step, message=f"resumed at step {self.step} of {self.settings.steps}")

    def optimiser_step(self, iterator: Iterator[Any]) -> tuple[float, dict[str, float], float]:
        """One optimiser step over `accumulate` micro-batches (DDP syncs only on the last); (loss, logs, grad norm)."""
        accumulate = self.settings.accumulate
        logs: dict[str, float] = {}
        total = 0.0
        for micro in range(accumulate):
            waited = time.monotonic()
            batch = next(iterator)
            self.data_wait += time.monotonic() - waited
            last = micro == accumulate - 1
            with contextlib.nullcontext() if last or not self.dist.enabled else self.wrapped.no_sync():
                with autocast(self.device):
                    loss, micro_logs = self.task.loss(self.wrapped, batch, self.step)
                (loss / accumulate).backward()
            total += float(loss.detach()) / accumulate
            for key, value in micro_logs.items():
                logs[key] = logs.get(key, 0.0) + value / accumulate
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        return total, logs, grad_norm

    def record_training(self, loss: float, logs: dict[str, float], grad_norm: float) -> None:
        """A `train` metrics record (loss averaged over ranks) and the progress bar's step."""
        loss_value = mean_over_ranks(loss, self.dist, self.device)
        record = {"step": self.step, "kind": TRAIN_RECORD, "loss": loss_value, "lr": self.scheduler.get_last_lr()[0],
                  "grad_norm": grad_norm, "elapsed_s": time.monotonic() - self.started,
                  "data_wait_s": self.data_wait, **logs}
        if self.dist.is_main:
            self.run.append_metrics(record)
        self.progress.step(self.step, self.settings.steps, loss=loss_value)

    def evaluate(self) -> None:
        """The task's evaluation on the main rank: an `eval` metrics record, and its warnings logged and sent."""
        if not self.dist.is_main:
            return
        self.model.eval()
        record = self.task.evaluate(self.step)
        self.model.train()
        warnings = record.pop("warnings", [])
        record = {"step": self.step, "kind": EVAL_RECORD, **record}
        self.run.append_metrics(record)
        self.progress.event("metrics", **record)
        for message in warnings:
            self.run.log(RUN_WARNING.format(step=self.step, message=message))
            self.progress.event("warning", step=self.step, message=message)

    def checkpoint(self) -> None:
        """last.pt on the main rank (and step-N.pt every keep_every steps), written atomically."""
        if not self.dist.is_main:
            return
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "task": self.task.state_dict()}
        path = save_checkpoint(self.run.last_checkpoint, state)
        if self.settings.keep_every and self.step % self.settings.keep_every == 0:
            save_checkpoint(self.run.path / CHECKPOINT_FOLDER / f"step-{self.step:06d}.pt", state)
        self.run.log(f"checkpoint at step {self.step}: {path}")
        self.progress.event("checkpoint", path=str(path), step=self.step)
