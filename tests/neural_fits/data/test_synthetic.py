"""Synthetic recordings: recorded ground truth against NumPy on the simulated arrays, and against theory."""

import numpy as np
import pytest

from goaldriven.neural_fits.data.synthetic import (
    default_dataset,
    default_images,
    random_network_features,
    simulate_recordings,
    true_noise_ceiling,
    true_reliability,
)

# n: stimuli, p: features, u: units, t: time bins, r: trials


def _features(n=200, p=12, seed=0):
    rng = np.random.default_rng(seed)
    return {"early": rng.standard_normal((n, p)), "late": rng.standard_normal((n, p)) ** 2}


def _corr_rows(a, b):
    """Pearson correlation of matching columns of (n, k) arrays."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    return (a * b).sum(axis=0) / np.sqrt((a**2).sum(axis=0) * (b**2).sum(axis=0))


def _linear_fit_r2(x, y):
    """R^2 of least squares y ~ [x, 1], per column of y."""
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    residual = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return 1 - residual.var(axis=0) / y.var(axis=0)


def test_signal_and_noise_variances_match_the_arrays():
    data, mu = simulate_recordings(
        _features(), n_animals=2, units_per_animal=5, n_trials=8, noise_std=(0.5, 2.0), seed=1, return_signal=True
    )
    truth = true_reliability(data)
    np.testing.assert_allclose(truth["signal_variance"], mu.astype(np.float64).var(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(truth["signal_variance"].max(axis=1), 1.0, rtol=1e-5)  # unit peak signal variance
    residual = data.responses.astype(np.float64) - mu[..., None]
    measured_noise = residual.transpose(1, 0, 2, 3).reshape(data.num_units, -1).var(axis=1)
    np.testing.assert_allclose(measured_noise, truth["noise_variance"], rtol=0.06)  # 40000 samples per unit
    assert 0.25 <= truth["noise_variance"].min() and truth["noise_variance"].max() <= 4.0
    # gamma time course: no signal in bins that end before the unit's latency
    early = data.time_bins_ms[None, :, 1] <= truth["latency_ms"][:, None]
    assert early.any() and np.all(truth["signal_variance"][early] == 0)


def test_reliabilities_match_split_halves_computed_directly():
    data, mu = simulate_recordings(
        _features(),
        n_animals=2,
        units_per_animal=8,
        n_trials=10,
        noise_std=(0.3, 3.0),
        time_bins_ms=[[70, 170]],
        time_profile="flat",
        seed=2,
        return_signal=True,
    )
    truth = true_reliability(data)
    x = data.responses[:, :, 0, :].astype(np.float64)  # (n, u, r)
    rng = np.random.default_rng(0)
    halves = []
    for _ in range(50):
        order = rng.permutation(10)
        halves.append(_corr_rows(x[:, :, order[:5]].mean(axis=2), x[:, :, order[5:]].mean(axis=2)))
    split_half = np.mean(halves, axis=0)
    expected_half = truth["split_half_reliability"][:, 0]
    np.testing.assert_allclose(expected_half, 1 / (1 + truth["noise_variance"] / 5))  # V = 1 in the flat bin
    assert np.abs(split_half - expected_half).mean() < 0.04 and np.corrcoef(split_half, expected_half)[0, 1] > 0.95
    spearman_brown = 2 * split_half / (1 + split_half)
    assert np.abs(spearman_brown - truth["spearman_brown_reliability"][:, 0]).mean() < 0.04
    np.testing.assert_allclose(truth["spearman_brown_reliability"], truth["full_trial_reliability"])  # r even
    ceiling = _corr_rows(mu[:, :, 0], x.mean(axis=2))  # Corr(true signal, 10-trial mean)
    assert np.abs(ceiling - true_noise_ceiling(data)[:, 0]).mean() < 0.03


def test_units_are_linear_readouts_of_their_area_layer():
    features = _features()
    data, mu = simulate_recordings(
        features, areas={"V1": "early", "V2": "late"}, n_animals=2, units_per_animal=3, seed=3, return_signal=True
    )
    assert data.areas() == ["V1", "V2"] and data.attrs["synthetic"]["feature_layer_of_area"] == {
        "V1": "early",
        "V2": "late",
    }
    peak = true_reliability(data)["signal_variance"].argmax(axis=1)
    peak_signal = mu[:, np.arange(data.num_units), peak]  # (n, u)
    v1 = data.area == "V1"
    assert _linear_fit_r2(features["early"], peak_signal[:, v1]).min() > 0.999
    assert _linear_fit_r2(features["late"], peak_signal[:, ~v1]).min() > 0.999
    assert _linear_fit_r2(features["early"], peak_signal[:, ~v1]).max() < 0.6  # the other layer does not explain V2


def test_shared_independent_and_private_animals():
    features = _features()
    kwargs = dict(n_animals=2, units_per_animal=4, time_profile="flat", time_bins_ms=[[0, 100]], seed=4)
    _, shared = simulate_recordings(features, shared_readout=True, return_signal=True, **kwargs)
    same_area = shared[:, :, 0].reshape(200, 2, 2, 4)  # (n, area, animal, unit)
    np.testing.assert_array_equal(same_area[:, :, 0], same_area[:, :, 1])
    _, independent = simulate_recordings(features, return_signal=True, **kwargs)
    independent = independent[:, :, 0].reshape(200, 2, 2, 4)
    assert not np.allclose(independent[:, :, 0], independent[:, :, 1])
    layer = features["early"]
    assert _linear_fit_r2(layer, independent[:, 0, 1, :]).min() > 0.999  # same features, new readouts
    _, private = simulate_recordings(features, private_features=True, return_signal=True, **kwargs)
    private = private[:, :, 0].reshape(200, 2, 2, 4)
    assert _linear_fit_r2(layer, private[:, 0, 1, :]).max() < 0.25  # chance R^2 ~ p / n = 0.06
    assert _linear_fit_r2(private[:, 0, 0, :], private[:, 0, 1, :]).max() < 0.2


def test_time_resolved_features_and_determinism():
    rng = np.random.default_rng(5)
    features = {"rnn": np.cumsum(rng.standard_normal((40, 6, 10)), axis=1)}  # (n, t, p)
    data, mu = simulate_recordings(features, n_animals=1, units_per_animal=4, seed=5, return_signal=True)
    assert data.responses.shape == (40, 4, 6, 10)
    assert data.time_bins_ms.tolist() == [[10.0 * k, 10.0 * k + 10] for k in range(6)]
    np.testing.assert_allclose(mu.astype(np.float64).var(axis=0).max(axis=1), 1.0, rtol=1e-5)
    z = features["rnn"].reshape(-1, 10)
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    assert _linear_fit_r2(z, mu.transpose(0, 2, 1).reshape(-1, 4)).min() > 0.999
    with pytest.raises(ValueError, match="time_profile applies to"):
        simulate_recordings(features, time_profile="gamma")
    again = simulate_recordings(features, n_animals=1, units_per_animal=4, seed=5)
    np.testing.assert_array_equal(again.responses, data.responses)
    other = simulate_recordings(features, n_animals=1, units_per_animal=4, seed=6)
    assert not np.allclose(other.responses, data.responses)
    with pytest.raises(ValueError, match="noise_std must be > 0"):
        simulate_recordings(features, noise_std=0.0)


def test_default_dataset_needs_no_model():
    data, mu = default_dataset(seed=0, return_signal=True)
    assert data.responses.shape == (64, 32, 25, 10) and data.areas() == ["IT", "V4"] and len(data.animals()) == 4
    images, labels = default_images(seed=0)
    np.testing.assert_array_equal(data.stimuli, images)
    assert sorted(set(data.stimulus_labels.tolist())) == ["cat0", "cat1", "cat2", "cat3"]
    features = random_network_features(data.stimuli)
    assert features["layer1"].shape == (64, 64) and features["layer2"].shape == (64, 32)
    peak = true_reliability(data)["signal_variance"].argmax(axis=1)
    v4 = data.area == "V4"
    assert _linear_fit_r2(features["layer1"], mu[:, v4, :][:, np.arange(v4.sum()), peak[v4]]).min() > 0.999
    np.testing.assert_array_equal(default_dataset(seed=0).responses, data.responses)
    assert not np.allclose(default_dataset(seed=1).responses, data.responses)
