"""Per-cell spike counts and occupancy -> the MEC layout: rates by hand, smoothing, the folder reader, round trip."""

import numpy as np
import pytest

from goaldriven.neural_fits.mec import converters, ratemap_file
from goaldriven.neural_fits.mec.converters import CellArrays
from goaldriven.neural_fits.mec.ratemap_file import MECDataError


def _cells(rng, n_cells=3, shape=(4, 5)):
    occupancy = rng.uniform(0.5, 2.0, shape)
    occupancy[0, 0] = 0.0  # unvisited
    return [
        CellArrays(
            animal=f"m{i % 2}",
            cell_id=f"c{i}",
            spike_counts=rng.integers(0, 6, shape).astype(float),
            occupancy_s=occupancy,
        )
        for i in range(n_cells)
    ]


def test_rates_are_spikes_over_occupancy_nan_where_unvisited():
    cells = _cells(np.random.default_rng(0))
    env = converters.environment_from_cells(
        cells, name="box", kind="box", extent_m=(0.25, 0.2), smoothing_sigma_bins=0.0
    )
    assert sorted(env.recordings) == ["m0", "m1"]
    m0 = env.recordings["m0"]
    assert m0.cell_ids.tolist() == ["c0", "c2"]
    expected = np.full((4, 5), np.nan)
    expected.reshape(-1)[1:] = (cells[2].spike_counts / np.maximum(cells[2].occupancy_s, 1e-9)).reshape(-1)[1:]
    np.testing.assert_allclose(m0.rate_maps[1], expected, rtol=1e-6)


def test_smoothing_keeps_a_constant_map_and_the_unvisited_bins():
    occupancy = np.ones((6, 6))
    occupancy[2, 3] = 0
    cell = CellArrays("m", "c", spike_counts=3 * occupancy, occupancy_s=occupancy)
    rates = converters.rates(cell, 1.0, "box")
    assert np.isnan(rates[2, 3]) and np.isfinite(np.delete(rates.reshape(-1), 2 * 6 + 3)).all()
    np.testing.assert_allclose(rates[np.isfinite(rates)], 3.0)  # normalised convolution: constant stays constant
    track = CellArrays("m", "c", rate_maps=np.array([[0, 0, 4.0, 0, 0], [1, 1, 1, 1, 1.0]]))
    smooth = converters.rates(track, 1.0, "track")
    np.testing.assert_allclose(smooth[1], 1.0)  # rows are smoothed one trial at a time
    assert smooth[0].argmax() == 2 and np.allclose(smooth[0], smooth[0][::-1]) and smooth[0].max() < 4.0


def test_folder_of_npz_cells_round_trips_through_the_file(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cells"
    folder.mkdir()
    trials = rng.uniform(0.5, 1.5, (4, 8))
    for i in range(3):
        np.savez(
            folder / f"cell{i}.npz",
            animal="mouse1" if i < 2 else "mouse2",
            session="s1" if i < 2 else "s2",
            cell_id=f"c{i}",
            spike_counts=rng.integers(0, 4, (4, 8)).astype(float),
            occupancy_s=trials,
            trial_maps=np.array([0, 0, 1, 1]),
        )
    cells = converters.load_cell_folder(str(folder))
    env = converters.environment_from_cells(cells, name="track", kind="track", extent_m=(0.4,))
    path = ratemap_file.write_ratemaps(str(tmp_path / "mec.h5"), env)
    back = ratemap_file.read_ratemaps(path)["track"]
    assert sorted(back.recordings) == ["s1", "s2"] and back.animal_of("s2") == "mouse2"
    np.testing.assert_array_equal(back.recordings["s1"].trial_maps, [0, 0, 1, 1])
    np.testing.assert_allclose(back.recordings["s1"].trials, env.recordings["s1"].trials)
    expected = converters.rates(cells[1], 1.0, "track")
    np.testing.assert_allclose(back.recordings["s1"].trials[1], expected, rtol=1e-6)


def test_bad_cells_are_refused_in_one_line(tmp_path):
    with pytest.raises(MECDataError, match="differ in shape"):
        converters.rates(CellArrays("m", "c", spike_counts=np.ones((2, 3)), occupancy_s=np.ones((3, 2))), 1, "box")
    with pytest.raises(MECDataError, match="give spike_counts and occupancy_s"):
        converters.rates(CellArrays("m", "c"), 1, "box")
    mixed = [
        CellArrays("a", "c1", "s", rate_maps=np.ones((2, 4))),
        CellArrays("b", "c2", "s", rate_maps=np.ones((2, 4))),
    ]
    with pytest.raises(MECDataError, match="holds cells of animals"):
        converters.environment_from_cells(mixed, name="t", kind="track", extent_m=(0.2,))
    with pytest.raises(MECDataError, match="no .npz files"):
        converters.load_cell_folder(str(tmp_path))
    np.savez(tmp_path / "x.npz", animal="a", cell_id="c", spikes=np.ones(3))
    with pytest.raises(MECDataError, match=r"unknown \['spikes'\]"):
        converters.load_cell_folder(str(tmp_path))
