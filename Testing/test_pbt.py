"""Pyramid Barlow Twins: the loss rewards identical decorrelated features and punishes constant ones."""

import torch

from emim.model.tokens import position_features
from emim.pretrain.pbt import PyramidBarlowTwins, barlow_twins_loss


def test_near_zero_for_identical_decorrelated_features():
    z = torch.randn(8192, 32, generator=torch.Generator().manual_seed(0))
    assert float(barlow_twins_loss(z, z.clone())) < 0.01


def test_large_for_constant_features():
    z = torch.ones(512, 32)
    assert float(barlow_twins_loss(z, z.clone())) > 0.9


def test_large_for_independent_views():
    g = torch.Generator().manual_seed(1)
    assert float(barlow_twins_loss(torch.randn(4096, 32, generator=g), torch.randn(4096, 32, generator=g))) > 0.9


def test_position_features_average_the_visible_modalities_at_each_position():
    positions = 4
    # tokens: modality 0 at positions 0,1 and modality 1 at position 1 (token index = m * N + n)
    keep = torch.tensor([[0, 1, positions + 1]])
    features = torch.tensor([[[1.0, 1, 1], [2, 2, 2], [4, 4, 4]]])
    means, present = position_features(features, keep, None, positions)
    assert present.tolist() == [[True, True, False, False]]
    assert means[0, 1].tolist() == [3.0, 3.0, 3.0]


def test_pbt_module_has_gradients_at_every_level():
    pbt = PyramidBarlowTwins(embed_dim=16, projector_dim=32, levels=4)
    keep = torch.arange(24).reshape(1, 24)
    levels1 = [torch.randn(1, 24, 16, requires_grad=True) for _ in range(4)]
    levels2 = [x.detach() + 0.1 * torch.randn_like(x) for x in levels1]
    loss, per_level = pbt(levels1, keep, None, levels2, keep, None, positions=24)
    loss.backward()
    assert len(per_level) == 4 and all(x.grad is not None and x.grad.abs().sum() > 0 for x in levels1)
