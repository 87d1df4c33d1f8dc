"""The decoder's `local` fill: each hidden slot starts from the visible tokens at its position, else around it."""

from __future__ import annotations

import itertools

import pytest
import torch

from emim.config import preset
from emim.model.decoder import visible_context
from emim.pretrain.masks import MaskConfig, sample_batch, visible_index
from emim.pretrain.model import EMIMPretrainer


def _expected(features: torch.Tensor, visible: torch.Tensor, grid: tuple[int, int, int], m: int) -> torch.Tensor:
    """Brute force: the mean over visible modalities at the position, else the mean over the visible positions of
    the 3x3x3 neighbourhood of their per-position means, else zero."""
    n = grid[0] * grid[1] * grid[2]
    coords = list(itertools.product(*[range(g) for g in grid]))

    def at(p: int) -> list[int]:
        return [k * n + p for k in range(m) if visible[k * n + p]]

    out = torch.zeros(n, features.shape[-1])
    for p, c in enumerate(coords):
        if at(p):
            out[p] = features[at(p)].mean(0)
            continue
        near = [q for q, c2 in enumerate(coords) if max(abs(a - b) for a, b in zip(c, c2)) <= 1 and at(q)]
        if near:
            out[p] = torch.stack([features[at(q)].mean(0) for q in near]).mean(0)
    return out


@pytest.mark.parametrize("grid", [(4, 4, 4), (2, 2, 2), (1, 3, 2)])
def test_local_fill_matches_a_brute_force_count(grid):
    generator = torch.Generator().manual_seed(sum(grid))
    m, d = 3, 5
    n = grid[0] * grid[1] * grid[2]
    masks = torch.rand(2, m, n, generator=generator) < 0.7
    masks[:, 0, 0] = False  # at least one visible token per sample
    keep, padding = visible_index(masks)
    full = torch.randn(2, m * n, d, generator=generator)
    latent = torch.gather(full, 1, keep.unsqueeze(-1).expand(-1, -1, d))
    context = visible_context(latent, keep, padding, grid, neighbours=True)
    for b in range(2):
        assert torch.allclose(context[b], _expected(full[b], ~masks[b].flatten(), grid, m), atol=1e-5)


def test_every_fill_runs_a_training_step_on_a_small_grid():
    for fill in ("local", "same-position", "mask-token"):
        config = preset("tiny", crop_size=(32, 32, 32), decoder_fill=fill)
        model = EMIMPretrainer(config, pbt_levels=2)
        x = torch.randn(2, 4, 32, 32, 32)
        generator = torch.Generator().manual_seed(0)
        masks = [sample_batch(2, 4, 8, MaskConfig(), generator)[0] for _ in range(2)]
        loss, logs = model(x, *masks)
        loss.backward()
        assert torch.isfinite(loss) and logs["rec_loss"] > 0


def test_a_config_saved_before_the_fill_existed_rebuilds_the_decoder_it_was_trained_with():
    from emim.config import ModelConfig

    saved = preset("tiny").to_dict()
    del saved["decoder_fill"]
    assert ModelConfig.from_dict(saved).decoder_fill == "mask-token"
    assert preset("tiny").decoder_fill == "local"
