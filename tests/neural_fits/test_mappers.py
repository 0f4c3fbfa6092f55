"""Mappers: registry, Ridge vs scikit-learn, One-to-One, ElasticNetCV vs a brute-force scikit-learn loop, the
temporal wrappers vs manual per-bin loops, and the error paths."""

# n: stimuli, p: features, u: units, t: time bins
import numpy as np
import pytest
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import Ridge as SkRidge
from sklearn.model_selection import KFold

from goaldriven.neural_fits import mappers, pls


def _data(n, p, u, seed=0, n_test=9):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + n_test, p)) + 2.0
    y = x[:, : min(p, 4)] @ rng.standard_normal((min(p, 4), u)) + rng.standard_normal((n + n_test, u))
    return x[:n], y[:n], x[n:]


def test_registry_builds_fresh_mappers():
    expected = {
        "pls": pls.PLSRegression,
        "ridge": mappers.Ridge,
        "one_to_one": mappers.OneToOne,
        "elasticnet_cv": mappers.ElasticNetCV,
    }
    assert set(expected) | {"factored"} == set(mappers.MAPPERS)
    for name, cls in expected.items():
        a, b = mappers.make_mapper(name), mappers.make_mapper(name)
        assert type(a) is cls and a is not b
    assert mappers.make_mapper("ridge", alpha=3.0).alpha == 3.0
    with pytest.raises(ValueError, match="unknown mapper 'lasso'; choose one of"):
        mappers.make_mapper("lasso")


@pytest.mark.parametrize("n, p", [(40, 10), (15, 60)])  # primal (p <= n) and dual (p > n)
def test_ridge_matches_sklearn(n, p):
    x, y, x_test = _data(n, p, 3)
    ref = SkRidge(alpha=0.7).fit(x, y)
    ours = mappers.Ridge(alpha=0.7, block=7).fit(x.astype(np.float32), y)
    assert ours.dual_ == (p > n)
    ref32 = SkRidge(alpha=0.7).fit(x.astype(np.float32).astype(np.float64), y)
    np.testing.assert_allclose(ours.coef_, ref32.coef_.T, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref32.intercept_, atol=1e-10)
    np.testing.assert_allclose(mappers.Ridge(0.7).fit(x, y).predict(x_test), ref.predict(x_test), atol=1e-10)
    preds = mappers.Ridge(0.7).fit_predict_many(x, [y, y[:, :1] * 2], x_test)
    np.testing.assert_allclose(preds[0], ref.predict(x_test), atol=1e-10)
    np.testing.assert_allclose(preds[1], SkRidge(0.7).fit(x, y[:, :1] * 2).predict(x_test).reshape(-1, 1), atol=1e-10)


def test_centred_grams_match_numpy():
    rng = np.random.default_rng(1)
    x, x_test = rng.standard_normal((12, 37)).astype(np.float32), rng.standard_normal((5, 37)).astype(np.float32)
    gram, cross, mean = mappers.centred_grams(x, x_test, block=8)
    xc, tc = x.astype(np.float64) - x.mean(axis=0, dtype=np.float64), x_test - x.mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(gram, xc @ xc.T, atol=1e-10)
    np.testing.assert_allclose(cross, tc @ xc.T, atol=1e-10)
    np.testing.assert_allclose(mean, x.mean(axis=0, dtype=np.float64), atol=1e-12)


def test_one_to_one_picks_the_planted_column():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 30))
    x[:, 4] = 0.1  # a constant source column is never chosen (its centred values are rounding noise)
    y = np.stack([3 * x[:, 7] + 0.1 * rng.standard_normal(50), x[:, 21] - 0.2 * rng.standard_normal(50)], axis=1)
    x_test = rng.standard_normal((6, 30))
    model = mappers.OneToOne().fit(x, y)
    np.testing.assert_array_equal(model.selected_, [7, 21])
    r = [np.corrcoef(x[:, j], y[:, i])[0, 1] for i, j in enumerate([7, 21])]
    np.testing.assert_allclose(model.train_r_, r, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(x_test), x_test[:, [7, 21]])  # the source column itself
    affine = mappers.OneToOne(affine=True).fit(x, y)
    for i, j in enumerate([7, 21]):
        slope, intercept = np.polyfit(x[:, j], y[:, i], 1)
        np.testing.assert_allclose(affine.predict(x_test)[:, i], slope * x_test[:, j] + intercept, rtol=1e-10)
    r_all = mappers.pearson_columns(x, y)
    assert np.isnan(r_all[4]).all()
    np.testing.assert_allclose(r_all[[0, 29]], np.corrcoef(x[:, [0, 29]].T, y.T)[:2, 2:], rtol=1e-12)
    preds = mappers.OneToOne().fit_predict_many(x, [y[:, :1], y[:, 1:]], x_test)
    np.testing.assert_array_equal(np.concatenate(preds, axis=1), x_test[:, [7, 21]])


