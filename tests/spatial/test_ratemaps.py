"""Tests for goaldriven.spatial.ratemaps."""

import numpy as np
import pytest

from goaldriven.spatial.ratemaps import RateMapAccumulator, ratemap_from_samples, smooth_ratemap

# n: samples, u: units, h/w: spatial bins


def _uniform_positions(n, width, height, seed=0):
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-width / 2, width / 2, n), rng.uniform(-height / 2, height / 2, n)])


def test_x_coordinate_unit_gives_bin_centres_along_columns():
    width, height, nx, ny = 2.0, 1.0, 10, 5
    pos = _uniform_positions(20000, width, height)
    acts = np.column_stack([pos[:, 0], pos[:, 1], np.ones(len(pos))])  # (n, 3)
    maps = ratemap_from_samples(pos, acts, width, height, (nx, ny))
    assert maps.shape == (3, ny, nx)
    centres_x = -width / 2 + (np.arange(nx) + 0.5) * width / nx
    centres_y = -height / 2 + (np.arange(ny) + 0.5) * height / ny
    half_bin = width / nx / 2
    # Unit 0 = x: constant down each column, equal to the column's bin centre.
    np.testing.assert_allclose(maps[0], np.broadcast_to(centres_x, (ny, nx)), atol=half_bin)
    np.testing.assert_allclose(maps[0], np.broadcast_to(centres_x, (ny, nx)), atol=0.02)
    assert np.all(np.diff(maps[0], axis=1) > 0)
    # Unit 1 = y: rows are y bins, increasing with the row index (origin="lower").
    np.testing.assert_allclose(maps[1], np.broadcast_to(centres_y[:, None], (ny, nx)), atol=0.02)
    np.testing.assert_allclose(maps[2], 1.0)


def test_counts_sum_to_n_and_unvisited_bins_are_nan():
    pos = _uniform_positions(1000, 1.0, 1.0)
    pos = pos[pos[:, 0] < 0]  # never visit the right half
    acc = RateMapAccumulator(2, 1.0, 1.0, 4)
    acc.add(pos, np.ones((len(pos), 2)))
    assert acc.counts.shape == (4, 4)
    assert acc.counts.sum() == len(pos)
    maps = acc.ratemaps()
    assert maps.shape == (2, 4, 4)
    assert np.isnan(maps[:, :, 2:]).all()
    assert np.isfinite(maps[:, :, :2]).all()


def test_edge_positions_fall_in_edge_bins():
    pos = np.array([[-0.5, -0.5], [0.5, 0.5], [0.5 + 5e-7, -0.5], [0.0, 0.0]])
    acc = RateMapAccumulator(1, 1.0, 1.0, 4)
    acc.add(pos, np.arange(4.0)[:, None])
    expected = np.zeros((4, 4), int)
    expected[0, 0] = 1  # (-w/2, -h/2): first row, first column
    expected[3, 3] = 1  # (w/2, h/2): last row, last column
    expected[0, 3] = 1  # x just past the edge (within tolerance), y at the bottom
    expected[2, 2] = 1  # the origin is the lower-left corner of bin (2, 2)
    np.testing.assert_array_equal(acc.counts, expected)


def test_two_chunks_equal_one_shot():
    rng = np.random.default_rng(1)
    pos = _uniform_positions(3000, 2.2, 2.2, seed=2)
    acts = rng.standard_normal((3000, 7)).astype(np.float32)
    acc = RateMapAccumulator(7, 2.2, 2.2, 20)
    acc.add(pos[:1234], acts[:1234])
    acc.add(pos[1234:], acts[1234:])
    one_shot = ratemap_from_samples(pos, acts, 2.2, 2.2, 20)
    np.testing.assert_allclose(acc.ratemaps(), one_shot, rtol=1e-5, atol=1e-6)
    # And against a plain per-sample loop.
    ix = np.clip(((pos[:, 0] + 1.1) / 2.2 * 20).astype(int), 0, 19)
    iy = np.clip(((pos[:, 1] + 1.1) / 2.2 * 20).astype(int), 0, 19)
    sums, counts = np.zeros((7, 20, 20)), np.zeros((20, 20))
    for i in range(len(pos)):
        sums[:, iy[i], ix[i]] += acts[i]
        counts[iy[i], ix[i]] += 1
    np.testing.assert_array_equal(acc.counts, counts)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(acc.ratemaps(), sums / counts, rtol=1e-5, atol=1e-6)


def test_single_unit_returns_2d_map():
    pos = _uniform_positions(500, 1.0, 1.0)
    m = ratemap_from_samples(pos, np.ones(500), 1.0, 1.0, 5)
    assert m.shape == (5, 5)


def test_positions_outside_box_raise_with_count_and_box():
    acc = RateMapAccumulator(1, 2.2, 1.0, 10)
    pos = np.array([[0.0, 0.0], [1.2, 0.0], [0.0, -0.6]])
    with pytest.raises(ValueError, match=r"2 of 3 positions lie outside the 2.2 m x 1.0 m box"):
        acc.add(pos, np.ones((3, 1)))
    with pytest.raises(ValueError, match="outside"):
        acc.add(np.array([[np.nan, 0.0]]), np.ones((1, 1)))


def test_shape_validation_messages():
    acc = RateMapAccumulator(3, 1.0, 1.0, 4)
    with pytest.raises(ValueError, match=r"positions must have shape \(n, 2\)"):
        acc.add(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match=r"activations must have shape \(n, 3\)"):
        acc.add(np.zeros((5, 2)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="same number of samples"):
        acc.add(np.zeros((4, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="box_width must be a positive"):
        RateMapAccumulator(3, 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="nbins_x must be a positive integer"):
        RateMapAccumulator(3, 1.0, 1.0, 0)
    with pytest.raises(ValueError, match=r"ratemap must be 2-D \(h, w\) or 3-D"):
        smooth_ratemap(np.zeros(5))


def test_smoothing_preserves_constant_map_and_keeps_nan_bins():
    m = np.full((8, 8), 3.0)
    m[2, 3] = m[7, 7] = np.nan
    out = smooth_ratemap(m, sigma_bins=1.0)
    assert np.isnan(out[2, 3]) and np.isnan(out[7, 7])
    valid = np.isfinite(m)
    np.testing.assert_allclose(out[valid], 3.0, rtol=1e-12)  # no pull towards 0 at edges/NaN


def test_smoothing_blurs_a_spike_and_conserves_interior_mass():
    m = np.zeros((2, 15, 15))
    m[0, 7, 7] = 1.0
    out = smooth_ratemap(m, sigma_bins=1.0)
    assert out[0, 7, 7] < 0.2 and out[0, 7, 8] > 0.05
    np.testing.assert_allclose(out[0].sum(), 1.0, rtol=1e-3)
    np.testing.assert_allclose(out[1], 0.0)  # no blur across units
    np.testing.assert_array_equal(smooth_ratemap(m, 0.0), m)
