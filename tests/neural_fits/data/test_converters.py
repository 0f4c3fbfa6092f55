"""Converters on fabricated inputs: Allen-style trial arrays, a brainio NetCDF4 assembly written with h5py, merging
animals and blank normalization, each checked against NumPy on the fabricated truth.

The NetCDF4 files follow the documented brainio layout (netCDF dimension scales + 1-D coordinate variables); they
are not real downloads (tests never download).
"""

import logging

import h5py
import numpy as np
import pytest

from goaldriven.neural_fits.data.converters import (
    concatenate_animals,
    from_brainscore_netcdf,
    from_trial_array,
    normalize_to_blank,
)
from goaldriven.neural_fits.data.neural_data import NeuralDataError

# n: stimuli, u: units, t: time bins, r: trials, P: presentations


def test_from_trial_array_mean_sweep_layout():
    rng = np.random.default_rng(0)
    sweeps = rng.random((50, 7, 3))  # (trials, stimuli, units): AllenSDK mean sweep response
    data = from_trial_array(sweeps, animal="mouse1", area=["VISp", "VISl", "VISp"])
    for i, j, trial in [(0, 0, 0), (6, 2, 49), (3, 1, 17)]:
        assert data.responses[i, j, 0, trial] == np.float32(sweeps[trial, i, j])
    assert data.responses.shape == (7, 3, 1, 50) and data.has_trials
    assert data.time_bins_ms.tolist() == [[0.0, 250.0]]
    assert data.unit_ids.tolist() == ["mouse1/0", "mouse1/1", "mouse1/2"] and data.stimulus_ids[6] == "6"
    assert data.areas() == ["VISl", "VISp"]
    with pytest.raises(ValueError, match=r"one entry per unit \(3,\)"):
        from_trial_array(sweeps, area=["VISp"])


def test_from_trial_array_spike_counts_become_rates():
    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, size=(4, 5, 2, 25))  # (trials, stimuli, units, 10 ms bins)
    data = from_trial_array(counts, bin_width_ms=10.0)
    np.testing.assert_allclose(data.responses, np.transpose(counts, (1, 2, 3, 0)) * 100.0)
    assert data.time_bins_ms[0].tolist() == [0.0, 10.0] and data.time_bins_ms[-1].tolist() == [240.0, 250.0]
    raw = from_trial_array(counts, bin_width_ms=10.0, counts_to_rates=False, start_ms=-20.0)
    assert raw.responses[1, 0, 3, 2] == counts[2, 1, 0, 3] and raw.time_bins_ms[0, 0] == -20.0
    with pytest.raises(ValueError, match="positive bin_width_ms"):
        from_trial_array(counts)


def test_from_trial_array_missing_trials_policies(caplog):
    rng = np.random.default_rng(2)
    sweeps = rng.random((4, 3, 2))
    sweeps[1, 0, :] = np.nan  # stimulus 0 lost trial 1
    sweeps[3, 2, :] = np.nan  # stimulus 2 lost trial 3
    with pytest.raises(NeuralDataError, match="trial counts differ .*min 3, max 4.*trials='min'.*trials='mean'"):
        from_trial_array(sweeps)
    with caplog.at_level(logging.INFO):
        trimmed = from_trial_array(sweeps, missing_trials="min")
    assert "dropped 2 of 20" in caplog.text  # 24 trial responses - 4 missing = 20; keep 3 x (3 x 2) = 18
    np.testing.assert_array_equal(trimmed.responses[0, :, 0], sweeps[[0, 2, 3], 0].T.astype(np.float32))
    np.testing.assert_array_equal(trimmed.responses[1, :, 0], sweeps[[0, 1, 2], 1].T.astype(np.float32))
    averaged = from_trial_array(sweeps, missing_trials="mean")
    assert averaged.responses.shape == (3, 2, 1, 1) and not averaged.has_trials
    np.testing.assert_allclose(averaged.responses[:, :, 0, 0], np.nanmean(sweeps, axis=0), rtol=1e-6)


def write_assembly(path, values, dims, coords, variable="__xarray_dataarray_variable__"):
    """A NetCDF4 file as netCDF-C writes an xarray DataArray: phony dimension scales, coordinates attached."""
    with h5py.File(path, "w") as f:
        scales = {}
        for axis, dim in enumerate(dims):
            scale = f.create_dataset(dim, shape=(values.shape[axis],), dtype="f4")
            scale.make_scale(f"This is a netCDF dimension but not a netCDF variable. {values.shape[axis]:9d}")
            scales[dim] = scale
        var = f.create_dataset(variable, data=values)
        var.attrs["description"] = "fabricated assembly"
        for axis, dim in enumerate(dims):
            var.dims[axis].attach_scale(scales[dim])
        for dim, named in coords.items():
            for name, value in named.items():
                value = np.asarray(value)
                if value.dtype.kind == "U":
                    c = f.create_dataset(name, data=value.astype(object), dtype=h5py.string_dtype())
                else:
                    c = f.create_dataset(name, data=value)
                c.dims[0].attach_scale(scales[dim])