def test_kfold_indices_match_sklearn():
    for n, cv in [(10, 2), (11, 3)]:
        ours = mappers.kfold_indices(n, cv)
        for (tr, va), (tr_ref, va_ref) in zip(ours, KFold(cv).split(np.zeros(n))):
            np.testing.assert_array_equal(tr, tr_ref)
            np.testing.assert_array_equal(va, va_ref)
    shuffled, again = mappers.kfold_indices(11, 2, seed=3), mappers.kfold_indices(11, 2, seed=3)
    for (tr, va), (tr2, va2) in zip(shuffled, again):  # deterministic for a seed
        np.testing.assert_array_equal(va, va2)
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(11))
    np.testing.assert_array_equal(np.sort(np.concatenate([va for _, va in shuffled])), np.arange(11))
    assert not np.array_equal(shuffled[0][1], mappers.kfold_indices(11, 2)[0][1])
    with pytest.raises(ValueError, match="cv must be between 2"):
        mappers.kfold_indices(5, 6)


def _brute_force_enet(x, y, alphas, l1_ratios, cv, scoring, **kw):
    """Independent reference: every grid point fit from scratch with sklearn ElasticNet on sklearn KFold folds."""
    scores = np.zeros((len(alphas), len(l1_ratios), y.shape[1], cv))
    for f, (tr, va) in enumerate(KFold(cv).split(x)):
        for a, alpha in enumerate(alphas):
            for k, l1 in enumerate(l1_ratios):
                pred = SkElasticNet(alpha=alpha, l1_ratio=l1, **kw).fit(x[tr], y[tr]).predict(x[va])
                for j in range(y.shape[1]):
                    if scoring == "mse":
                        scores[a, k, j, f] = np.mean((pred[:, j] - y[va, j]) ** 2)
                    else:
                        scores[a, k, j, f] = (
                            np.nan if np.ptp(pred[:, j]) == 0 else np.corrcoef(pred[:, j], y[va, j])[0, 1]
                        )
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(scores, axis=-1)
    best = []
    for j in range(y.shape[1]):
        flat = mean[:, :, j].ravel() * (-1 if scoring == "mse" else 1)
        top = np.nanmax(flat)
        best.append(np.flatnonzero(flat >= top - 1e-9 * max(1.0, abs(top)))[0])  # first of the (rounding) ties
    return mean, np.array(best)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # l1_ratio = 1e-16 (see mappers)
