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

from emim.contract import CHECKPOINT_FOLDER, LOG_EVERY, RUN_WARNING
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
    model = task.model.to(device)
    optimizer = build_optimizer(model, settings.lr, settings.weight_decay)
    scheduler = warmup_cosine(optimizer, settings.warmup_steps, settings.steps)
    step = 0
    if resume and run.last_checkpoint.is_file():
        state = load_checkpoint(run.last_checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        task.load_state_dict(state.get("task", {}))
        step = int(state["step"])
        seed_everything(step_seed(settings.seed, dist.rank, step))  # per rank: rank 0's saved state is not theirs
        run.truncate_metrics_after(step)
        run.log(f"resumed from {run.last_checkpoint} at step {step}")
        progress.event("warning" if step >= settings.steps else "start", command="resume", step=step,
                       message=f"resumed at step {step} of {settings.steps}")
    wrapped: nn.Module = DistributedDataParallel(model, find_unused_parameters=True) if dist.enabled else model

    def checkpoint() -> None:
        if not dist.is_main:
            return
        state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "task": task.state_dict()}
        path = save_checkpoint(run.last_checkpoint, state)
        if settings.keep_every and step % settings.keep_every == 0:
            save_checkpoint(run.path / CHECKPOINT_FOLDER / f"step-{step:06d}.pt", state)
        run.log(f"checkpoint at step {step}: {path}")
        progress.event("checkpoint", path=str(path), step=step)

    def evaluate() -> None:
        if not dist.is_main:
            return
        model.eval()
        record = task.evaluate(step)
        model.train()
        warnings = record.pop("warnings", [])
        record = {"step": step, "kind": "eval", **record}
        run.append_metrics(record)
        progress.event("metrics", **record)
        for message in warnings:
            run.log(RUN_WARNING.format(step=step, message=message))
            progress.event("warning", step=step, message=message)

    iterator = batches(step)
    model.train()
    started = time.monotonic()
    data_wait = 0.0
    if step == 0:
        evaluate()
    with _StopRequest() as stop:
        while step < settings.steps:
            logs: dict[str, float] = {}
            total = 0.0
            for micro in range(settings.accumulate):
                waited = time.monotonic()
                batch = next(iterator)
                data_wait += time.monotonic() - waited
                sync = contextlib.nullcontext() if (micro == settings.accumulate - 1 or not dist.enabled) \
                    else wrapped.no_sync()
                with sync:
                    with autocast(device):
                        loss, micro_logs = task.loss(wrapped, batch, step)
                    (loss / settings.accumulate).backward()
                total += float(loss.detach()) / settings.accumulate
                for key, value in micro_logs.items():
                    logs[key] = logs.get(key, 0.0) + value / settings.accumulate
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            if step % settings.log_every == 0 or step == settings.steps:
                loss_value = mean_over_ranks(total, dist, device)
                record = {"step": step, "kind": "train", "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                          "grad_norm": grad_norm, "elapsed_s": time.monotonic() - started,
                          "data_wait_s": data_wait, **logs}
                if dist.is_main:
                    run.append_metrics(record)
                progress.step(step, settings.steps, loss=loss_value)
            if step % settings.eval_every == 0 or step == settings.steps:
                evaluate()
            stopping = any_rank(stop.requested, dist, device)
            if step % settings.checkpoint_every == 0 or step == settings.steps or stopping:
                checkpoint()
            if stopping:
                break
    if step < settings.steps:
        progress.event("warning", step=step, message=f"stopped at step {step}; resume with --resume")
    return step