def fabricated_assembly(reps, seed=0):
    """Truth (n, u, t, max reps) with NaN beyond each image's count, and presentations in shuffled order."""
    rng = np.random.default_rng(seed)
    n, u, t = len(reps), 4, 3
    truth = rng.standard_normal((n, u, t, max(reps)))
    for i, count in enumerate(reps):
        truth[i, :, :, count:] = np.nan
    rows = [(i, rep) for i in range(n) for rep in range(reps[i])]
    rows = [rows[k] for k in rng.permutation(len(rows))]
    values = np.stack([truth[i, :, :, rep] for i, rep in rows])  # (P, u, t)
    objects = np.array(["car", "car", "dog", "dog", "cup"])[:n]
    coords = {
        "presentation": {
            "image_id": np.array([f"img{i}" for i, _ in rows]),
            "repetition": np.array([rep for _, rep in rows]),
            "object_name": objects[[i for i, _ in rows]],
            "category_name": np.array(["vehicle" if objects[i] == "car" else "other" for i, _ in rows]),
            "day": rng.integers(0, 3, len(rows)),  # varies within an image: not a stimulus attribute
        },
        "neuroid": {
            "neuroid_id": np.array(["Chabo_1", "Chabo_2", "Tito_1", "Tito_2"]),
            "animal": np.array(["Chabo", "Chabo", "Tito", "Tito"]),
            "region": np.array(["V4", "IT", "V4", "IT"]),
            "arr": np.array(["A", "B", "A", "B"]),
        },
        "time_bin": {"time_bin_start": np.array([70, 80, 90]), "time_bin_end": np.array([80, 90, 100])},
    }
    first_seen = list(dict.fromkeys(f"img{i}" for i, _ in rows))  # expected stimulus order
    order = [int(s[3:]) for s in first_seen]
    return truth[order], values, coords, first_seen


def test_netcdf_equal_repetitions_any_dim_order(tmp_path):
    truth, values, coords, ids = fabricated_assembly([3, 3, 3, 3, 3])
    write_assembly(tmp_path / "a.nc", values, ("presentation", "neuroid", "time_bin"), coords)
    data = from_brainscore_netcdf(tmp_path / "a.nc")
    np.testing.assert_array_equal(data.responses, truth.astype(np.float32))
    assert data.stimulus_ids.tolist() == ids and data.has_trials
    assert data.unit_ids.tolist() == ["Chabo_1", "Chabo_2", "Tito_1", "Tito_2"] and data.areas() == ["IT", "V4"]
    assert data.time_bins_ms.tolist() == [[70, 80], [80, 90], [90, 100]]
    expected_objects = {"img0": "car", "img1": "car", "img2": "dog", "img3": "dog", "img4": "cup"}
    assert data.stimulus_labels.tolist() == [expected_objects[s] for s in ids]
    assert "day" not in data.attrs["per_stimulus"] and "category_name" in data.attrs["per_stimulus"]
    assert data.attrs["per_unit"]["arr"].tolist() == ["A", "B", "A", "B"]
    assert data.attrs["source"]["attr_description"] == "fabricated assembly"

    write_assembly(tmp_path / "b.nc", np.transpose(values, (1, 2, 0)), ("neuroid", "time_bin", "presentation"), coords)
    permuted = from_brainscore_netcdf(tmp_path / "b.nc", block_presentations=4, regions=["IT"])
    np.testing.assert_array_equal(permuted.responses, truth[:, [1, 3]].astype(np.float32))
    assert permuted.attrs["per_unit"]["arr"].tolist() == ["B", "B"]


