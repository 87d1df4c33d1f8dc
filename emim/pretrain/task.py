"""The pretraining task the shared training loop drives: mask drawing, loss, and periodic collapse diagnostics."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from emim.model.encoder import fuse_modalities
from emim.model.tokens import patchify
from emim.pretrain.diagnostics import (RANK_DROP_RATIO, complete_collapse_stats, is_completely_collapsed,
                                       singular_spectrum)
from emim.pretrain.masks import MaskConfig, sample_batch
from emim.pretrain.model import EMIMPretrainer

HELDOUT_MASK_SEED = 20240715  # fixed masks on the held-out crops make diagnostics comparable over steps


class PretrainTask:
    def __init__(self, model: EMIMPretrainer, mask: MaskConfig, heldout: torch.Tensor, seed: int,
                 log_every: int, warmup_steps: int) -> None:
        self.model = model
        self.mask = mask
        self.heldout = heldout  # (H, M, X, Y, Z) fixed crops, on CPU
        self.generator = torch.Generator().manual_seed(seed)
        self.log_every = log_every
        self.warmup_steps = warmup_steps
        self.first_rank: list[float] = []

    def _masks(self, batch: int, modalities: int, positions: int, generator: torch.Generator) -> torch.Tensor:
        return sample_batch(batch, modalities, positions, self.mask, generator)[0]

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> tuple[torch.Tensor, dict]:
        x = batch["image"]
        b, m = x.shape[:2]
        positions = (x.shape[2] * x.shape[3] * x.shape[4]) // self.model.config.patch_size**3
        masks1 = self._masks(b, m, positions, self.generator).to(x.device)
        masks2 = self._masks(b, m, positions, self.generator).to(x.device)
        return model(x, masks1, masks2, with_stats=(step + 1) % self.log_every == 0)

    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, Any]:
        device = next(self.model.parameters()).device
        x = self.heldout.to(device)
        m = x.shape[1]
        positions = (x[0, 0].numel()) // self.model.config.patch_size**3
        masks = self._masks(x.shape[0], m, positions, torch.Generator().manual_seed(HELDOUT_MASK_SEED)).to(device)
        prediction, _, _, _ = self.model.reconstruct(x, masks)
        target = patchify(x, self.model.config.patch_size)
        record: dict[str, Any] = {f"heldout_{k}": v for k, v in
                                  complete_collapse_stats(prediction, target, masks.flatten(1)).items()}
        warnings = []
        if step > self.warmup_steps and is_completely_collapsed({k[8:]: v for k, v in record.items()}):
            warnings.append(
                f"complete collapse: the reconstruction loss ({record['heldout_rec_loss']:.3f}) is at the collapsed "
                f"loss ({record['heldout_collapsed_loss_sample']:.3f}) and predictions barely vary. "
                + ("Use the hybrid mask pattern (--mask hybrid). " if self.mask.pattern != "hybrid" else
                   "Give position and modal masks more weight (--hybrid-probs 1,2,2). ")
                + "If it persists long after warm-up, lower the learning rate or train longer.")
        levels = self.model.encoder(x)
        ranks, spectra = [], []
        for level in levels:
            rank, spectrum = singular_spectrum(fuse_modalities(level, m).reshape(-1, level.shape[-1]))
            ranks.append(rank)
            spectra.append(spectrum)
        if not self.first_rank:
            self.first_rank = ranks
        for i, (rank, first) in enumerate(zip(ranks, self.first_rank)):
            if rank < RANK_DROP_RATIO * first:
                warnings.append(
                    f"dimensional collapse at pyramid level {i + 1}: effective rank fell from {first:.1f} to "
                    f"{rank:.1f}; enable or strengthen pyramid Barlow Twins (--pbt-levels 4, higher --pbt-weight)")
        record.update({"effective_rank": ranks, "spectrum": spectra, "warnings": warnings})
        return record

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "first_rank": torch.tensor(self.first_rank)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"].cpu())
        if "first_rank" in state:
            self.first_rank = [float(v) for v in state["first_rank"]]
