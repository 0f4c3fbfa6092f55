"""The centred Gram products against NumPy, and kernel mappings fed the shared Gram of all stimuli."""

import numpy as np
import pytest

from goaldriven.neural_fits.mappings import make_mapping
from goaldriven.neural_fits.mappings.gram import GramFeatures, centred_grams


def test_centred_grams_match_numpy():
    rng = np.random.default_rng(1)
    x, x_test = rng.standard_normal((12, 37)).astype(np.float32), rng.standard_normal((5, 37)).astype(np.float32)
    gram, cross, mean = centred_grams(x, x_test, block=8)
    xc, tc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64), x_test - x.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(gram, xc @ xc.T, atol=1e-10)
    np.testing.assert_allclose(cross, tc @ xc.T, atol=1e-10)
    np.testing.assert_allclose(mean, x.mean(axis=0, dtype=np.float64), atol=1e-12)


@pytest.mark.parametrize("name, kwargs", [("pls", {"n_components": 3}), ("ridge", {"alpha": 2.0})])
def test_gram_features_give_the_predictions_of_the_features_themselves(name, kwargs):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((30, 80)).astype(np.float32)
    ys = [rng.standard_normal((30, 4)), rng.standard_normal((30, 2))]
    train, test = np.arange(22), np.arange(22, 30)
    gram = GramFeatures(x)
    expected = make_mapping(name, **kwargs).fit_predict_many(x[train], [y[train] for y in ys], x[test])
    got = make_mapping(name, **kwargs).fit_predict_many(gram[train], [y[train] for y in ys], gram[test])
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-8, atol=1e-10)
    with pytest.raises(TypeError, match="same GramFeatures"):
        make_mapping(name, **kwargs).fit_predict_many(gram[train], [ys[0][train]], GramFeatures(x)[test])
