"""Resampling to a model's training spacing and back (emim.data.spacing): physical alignment, exactness on
linear fields, shapes that stay inside the field of view, and when it applies."""

from __future__ import annotations

import numpy as np
import pytest

from emim.data.spacing import needs_resampling, rescale, scaled_shape


def test_only_cases_far_from_the_recorded_spacing_are_resampled():
    assert not needs_resampling((1.0, 1.0, 1.0), None)
    assert not needs_resampling((1.0, 1.0, 1.15), [1.0, 1.0, 1.0])
    assert needs_resampling((1.0, 1.0, 5.0), [1.0, 1.0, 1.0])
    assert needs_resampling((2.0, 2.0, 2.0), [1.0, 1.0, 1.0])


def test_shape_keeps_the_field_of_view():
    assert scaled_shape((240, 240, 155), (1, 1, 1), (2, 2, 2)) == (120, 120, 78)
    assert scaled_shape((120, 120, 78), (2, 2, 2), (1, 1, 1)) == (239, 239, 155)
    assert scaled_shape((100, 100, 30), (0.5, 0.5, 5.0), (1, 1, 1)) == (50, 50, 146)


def test_a_linear_field_is_reproduced_exactly_at_the_same_physical_positions():
    spacing, target = (1.0, 1.0, 5.0), (2.0, 0.5, 1.0)
    shape = (40, 30, 12)
    position = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij"))
    field = (3 * position[0] - 2 * position[1] + 0.5 * position[2])[None].astype(np.float32)
    out = rescale(field, spacing, target)
    assert out.shape == (1, *scaled_shape(shape, spacing, target))
    new = np.stack(np.meshgrid(*[np.arange(n) * t for n, t in zip(out.shape[1:], target)], indexing="ij"))
    inner = slice(2, -2)  # axis 0 gets coarser, so it is smoothed first, which bends a slope at the border only
    np.testing.assert_allclose(out[0, inner], (3 * new[0] - 2 * new[1] + 0.5 * new[2])[inner], atol=1e-3)


@pytest.mark.parametrize("spacing, target", [((2.0, 2.0, 2.0), (1.0, 1.0, 1.0)), ((1.0, 1.0, 4.0), (1.0, 1.0, 1.0))])
def test_there_and_back_lands_on_the_original_grid_with_the_tumour_in_place(spacing, target):
    shape = (60, 50, 40)
    blob = np.zeros((1, *shape), np.float32)
    blob[0, 20:35, 10:30, 15:25] = 1.0
    there = rescale(blob, spacing, target)
    back = rescale(there, target, spacing, shape=shape)
    assert back.shape == blob.shape
    centre = lambda a: np.array(np.nonzero(a[0] > 0.5)).mean(axis=1)  # noqa: E731
    np.testing.assert_allclose(centre(back), centre(blob), atol=0.05)
    assert ((back[0] > 0.5) == (blob[0] > 0.5)).mean() > 0.995


def test_downsampling_smooths_first_so_thin_stripes_do_not_alias():
    stripes = np.zeros((1, 40, 8, 8), np.float32)
    stripes[0, ::2] = 1.0  # one-voxel stripes along axis 0: above the Nyquist limit of a 2x coarser grid
    coarse = rescale(stripes, (1, 1, 1), (2, 1, 1))
    assert np.abs(coarse[0, 2:-2] - 0.5).max() < 0.1  # without smoothing every sample would hit a stripe (1.0)
