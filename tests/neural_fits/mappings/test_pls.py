"""PLSRegression (kernel form) against scikit-learn's PLSRegression(scale=False) fitted directly."""

# n: stimuli, p: features, u: units
import warnings

import numpy as np
import pytest
from sklearn.cross_decomposition import PLSRegression as SkPLS

from goaldriven.neural_fits.mappings import pls
from goaldriven.neural_fits.mappings.gram import GramCache


def _data(n, p, u, seed=0, n_test=15, dtype=np.float64):
    """Low-rank features + noise and noisy linear readouts of the same latent (so PLS has something to find)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n + n_test, 6))
    x = z @ rng.standard_normal((6, p)) + 0.5 * rng.standard_normal((n + n_test, p)) + 3.0
    y = z @ rng.standard_normal((6, u)) + rng.standard_normal((n + n_test, u))
    return x[:n].astype(dtype), y[:n], x[n:].astype(dtype)


def _close(ours, ref, rtol=1e-5):
    scale = np.abs(ref - ref.mean(axis=0)).max()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize(
    "n, p, u, k",
    [(40, 300, 1, 10), (40, 300, 6, 25), (120, 20, 5, 10), (60, 60, 3, 20), (30, 500, 12, 5)],
)
def test_fit_predict_matches_sklearn(n, p, u, k):
    x, y, x_test = _data(n, p, u)
    ref = SkPLS(k, scale=False).fit(x, y)
    ours = pls.PLSRegression(k).fit(x, y)
    _close(ours.predict(x_test), ref.predict(x_test))
    _close(ours.predict(x), ref.predict(x))
    np.testing.assert_allclose(ours.coef_, ref.coef_.T, atol=1e-6 * np.abs(ref.coef_).max())
    assert ours.n_components_ == k


@pytest.mark.parametrize("method", ["dual", "primal"])
def test_forced_method_matches_sklearn(method):
    for n, p in [(50, 200), (80, 30)]:
        x, y, x_test = _data(n, p, 4, seed=1)
        _close(
            pls.PLSRegression(8, method=method).fit(x, y).predict(x_test),
            SkPLS(8, scale=False).fit(x, y).predict(x_test),
        )


def test_fit_predict_many_matches_independent_sklearn_fits():
    x, y, x_test = _data(50, 400, 7, seed=2)
    ys = [y, y[:, :1], y[:, 2:5] ** 2]
    preds = pls.PLSRegression(12).fit_predict_many(x, ys, x_test)
    for target, pred in zip(ys, preds):
        _close(pred, SkPLS(12, scale=False).fit(x, target).predict(x_test))


def test_float32_features():
    x, y, x_test = _data(50, 400, 5, seed=3, dtype=np.float32)
    ref = SkPLS(10, scale=False).fit(x, y).predict(x_test)  # sklearn predicts float32 inputs in float32
    _close(pls.PLSRegression(10).fit(x, y).predict(x_test), ref, rtol=1e-5)
    _close(pls.PLSRegression(10, block=64).fit_predict_many(x, [y], x_test)[0], ref, rtol=1e-5)


def test_same_stopping_rule_as_sklearn():
    """sklearn's NIPALS stops at |w_i - w_(i-1)|^2 < 1e-6, far from the exact singular vector; we follow it."""
    x, y, x_test = _data(60, 300, 20, seed=4)
    default = SkPLS(15, scale=False).fit(x, y).predict(x_test)
    exact = SkPLS(15, scale=False, tol=1e-15, max_iter=20000).fit(x, y).predict(x_test)
    scale = np.abs(default - default.mean(axis=0)).max()
    assert np.abs(default - exact).max() > 1e-6 * scale  # the stopping rule matters at this precision
    _close(pls.PLSRegression(15).fit(x, y).predict(x_test), default, rtol=1e-8)
    _close(pls.PLSRegression(15, tol=1e-15, max_iter=20000).fit(x, y).predict(x_test), exact, rtol=1e-8)