@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning")
@pytest.mark.parametrize("scoring", ["pearson", "mse"])
def test_elasticnet_cv_matches_brute_force_sklearn(scoring):
    rng = np.random.default_rng(3)
    # folds of 20 stimuli > 12 features: every grid point has a unique solution that coordinate descent reaches
    # (with p > n the near-unregularised problems stop where the start point leads, warm or cold)
    x = rng.standard_normal((40, 12))
    y = 0.5 * x[:, :2] @ rng.standard_normal((2, 2)) + 1.5 * rng.standard_normal((40, 2)) + 5.0
    x_test = rng.standard_normal((8, 12))
    kw = {"max_iter": 20000, "tol": 1e-10}
    alphas, l1s = mappers.GRIDS["short"]
    model = mappers.ElasticNetCV(grid="short", scoring=scoring, **kw).fit(x, y)
    mean, best = _brute_force_enet(x, y, alphas, l1s, 2, scoring, **kw)
    np.testing.assert_allclose(model.cv_scores_, mean, atol=1e-6)
    np.testing.assert_array_equal(model.alpha_, alphas[best // len(l1s)])
    np.testing.assert_array_equal(model.l1_ratio_, l1s[best % len(l1s)])
    for j in range(2):
        ref = SkElasticNet(alpha=model.alpha_[j], l1_ratio=model.l1_ratio_[j], **kw).fit(x, y[:, j])
        np.testing.assert_allclose(model.predict(x_test)[:, j], ref.predict(x_test), atol=1e-8)
    preds = mappers.ElasticNetCV(grid="short", scoring=scoring, **kw).fit_predict_many(x, [y[:, :1], y[:, 1:]], x_test)
    np.testing.assert_allclose(np.concatenate(preds, axis=1), model.predict(x_test), atol=1e-10)


def test_elasticnet_cv_grids():
    full = mappers.ElasticNetCV()
    assert full.alphas.shape == (99,) and full.l1_ratios.shape == (100,)
    assert 1.0 in full.alphas and full.alphas[0] == 1e-9 and full.alphas[-1] == 1e9
    assert full.l1_ratios[0] == 1e-16 and full.l1_ratios[1] == 0.01 and full.l1_ratios[-1] == 1.0
    np.testing.assert_allclose(np.diff(full.l1_ratios[1:]), 0.99 / 98)  # uniform on [0.01, 1]
    np.testing.assert_allclose(np.diff(np.log10(full.alphas)), 18 / 98)  # log-uniform on [1e-9, 1e9]
    short = mappers.ElasticNetCV(grid="short")
    assert short.alphas.shape == (9,) and short.l1_ratios.shape == (10,)
    with pytest.raises(ValueError, match="grid must be one of"):
        mappers.ElasticNetCV(grid="medium")
    with pytest.raises(ValueError, match="l1_ratios must lie in"):
        mappers.ElasticNetCV(l1_ratios=[0.0, 0.5])
    with pytest.raises(ValueError, match="alphas must be"):
        mappers.ElasticNetCV(alphas=[-1.0])
    with pytest.raises(ValueError, match="scoring"):
        mappers.ElasticNetCV(scoring="r2")


def _temporal_data(seed=4, n=30, t=4, p=6, u=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, t, p))
    y = np.einsum("ntp,pu->nut", x, rng.standard_normal((p, u))) + rng.standard_normal((n, u, t))
    return x[:24], y[:24], x[24:]


def test_temporally_varying_matches_per_bin_loop():
    x, y, x_test = _temporal_data()
    bins = [3, 1]
    model = mappers.TemporallyVarying(lambda: mappers.Ridge(0.5), bins=bins).fit(x, y)
    pred = model.predict(x_test)
    assert pred.shape == (6, 3, 2)
    for k, b in enumerate(bins):
        ref = SkRidge(0.5).fit(x[:, b], y[:, :, b]).predict(x_test[:, b])
        np.testing.assert_allclose(pred[:, :, k], ref, atol=1e-10)
    many = mappers.TemporallyVarying("ridge", bins=bins).fit_predict_many(x, [y, 2 * y], x_test)
    for k, b in enumerate(bins):
        np.testing.assert_allclose(many[1][:, :, k], SkRidge(1.0).fit(x[:, b], 2 * y[:, :, b]).predict(x_test[:, b]))
    # one feature bin shared by every response bin (a feedforward model's constant stream)
    static = mappers.TemporallyVarying("ridge").fit_predict_many(x[:, :1], [y], x_test[:, :1])[0]
    for b in range(4):
        np.testing.assert_allclose(static[:, :, b], SkRidge(1.0).fit(x[:, 0], y[:, :, b]).predict(x_test[:, 0]))


def test_temporally_fixed_matches_stacked_fit():
    x, y, x_test = _temporal_data(seed=5)
    bins = [0, 2, 3]
    xs = np.concatenate([x[:, b] for b in bins])  # sample order is irrelevant to least squares
    ys = np.concatenate([y[:, :, b] for b in bins])
    ref = SkRidge(1.0).fit(xs, ys)
    pred = mappers.TemporallyFixed("ridge", bins=bins).fit(x, y).predict(x_test)
    assert pred.shape == (6, 3, 3)
    for k, b in enumerate(bins):
        np.testing.assert_allclose(pred[:, :, k], ref.predict(x_test[:, b]), atol=1e-10)
    many = mappers.TemporallyFixed("ridge", bins=bins).fit_predict_many(x, [y], x_test)[0]
    np.testing.assert_allclose(many, pred, atol=1e-10)


def test_errors():
    x, y, x_test = _data(20, 5, 2)
    with pytest.raises(ValueError, match="call fit"):
        mappers.Ridge().predict(x_test)
    with pytest.raises(ValueError, match="must be 2-D"):
        mappers.Ridge().fit(x[:, 0], y)
    with pytest.raises(ValueError, match="same number of stimuli"):
        mappers.Ridge().fit(x, y[:10])
    with pytest.raises(ValueError, match="NaN or inf"):
        mappers.OneToOne().fit(x, np.where(y > 1, np.inf, y))
    with pytest.raises(TypeError, match="real numbers"):
        mappers.Ridge().fit(x.astype(complex), y)
    with pytest.raises(ValueError, match="at least 2 training stimuli"):
        mappers.Ridge().fit(x[:1], y[:1])
    with pytest.raises(ValueError, match="x has 4 features but the mapping was fit on 5"):
        mappers.Ridge().fit(x, y).predict(x_test[:, :4])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        mappers.Ridge(alpha=0.0)
    with pytest.raises(TypeError, match="must be a list"):
        mappers.Ridge().fit_predict_many(x, y, x_test)
    with pytest.raises(ValueError, match="empty"):
        mappers.Ridge().fit_predict_many(x, [], x_test)
    with pytest.raises(ValueError, match="every y must have x_train's 20 stimuli"):
        mappers.Ridge().fit_predict_many(x, [y, y[:5]], x_test)
    mappers.check_x(np.full((3, 2), 1e308))  # finite, although its sum overflows
    with pytest.raises(ValueError, match="call fit"):  # fit_predict_many leaves no fitted mapping
        model = mappers.Ridge()
        model.fit_predict_many(x, [y], x_test)
        model.predict(x_test)
    with pytest.raises(ValueError, match="x_test has 4 features"):
        mappers.Ridge().fit_predict_many(x, [y], x_test[:, :4])
    xt, yt, xt_test = _temporal_data()
    with pytest.raises(ValueError, match="same number of time bins"):
        mappers.TemporallyVarying("ridge").fit(xt[:, :3], yt)
    with pytest.raises(ValueError, match=r"time-bin indices in \[0, 4\)"):
        mappers.TemporallyFixed("ridge", bins=[4]).fit(xt, yt)
    with pytest.raises(ValueError, match="add a bin axis"):
        mappers.TemporallyFixed("ridge").fit(xt[:, 0], yt)
    with pytest.raises(ValueError, match=r"y must be \(stimuli, units, time bins\)"):
        mappers.TemporallyVarying("ridge").fit(xt, yt[:, 0])
    with pytest.raises(ValueError, match="call fit"):
        mappers.TemporallyVarying("ridge").predict(xt_test)
    with pytest.raises(ValueError, match="call fit"):
        model = mappers.TemporallyFixed("ridge")
        model.fit_predict_many(xt, [yt], xt_test)
        model.predict(xt_test)
    with pytest.raises(ValueError, match="x has 2 time bins"):
        mappers.TemporallyFixed("ridge").fit(xt, yt).predict(xt_test[:, :2])
    with pytest.raises(TypeError, match="mapper_factory"):
        mappers.TemporallyFixed(3)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_inputs_not_modified():
    x, y, x_test = _data(20, 30, 3)
    copies = [a.copy() for a in (x, y, x_test)]
    for name in ("ridge", "one_to_one", "pls"):
        kwargs = {"n_components": 3} if name == "pls" else {}
        mappers.make_mapper(name, **kwargs).fit(x, y).predict(x_test)
        mappers.make_mapper(name, **kwargs).fit_predict_many(x, [y], x_test)
    mappers.ElasticNetCV(grid="short", alphas=[0.1, 1.0]).fit(x, y).predict(x_test)
    for a, b in zip((x, y, x_test), copies):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name, kwargs", [("pls", {"n_components": 3}), ("ridge", {"alpha": 2.0})])
def test_gram_features_give_the_predictions_of_the_features_themselves(name, kwargs):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((30, 80)).astype(np.float32)
    ys = [rng.standard_normal((30, 4)), rng.standard_normal((30, 2))]
    train, test = np.arange(22), np.arange(22, 30)
    gram = mappers.GramFeatures(x)
    expected = mappers.make_mapper(name, **kwargs).fit_predict_many(x[train], [y[train] for y in ys], x[test])
    got = mappers.make_mapper(name, **kwargs).fit_predict_many(gram[train], [y[train] for y in ys], gram[test])
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-8, atol=1e-10)
    with pytest.raises(TypeError, match="same GramFeatures"):
        mappers.make_mapper(name, **kwargs).fit_predict_many(gram[train], [ys[0][train]], mappers.GramFeatures(x)[test])
