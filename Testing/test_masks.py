"""Hybrid mask pattern: each pattern hides what it promises, and the two views differ."""

import pytest
import torch

from emim.pretrain.masks import MaskConfig, modal_mask, patch_mask, position_mask, sample_batch, sample_mask, \
    visible_index

M, N = 4, 216


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_position_mask_hides_the_same_positions_in_every_modality():
    mask = position_mask(M, N, 0.6, gen())
    assert all(torch.equal(mask[0], mask[m]) for m in range(1, M))
    assert int(mask[0].sum()) == round(0.6 * N)


def test_modal_mask_hides_exactly_one_whole_modality():
    for seed in range(20):
        mask = modal_mask(M, N, gen(seed))
        hidden = mask.all(dim=1)
        assert int(hidden.sum()) == 1
        assert not mask[~hidden].any()


def test_patch_masks_are_independent_per_modality_at_the_requested_ratio():
    mask = patch_mask(M, N, 0.75, gen())
    assert (mask.sum(dim=1) == round(0.75 * N)).all()
    assert not all(torch.equal(mask[0], mask[m]) for m in range(1, M))
    # independence: the overlap of two modalities' hidden sets is near ratio^2 over many draws
    overlaps = [float((patch_mask(M, N, 0.75, gen(s))[0] & patch_mask(M, N, 0.75, gen(s))[1]).float().mean())
                for s in range(50)]
    assert abs(sum(overlaps) / len(overlaps) - 0.75**2) < 0.03


def test_hybrid_uses_all_three_patterns_with_the_given_weights():
    config = MaskConfig("hybrid", hybrid_probs=(1.0, 1.0, 2.0))
    names = [sample_mask(M, N, config, gen(s))[1] for s in range(400)]
    shares = {p: names.count(p) / len(names) for p in ("patch", "position", "modal")}
    assert abs(shares["modal"] - 0.5) < 0.08 and abs(shares["patch"] - 0.25) < 0.08


def test_two_views_differ():
    g = gen(3)
    view1, _ = sample_batch(2, M, N, MaskConfig(), g)
    view2, _ = sample_batch(2, M, N, MaskConfig(), g)
    assert not torch.equal(view1, view2)


def test_visible_index_keeps_exactly_the_visible_tokens_and_pads_short_rows():
    masks = torch.stack([modal_mask(M, N, gen(1)), patch_mask(M, N, 0.75, gen(2))])
    keep, padding = visible_index(masks)
    assert padding is not None
    for b in range(2):
        kept = keep[b][~padding[b]]
        assert torch.equal(kept, torch.nonzero(~masks[b].flatten()).flatten())


def test_bad_ratio_is_refused():
    with pytest.raises(ValueError):
        MaskConfig(patch_ratio=1.0)
