"""RSA (thesis eq. 3.9-3.10, spec ch3 A2.4/A2.6): RDMs against scipy's correlation distance, noise-corrected RSA of
identical animals and of noisy copies of a model."""

import numpy as np
import pytest
from scipy import spatial, stats

from goaldriven.neural_fits.metrics import rsa


def _signal(n=40, u=30, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, 5))
    return latent @ rng.standard_normal((5, u)) + 0.3 * rng.standard_normal((n, u))


def _trials(mu, noise, r, rng):
    return mu[:, :, None] + noise * rng.standard_normal(mu.shape + (r,))


def test_rdm_and_rsa_match_an_independent_formula():
    x, y = _signal(seed=1), _signal(seed=2)
    expected_rdm = spatial.distance.squareform(spatial.distance.pdist(x, "correlation"))
    np.testing.assert_allclose(rsa.rdm(x), expected_rdm, atol=1e-12)
    expected = stats.pearsonr(spatial.distance.pdist(x, "correlation"), spatial.distance.pdist(y, "correlation"))[0]
    assert rsa.rsa(x, y) == pytest.approx(expected, abs=1e-12)
    stacked = np.stack([x, y], axis=-1)  # (n, u, b): one RDM per column
    np.testing.assert_allclose(rsa.rdm(stacked)[1], rsa.rdm(y), atol=1e-12)
    assert rsa.upper_triangle(rsa.rdm(x)).shape == (40 * 39 // 2,)


def test_identical_animals_score_about_one():
    rng = np.random.default_rng(3)
    mu = _signal(u=20, seed=3)
    animals = {f"a{k}": _trials(mu, 0.05, 10, rng) for k in range(3)}  # same responses, tiny noise
    scores = rsa.inter_animal_rsa(animals, n_boot=10, seed=0)
    np.testing.assert_allclose(scores.values, 1.0, atol=0.02)
    assert scores.animals.tolist() == ["a0", "a1", "a2"]


def test_noise_corrected_rsa_of_a_noisy_copy_recovers_about_one():
    rng = np.random.default_rng(4)
    mu = _signal(n=60, u=40, seed=4)
    trials = _trials(mu, 10.0, 20, rng)  # noisy: the raw RSA is well below 1
    scores = rsa.model_rsa(mu, {"b0": trials}, n_boot=20, seed=0, spearman_brown=False)
    assert scores.raw[0] < 0.85
    assert scores.values[0] == pytest.approx(1.0, abs=0.1)
    animals = {"b0": trials, "b1": _trials(mu, 10.0, 20, rng)}
    inter = rsa.inter_animal_rsa(animals, n_boot=20, seed=0, spearman_brown=False)
    np.testing.assert_allclose(inter.values, 1.0, atol=0.12)
    # With Spearman-Brown (the thesis) the full-trial denominators make the score conservative.
    assert rsa.model_rsa(mu, {"b0": trials}, n_boot=20, seed=0).values[0] < scores.values[0]


def test_unrelated_model_scores_about_zero_and_pairwise_mode():
    rng = np.random.default_rng(5)
    mu = _signal(n=50, seed=5)
    trials = {"a": _trials(mu, 0.5, 10, rng), "b": _trials(mu, 0.5, 10, rng), "c": _trials(mu, 0.5, 10, rng)}
    unrelated = rng.standard_normal((50, 30))
    assert abs(rsa.model_rsa(unrelated, trials, n_boot=5, seed=0).summary()["median"]) < 0.15
    pairwise = rsa.inter_animal_rsa(trials, n_boot=5, seed=0, mode="pairwise")
    assert np.all(pairwise.values > 0.8)


def test_bad_inputs_fail_in_one_line():
    with pytest.raises(ValueError, match=">= 2 animals"):
        rsa.inter_animal_rsa({"a": np.zeros((5, 3, 4))}, n_boot=2, seed=0)
    with pytest.raises(ValueError, match="trial-resolved"):
        rsa.model_rsa(np.zeros((5, 3)), {"a": np.zeros((5, 3))}, n_boot=2, seed=0)
