"""ElasticNetCV against a brute-force scikit-learn loop, its folds and its grids."""

import numpy as np
import pytest
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.model_selection import KFold

from goaldriven.neural_fits.mappings.elastic_net import GRIDS, ElasticNetCV, kfold_indices


def test_kfold_indices_match_sklearn():
    for n, cv in [(10, 2), (11, 3)]:
        ours = kfold_indices(n, cv)
        for (tr, va), (tr_ref, va_ref) in zip(ours, KFold(cv).split(np.zeros(n))):
            np.testing.assert_array_equal(tr, tr_ref)
            np.testing.assert_array_equal(va, va_ref)
    shuffled, again = kfold_indices(11, 2, seed=3), kfold_indices(11, 2, seed=3)
    for (tr, va), (tr2, va2) in zip(shuffled, again):  # deterministic for a seed
        np.testing.assert_array_equal(va, va2)
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(11))
    np.testing.assert_array_equal(np.sort(np.concatenate([va for _, va in shuffled])), np.arange(11))
    assert not np.array_equal(shuffled[0][1], kfold_indices(11, 2)[0][1])
    with pytest.raises(ValueError, match="cv must be between 2"):
        kfold_indices(5, 6)


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


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # l1_ratio = 1e-16 (see elastic_net.py)
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
    alphas, l1s = GRIDS["short"]
    model = ElasticNetCV(grid="short", scoring=scoring, **kw).fit(x, y)
    mean, best = _brute_force_enet(x, y, alphas, l1s, 2, scoring, **kw)
    np.testing.assert_allclose(model.cv_scores_, mean, atol=1e-6)
    np.testing.assert_array_equal(model.alpha_, alphas[best // len(l1s)])
    np.testing.assert_array_equal(model.l1_ratio_, l1s[best % len(l1s)])
    for j in range(2):
        ref = SkElasticNet(alpha=model.alpha_[j], l1_ratio=model.l1_ratio_[j], **kw).fit(x, y[:, j])
        np.testing.assert_allclose(model.predict(x_test)[:, j], ref.predict(x_test), atol=1e-8)
    preds = ElasticNetCV(grid="short", scoring=scoring, **kw).fit_predict_many(x, [y[:, :1], y[:, 1:]], x_test)
    np.testing.assert_allclose(np.concatenate(preds, axis=1), model.predict(x_test), atol=1e-10)


def test_elasticnet_cv_grids():
    full = ElasticNetCV()
    assert full.alphas.shape == (99,) and full.l1_ratios.shape == (100,)
    assert 1.0 in full.alphas and full.alphas[0] == 1e-9 and full.alphas[-1] == 1e9
    assert full.l1_ratios[0] == 1e-16 and full.l1_ratios[1] == 0.01 and full.l1_ratios[-1] == 1.0
    np.testing.assert_allclose(np.diff(full.l1_ratios[1:]), 0.99 / 98)  # uniform on [0.01, 1]
    np.testing.assert_allclose(np.diff(np.log10(full.alphas)), 18 / 98)  # log-uniform on [1e-9, 1e9]
    short = ElasticNetCV(grid="short")
    assert short.alphas.shape == (9,) and short.l1_ratios.shape == (10,)
    with pytest.raises(ValueError, match="grid must be one of"):
        ElasticNetCV(grid="medium")
    with pytest.raises(ValueError, match="l1_ratios must lie in"):
        ElasticNetCV(l1_ratios=[0.0, 0.5])
    with pytest.raises(ValueError, match="alphas must be"):
        ElasticNetCV(alphas=[-1.0])
    with pytest.raises(ValueError, match="scoring"):
        ElasticNetCV(scoring="r2")
