"""NMF of the place-cell code (the Grid Cell Model baseline): reconstruction, non-negativity, recovery of grid-like
factors, and the lattice interpolation that reads the factor along trajectories."""

import math

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.spatial import scores as spatial_scores
from goaldriven.tasks import path_integration_baselines, place_cell_nmf, place_cells


def _place_matrix(n_cells=16, box=1.0, spacing=0.1):
    return path_integration_baselines.place_cell_matrix(place_cells.PlaceCells(n_cells=n_cells, box_width=box), spacing)


def test_lattice_covers_the_box_edge_to_edge():
    lattice = place_cell_nmf.Lattice.covering(1.0, 0.5, 0.1)
    assert (lattice.columns, lattice.rows) == (11, 6)
    positions = lattice.positions
    assert positions.shape == (66, 2)
    np.testing.assert_allclose(positions[:11, 0], np.linspace(-0.5, 0.5, 11))  # x varies fastest
    np.testing.assert_allclose(positions[::11, 1], np.linspace(-0.25, 0.25, 6))
    track = place_cell_nmf.Lattice.covering(4.0, 0.0, 0.02)
    assert (track.columns, track.rows) == (201, 1) and np.all(track.positions[:, 1] == 0)


def test_reconstruction_error_decreases_with_rank_and_full_rank_is_near_exact():
    lattice, matrix = _place_matrix()
    assert matrix.shape == (121, 16) and matrix.min() >= 0
    errors = []
    for rank in (1, 2, 4, 8, "full"):
        result = place_cell_nmf.fit_nmf(matrix, rank)
        k = 16 if rank == "full" else rank
        assert result.activations.shape == (121, k) and result.components.shape == (k, 16)
        assert result.activations.min() >= 0 and result.components.min() >= 0  # non-negative factors
        direct = np.linalg.norm(matrix - result.activations @ result.components) / np.linalg.norm(matrix)
        assert result.relative_error == pytest.approx(direct)
        errors.append(direct)
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] > 0.3 and errors[-1] < 0.02, errors


def test_full_rank_means_n_place_cells_and_bad_ranks_are_refused():
    assert place_cell_nmf.n_components_for("full", (12321, 512)) == 512
    assert place_cell_nmf.n_components_for(9, (12321, 512)) == 9
    for bad in (0, 513, "half", 9.0, True):
        with pytest.raises(ValueError, match="n_components"):
            place_cell_nmf.n_components_for(bad, (12321, 512))
    with pytest.raises(ValueError, match="non-negative"):
        place_cell_nmf.fit_nmf(-np.ones((4, 3)), 2)


def _hexagonal(positions, period, phase):
    """A rectified sum of three plane waves 60 degrees apart: firing fields on a hexagonal lattice, in [0, 1]."""
    k = 4 * math.pi / (math.sqrt(3) * period)
    angles = np.deg2rad([0.0, 60.0, 120.0])
    waves = np.stack([np.cos(k * ((positions - phase) @ np.array([math.cos(a), math.sin(a)]))) for a in angles])
    return np.maximum(waves.sum(0) - 1.0, 0.0) / 2.0  # (x,)


def test_nmf_recovers_grid_like_factors_of_a_grid_generated_code():
    """The expected property of the Grid Cell Model: when the place-cell code is a non-negative mixture of grid
    maps, the rank-matched NMF returns those grid maps (high grid scores), not mixtures of them."""
    lattice = place_cell_nmf.Lattice.covering(1.0, 1.0, 1.0 / 23)  # 24 x 24 locations
    phases = [np.array([0.0, 0.0]), np.array([0.13, 0.07]), np.array([-0.1, 0.14])]
    truth = np.stack([_hexagonal(lattice.positions, 0.4, p) for p in phases], axis=1)  # (576, 3)
    weights = np.random.default_rng(0).uniform(0, 1, size=(3, 20)) ** 3  # (3, 20) non-negative mixing
    result = place_cell_nmf.fit_nmf(truth @ weights, 3)
    assert result.relative_error < 1e-3
    corr = np.corrcoef(result.activations.T, truth.T)[:3, 3:]  # recovered x true
    assert np.all(corr.max(axis=1) > 0.95), corr
    maps = result.activations.T.reshape(3, 24, 24)
    assert np.all(spatial_scores.grid_scores(maps)["score60"] > 0.3)
    # Control: the mixtures (the "place cells" here) are grid-like too, but most match no single generating map.
    mixed_corr = np.corrcoef((truth @ weights).T, truth.T)[:20, 20:]
    assert np.mean(mixed_corr.max(axis=1) > 0.95) < 0.5, mixed_corr.max(axis=1)


def test_interpolation_is_exact_on_the_lattice_and_for_bilinear_functions():
    lattice = place_cell_nmf.Lattice.covering(1.0, 0.6, 0.1)  # 11 x 7
    xy = lattice.positions
    table = np.stack([1 + 2 * xy[:, 0] - xy[:, 1] + 3 * xy[:, 0] * xy[:, 1], np.ones(len(xy))], axis=1)
    values = lattice.interpolate(tf.constant(table, tf.float32), tf.constant(xy, tf.float32)).numpy()
    np.testing.assert_allclose(values, table, atol=1e-5)
    points = np.random.default_rng(1).uniform([-0.5, -0.3], [0.5, 0.3], size=(2, 3, 2))  # (b, t, 2)
    got = lattice.interpolate(tf.constant(table, tf.float32), tf.constant(points, tf.float32)).numpy()
    x, y = points[..., 0], points[..., 1]
    assert got.shape == (2, 3, 2)
    np.testing.assert_allclose(got[..., 0], 1 + 2 * x - y + 3 * x * y, atol=1e-5)
    # Outside the lattice: the value at its edge.
    edge = lattice.interpolate(tf.constant(table, tf.float32), tf.constant([[0.9, 0.0]], tf.float32)).numpy()
    np.testing.assert_allclose(edge[0, 0], 1 + 2 * 0.5, atol=1e-5)


def test_track_interpolation_is_linear_along_x():
    lattice = place_cell_nmf.Lattice.covering(4.0, 0.0, 0.5)  # 9 points
    table = tf.constant(np.arange(9, dtype=np.float32)[:, None] ** 2)  # value i^2 at x_i = -2 + 0.5 i
    got = lattice.interpolate(table, tf.constant([[-2.0, 0.0], [-1.75, 0.0], [1.9, 0.0]])).numpy()[:, 0]
    np.testing.assert_allclose(got, [0.0, 0.5, 0.2 * 49 + 0.8 * 64], atol=1e-5)
