"""The pretraining task the shared training loop drives: mask drawing, loss, and periodic collapse diagnostics."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from emim.model.encoder import fuse_modalities
from emim.model.tokens import patchify
from emim.pretrain.diagnostics import (COLLAPSE_QUIET_SHARE, RANK_DROP_RATIO, complete_collapse_stats,
                                       is_completely_collapsed, singular_spectrum)
from emim.pretrain.masks import PATTERNS, MaskConfig, available_patterns, pattern_weights, sample_batch
from emim.pretrain.model import EMIMPretrainer
from emim.train.trainer import stream_seed

HELDOUT_MASK_SEED = 20240715  # fixed masks on the held-out crops make diagnostics comparable over steps
EVAL_BATCH = 4  # held-out crops per forward pass: bounds the memory of an evaluation


class PretrainTask:
    def __init__(self, model: EMIMPretrainer, mask: MaskConfig, heldout: torch.Tensor, seed: int, rank: int,
                 log_every: int, warmup_steps: int, total_steps: int) -> None:
        self.model = model
        self.mask = mask
        self.heldout = heldout  # (H, M, X, Y, Z) fixed crops, on CPU (empty on ranks other than the main one)
        self.seed, self.rank = seed, rank
        self.generator = torch.Generator()
        self.generator_step = -1
        self.log_every = log_every
        self.warmup_steps = warmup_steps
        # a run often sits at the collapsed solution for a while before it leaves it (steps 50-250 of 1,000 on the
        # real mini cases), so collapse of either kind is only judged after a fifth of the run
        self.quiet_steps = max(warmup_steps, int(COLLAPSE_QUIET_SHARE * total_steps))
        self.first_rank: list[float] = []

    def mask_generator(self, step: int) -> torch.Generator:
        """The mask stream of `step` on this rank, seeded from (seed, rank, step): ranks draw different masks, and
        a resumed run draws exactly the masks the uninterrupted run would have, with no state to save. Micro-batches
        of one step (--accumulate) continue the step's stream."""
        if step != self.generator_step:
            self.generator.manual_seed(stream_seed("masks", self.seed, self.rank, step))
            self.generator_step = step
        return self.generator

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        generator = self.mask_generator(step)
        x = batch["image"]
        b, m = x.shape[:2]
        positions = (x.shape[2] * x.shape[3] * x.shape[4]) // self.model.config.patch_size**3
        masks1, patterns1 = sample_batch(b, m, positions, self.mask, generator)
        masks2, patterns2 = sample_batch(b, m, positions, self.mask, generator)
        return model(x, masks1.to(x.device), masks2.to(x.device), with_stats=(step + 1) % self.log_every == 0,
                     patterns=patterns1 + patterns2)

    def _pattern_stats(self, pattern: str, device: torch.device) -> dict[str, float]:
        """Collapse statistics of every held-out crop under fixed masks of one pattern, in mini-batches."""
        config = replace(self.mask, pattern=pattern)
        generator = torch.Generator().manual_seed(HELDOUT_MASK_SEED + PATTERNS.index(pattern))
        predictions, targets, hidden = [], [], []
        for chunk in self.heldout.split(EVAL_BATCH):
            x = chunk.to(device)
            positions = x[0, 0].numel() // self.model.config.patch_size**3
            masks = sample_batch(x.shape[0], x.shape[1], positions, config, generator)[0].to(device)
            predictions.append(self.model.reconstruct(x, masks)[0].float().cpu())
            targets.append(patchify(x, self.model.config.patch_size).float().cpu())
            hidden.append(masks.flatten(1).cpu())
        return complete_collapse_stats(torch.cat(predictions), torch.cat(targets), torch.cat(hidden))

    def _collapse_warning(self, stats: dict[str, float], patterns: list[str]) -> str:
        which = (f"; at the collapsed solution under {', '.join(patterns)} masks (heldout_<pattern>_loss_ratio in "
                 "metrics.jsonl)") if patterns else ""
        advice = ("Use the hybrid mask pattern (--mask hybrid). " if self.mask.pattern != "hybrid" else
                  "Give the patterns that still learn more weight (--hybrid-probs). ")
        return (f"complete collapse: the held-out reconstruction loss ({stats['rec_loss']:.3f}) is at the collapsed "
                f"loss ({stats['collapsed_loss_sample']:.3f}) and predictions barely vary (std "
                f"{stats['prediction_std']:.3f} against {stats['target_std']:.3f}){which}. " + advice
                + "If it persists, see docs/pretraining-recipe.md (decoder fill, learning rate, batch).")

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, Any]:
        """Held-out collapse statistics per mask pattern (`heldout_{pattern}_*`, every pattern, trained on or not)
        and their expectation under the mask config (`heldout_*`, weighted by the pattern probabilities), and the
        effective rank per pyramid level."""
        device = next(self.model.parameters()).device
        m = self.heldout.shape[1]
        weights = pattern_weights(self.mask, m)
        record: dict[str, Any] = {"heldout_crops": len(self.heldout)}
        warnings = []
        overall: dict[str, float] = {}
        collapsed = []
        for pattern in available_patterns(m):  # also the patterns not trained on: what transfers
            stats = self._pattern_stats(pattern, device)
            record.update({f"heldout_{pattern}_{k}": v for k, v in stats.items()})
            weight = weights.get(pattern, 0.0)
            for key, value in stats.items():
                overall[key] = overall.get(key, 0.0) + weight * value
            if weight and is_completely_collapsed(stats):
                collapsed.append(pattern)
        overall["loss_ratio"] = overall["rec_loss"] / max(overall["collapsed_loss_sample"], 1e-12)
        record.update({f"heldout_{k}": v for k, v in overall.items()})
        if step > self.quiet_steps and is_completely_collapsed(overall):
            warnings.append(self._collapse_warning(overall, collapsed))
        ranks, spectra = [], []
        for level in self._heldout_features(device):
            rank, spectrum = singular_spectrum(level)
            ranks.append(rank)
            spectra.append(spectrum)
        if not self.first_rank and step >= self.quiet_steps:
            # the reference is the first evaluation after the quiet start: a random initialisation's features are
            # near-isotropic noise, whose rank any learning lowers, and leaving the collapsed solution dips it
            self.first_rank = ranks
        for i, (rank, first) in enumerate(zip(ranks, self.first_rank)):
            if rank < RANK_DROP_RATIO * first:
                warnings.append(
                    f"dimensional collapse at pyramid level {i + 1}: effective rank fell from {first:.1f} (at step "
                    f"{self.quiet_steps} or just after) to "
                    f"{rank:.1f}; enable or strengthen pyramid Barlow Twins (--pbt-levels 4, higher --pbt-weight)")
        record.update({"effective_rank": ranks, "spectrum": spectra, "warnings": warnings})
        return record

    def _heldout_features(self, device: torch.device) -> list[torch.Tensor]:
        """Per-position encoder features (n, D) of all held-out crops with nothing masked, per pyramid level."""
        m = self.heldout.shape[1]
        chunks = [[fuse_modalities(level, m).reshape(-1, level.shape[-1]).float().cpu()
                   for level in self.model.encoder(chunk.to(device))] for chunk in self.heldout.split(EVAL_BATCH)]
        return [torch.cat(parts) for parts in zip(*chunks)]

    def state_dict(self) -> dict[str, Any]:
        return {"first_rank": torch.tensor(self.first_rank)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "first_rank" in state:
            self.first_rank = [float(v) for v in state["first_rank"]]
