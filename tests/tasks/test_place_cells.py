"""Place cells: a probability distribution per position, peaked at each cell's centre, decodable to position."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.tasks import place_cells


def _grid(width, n=41):
    xs = np.linspace(-width / 2, width / 2, n, dtype=np.float32)
    return np.stack(np.meshgrid(xs, xs, indexing="xy"), axis=-1).reshape(-1, 2)


@pytest.mark.parametrize("dog", [True, False])
def test_code_is_a_distribution(dog):
    cells = place_cells.PlaceCells(n_cells=64, difference_of_gaussians=dog, box_width=2.2)
    code = cells.activations(_grid(2.2)).numpy()
    np.testing.assert_allclose(code.sum(-1), 1.0, atol=1e-5)
    assert code.min() >= 0.0
    if dog:
        np.testing.assert_allclose(code.min(-1), 0.0, atol=1e-7)  # shifted so the minimum is exactly 0


def test_each_cell_is_most_active_at_its_centre():
    cells = place_cells.PlaceCells(n_cells=32, box_width=2.2, seed=3)
    code_at_centres = cells.activations(cells.centres).numpy()  # (n, n)
    np.testing.assert_array_equal(code_at_centres.argmax(-1), np.arange(32))


def test_with_the_thesis_512_cells_every_response_peaks_within_sigma_of_its_centre():
    cells = place_cells.PlaceCells(n_cells=512, box_width=2.2, seed=0)
    grid = _grid(2.2, n=111)
    peaks = grid[cells.activations(grid).numpy().argmax(axis=0)]  # (n, 2) location of each cell's maximum
    distance = np.linalg.norm(peaks - cells.centres, axis=-1)
    assert distance.max() < 0.12 and np.median(distance) < 0.05


def test_dog_matches_the_formula_written_out():
    cells = place_cells.PlaceCells(n_cells=10, sigma=0.12, surround_scale=2.0, seed=1)
    x = np.array([[0.1, -0.2]], np.float32)
    d2 = ((x[:, None] - cells.centres) ** 2).sum(-1)
    soft = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    expected = soft(-d2[0] / (2 * 0.12**2)) - soft(-d2[0] / (2 * 2.0 * 0.12**2))
    expected = (expected - expected.min()) / (expected - expected.min()).sum()
    np.testing.assert_allclose(cells.activations(x).numpy()[0], expected, atol=1e-6)


def test_decoding_the_code_recovers_the_position():
    cells = place_cells.PlaceCells(n_cells=512, box_width=2.2, seed=0)
    positions = np.random.default_rng(0).uniform(-1.0, 1.0, (500, 2)).astype(np.float32)
    decoded = cells.decode(cells.activations(positions)).numpy()
    error = np.linalg.norm(decoded - positions, axis=-1)
    assert np.median(error) < 0.06  # 512 cells in 2.2 m: mean spacing about 10 cm


def test_centres_fixed_by_seed_and_inside_the_box():
    a, b = place_cells.PlaceCells(seed=0), place_cells.PlaceCells(seed=0)
    np.testing.assert_array_equal(a.centres, b.centres)
    assert a.centres.shape == (512, 2) and np.all(np.abs(a.centres) <= 1.1)
    assert not np.allclose(place_cells.PlaceCells(seed=1).centres, a.centres)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_cells"):
        place_cells.PlaceCells(n_cells=2)
    with pytest.raises(ValueError, match="surround_scale"):
        place_cells.PlaceCells(surround_scale=0.5)


def test_reference_centres_are_the_released_models_draw_and_reach_the_code():
    cells = place_cells.PlaceCells(n_cells=64, box_width=2.2, centres="reference")
    tf.random.set_seed(0)  # the reference code's draw (neuroailab/mec place_cells.py), eager mode
    x = tf.random.uniform((64,), -1.1, 1.1, dtype=tf.float64)
    y = tf.random.uniform((64,), -1.1, 1.1, dtype=tf.float64)
    np.testing.assert_array_equal(cells.centres, np.stack([x, y], axis=-1).astype(np.float32))
    code = cells.activations(tf.constant(cells.centres[5:6]))
    assert int(tf.argmax(code[0])) == 5
    with pytest.raises(ValueError, match="centres must be one of"):
        place_cells.PlaceCells(centres="released")