def test_netcdf_unequal_repetitions_need_a_policy(tmp_path, caplog):
    reps = [3, 2, 3, 1, 3]
    truth, values, coords, ids = fabricated_assembly(reps, seed=1)
    write_assembly(tmp_path / "u.nc", values, ("presentation", "neuroid", "time_bin"), coords)
    with pytest.raises(NeuralDataError, match=r"trial counts differ .*min 1, max 3.*trials='min'"):
        from_brainscore_netcdf(tmp_path / "u.nc")
    with caplog.at_level(logging.INFO):
        trimmed = from_brainscore_netcdf(tmp_path / "u.nc", trials="min")
    assert trimmed.responses.shape == (5, 4, 3, 1) and "dropped" in caplog.text
    np.testing.assert_array_equal(trimmed.responses[..., 0], truth[..., 0].astype(np.float32))  # repetition 0 kept
    averaged = from_brainscore_netcdf(tmp_path / "u.nc", trials="mean", label_coord="category_name")
    np.testing.assert_allclose(averaged.responses[..., 0], np.nanmean(truth, axis=3), rtol=1e-5, atol=1e-6)
    assert not averaged.has_trials and set(averaged.stimulus_labels.tolist()) == {"vehicle", "other"}


def test_netcdf_without_time_dimension_and_missing_coordinates(tmp_path):
    truth, values, coords, _ = fabricated_assembly([2, 2, 2])
    two_d = values[:, :, 0]
    del coords["time_bin"]
    write_assembly(tmp_path / "avg.nc", two_d, ("presentation", "neuroid"), coords)
    with pytest.raises(NeuralDataError, match="time_bins_ms"):
        from_brainscore_netcdf(tmp_path / "avg.nc")
    data = from_brainscore_netcdf(tmp_path / "avg.nc", time_bins_ms=[[70, 170]])
    np.testing.assert_array_equal(data.responses[:, :, 0, :], truth[:, :, 0, :].astype(np.float32))
    del coords["neuroid"]["region"]
    write_assembly(tmp_path / "noregion.nc", two_d, ("presentation", "neuroid"), coords)
    with pytest.raises(NeuralDataError, match="no coordinate region / area along dimension 'neuroid'"):
        from_brainscore_netcdf(tmp_path / "noregion.nc", time_bins_ms=[[70, 170]])


def _two_animals():
    rng = np.random.default_rng(3)
    a = from_trial_array(
        rng.random((4, 5, 2)), animal="A", stimulus_ids=list("vwxyz"), attrs={"per_unit": {"k": [1, 2]}}
    )
    b = from_trial_array(
        rng.random((4, 5, 3)), animal="B", stimulus_ids=list("zyxwv"), attrs={"per_unit": {"k": [3, 4, 5]}}
    )
    return a, b


def test_concatenate_animals_aligns_stimuli():
    a, b = _two_animals()
    merged = concatenate_animals([a, b])
    assert merged.unit_ids.tolist() == ["A/0", "A/1", "B/0", "B/1", "B/2"] and merged.animals() == ["A", "B"]
    np.testing.assert_array_equal(merged.responses[:, :2], a.responses)
    np.testing.assert_array_equal(merged.responses[:, 2:], b.responses[::-1])  # b's stimuli were reversed
    assert merged.attrs["per_unit"]["k"].tolist() == [1, 2, 3, 4, 5]


def test_concatenate_animals_errors():
    a, b = _two_animals()
    other_bins = from_trial_array(np.zeros((4, 5, 1)), animal="C", stimulus_ids=list("vwxyz"), time_window_ms=(0, 100))
    with pytest.raises(NeuralDataError, match="time bins"):
        concatenate_animals([a, other_bins])
    other_stimuli = from_trial_array(np.zeros((4, 5, 1)), animal="C", stimulus_ids=list("vwxyq"))
    with pytest.raises(NeuralDataError, match="different stimulus ids.*missing e.g. \\['z'\\]"):
        concatenate_animals([a, other_stimuli])
    fewer_trials = from_trial_array(np.zeros((3, 5, 1)), animal="C", stimulus_ids=list("vwxyz"))
    with pytest.raises(NeuralDataError, match="3 trials"):
        concatenate_animals([a, fewer_trials])
    with pytest.raises(NeuralDataError, match="unit ids repeat"):
        concatenate_animals([a, a])


def test_normalize_to_blank():
    a, _ = _two_animals()
    blank = np.array([0.5, 2.0])
    subtracted = normalize_to_blank(a, blank)
    np.testing.assert_allclose(subtracted.responses, a.responses - blank[None, :, None, None], rtol=1e-6)
    assert "subtracted" in subtracted.presentation["normalization"]
    divided = normalize_to_blank(a, blank[:, None], mode="divide")
    np.testing.assert_allclose(divided.responses, a.responses / blank[None, :, None, None], rtol=1e-6)
    with pytest.raises(NeuralDataError, match="1 unit.*blank response <= 0.*'A/1'"):
        normalize_to_blank(a, np.array([1.0, 0.0]), mode="divide")
    with pytest.raises(ValueError, match=r"\(u, t\) = \(2, 1\)"):
        normalize_to_blank(a, np.ones(3))
