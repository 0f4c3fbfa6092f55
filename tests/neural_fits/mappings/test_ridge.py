"""Ridge against scikit-learn, primal and dual."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge as SkRidge

from goaldriven.neural_fits.mappings.ridge import Ridge
from tests.neural_fits.mappings.regression_data import linear_data


@pytest.mark.parametrize("n, p", [(40, 10), (15, 60)])  # primal (p <= n) and dual (p > n)
def test_ridge_matches_sklearn(n, p):
    x, y, x_test = linear_data(n, p, 3)
    ref = SkRidge(alpha=0.7).fit(x, y)
    ours = Ridge(alpha=0.7, block=7).fit(x.astype(np.float32), y)
    assert ours.dual_ == (p > n)
    ref32 = SkRidge(alpha=0.7).fit(x.astype(np.float32).astype(np.float64), y)
    np.testing.assert_allclose(ours.coef_, ref32.coef_.T, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref32.intercept_, atol=1e-10)
    np.testing.assert_allclose(Ridge(0.7).fit(x, y).predict(x_test), ref.predict(x_test), atol=1e-10)
    preds = Ridge(0.7).fit_predict_many(x, [y, y[:, :1] * 2], x_test)
    np.testing.assert_allclose(preds[0], ref.predict(x_test), atol=1e-10)
    np.testing.assert_allclose(preds[1], SkRidge(0.7).fit(x, y[:, :1] * 2).predict(x_test).reshape(-1, 1), atol=1e-10)