def test_gram_cache_split_equals_direct_centring():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 70)) + 10.0
    tr, te = np.array([0, 3, 4, 8, 9, 11, 15, 20, 21, 29]), np.array([1, 2, 27])
    kernel, cross = GramCache(x.astype(np.float32), block=16).split(tr, te)
    x32 = x.astype(np.float32).astype(np.float64)
    mean = x32[tr].mean(axis=0)
    np.testing.assert_allclose(kernel, (x32[tr] - mean) @ (x32[tr] - mean).T, atol=1e-9)
    np.testing.assert_allclose(cross, (x32[te] - mean) @ (x32[tr] - mean).T, atol=1e-9)


@pytest.mark.parametrize("p", [300, 20])
def test_pls_splits_matches_sklearn_loop(p):
    x, y, _ = _data(60, p, 4, seed=6, n_test=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    splits = [(np.sort(perm[:45]), np.sort(perm[45:])) for perm in (rng.permutation(60) for _ in range(3))]
    preds = pls.pls_splits(x, y, splits, n_components=8)
    for (tr, te), pred in zip(splits, preds):
        _close(pred, SkPLS(8, scale=False).fit(x[tr], y[tr]).predict(x[te]))


def test_constant_target_column_predicts_its_mean():
    x, y, x_test = _data(40, 200, 4, seed=7)
    y[:, 1], y[:, 3] = 0.1, 37.25
    pred = pls.PLSRegression(6).fit(x, y).predict(x_test)
    np.testing.assert_allclose(pred[:, 1], 0.1, rtol=1e-12)
    np.testing.assert_allclose(pred[:, 3], 37.25, rtol=1e-12)
    _close(pred, SkPLS(6, scale=False).fit(x, y).predict(x_test))


def test_components_beyond_rank_stop_with_warning():
    """12 centred training stimuli have rank 11: the 12th component is dropped (sklearn: 'y residual is
    constant'), and the predictions equal an 11-component fit."""
    x, y, x_test = _data(12, 40, 3, seed=8)
    with pytest.warns(UserWarning, match="PLS:"):
        model = pls.PLSRegression(12).fit(x, y)
    assert model.n_components_ == 11
    _close(model.predict(x_test), SkPLS(11, scale=False).fit(x, y).predict(x_test), rtol=1e-6)


def test_rank_deficient_features_stop_with_warning():
    """Features of rank 3: sklearn's 4th-6th components are numerically meaningless (its predictions move far from
    the 3-component fit); ours stop at 3 components with a warning."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((25, 3)) @ rng.standard_normal((3, 40))
    y = rng.standard_normal((25, 3))
    with pytest.warns(UserWarning, match="features are exhausted"):
        model = pls.PLSRegression(6).fit(x[:20], y[:20])
    assert model.n_components_ == 3
    _close(model.predict(x[20:]), SkPLS(3, scale=False).fit(x[:20], y[:20]).predict(x[20:]))


def test_errors():
    x, y, x_test = _data(20, 30, 2)
    with pytest.raises(ValueError, match="n_components=25 exceeds"):
        pls.PLSRegression(25).fit(x, y)
    with pytest.raises(ValueError, match="reduce n_components"):
        pls.pls_splits(x, y, [(np.arange(10), np.arange(10, 20))], n_components=15)
    with pytest.raises(ValueError, match="positive integer"):
        pls.PLSRegression(0)
    with pytest.raises(ValueError, match="method"):
        pls.PLSRegression(2, method="svd")
    with pytest.raises(ValueError, match="call fit"):
        pls.PLSRegression(2).predict(x_test)
    with pytest.raises(ValueError, match="same number of stimuli"):
        pls.pls_splits(x, y[:5], [(np.arange(10), np.arange(10, 20))])
    with pytest.raises(ValueError, match="NaN"):
        pls.PLSRegression(2).fit(np.where(np.eye(20, 30) > 0, np.nan, x), y)


def test_inputs_not_modified_and_no_warnings_on_ordinary_data():
    x, y, x_test = _data(40, 300, 5, seed=9)
    copies = [a.copy() for a in (x, y, x_test)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pls.PLSRegression(10).fit(x, y).predict(x_test)
        pls.PLSRegression(10).fit_predict_many(x, [y], x_test)
    for a, b in zip((x, y, x_test), copies):
        np.testing.assert_array_equal(a, b)
