"""The temporal wrappers against manual per-bin loops, and their error paths."""

import numpy as np
import pytest
from sklearn.linear_model import Ridge as SkRidge

from goaldriven.neural_fits.mappings.ridge import Ridge
from goaldriven.neural_fits.mappings.temporal import TemporallyFixed, TemporallyVarying
from tests.neural_fits.mappings.regression_data import temporal_data


def test_temporally_varying_matches_per_bin_loop():
    x, y, x_test = temporal_data()
    bins = [3, 1]
    model = TemporallyVarying(lambda: Ridge(0.5), bins=bins).fit(x, y)
    pred = model.predict(x_test)
    assert pred.shape == (6, 3, 2)
    for k, b in enumerate(bins):
        ref = SkRidge(0.5).fit(x[:, b], y[:, :, b]).predict(x_test[:, b])
        np.testing.assert_allclose(pred[:, :, k], ref, atol=1e-10)
    many = TemporallyVarying("ridge", bins=bins).fit_predict_many(x, [y, 2 * y], x_test)
    for k, b in enumerate(bins):
        np.testing.assert_allclose(many[1][:, :, k], SkRidge(1.0).fit(x[:, b], 2 * y[:, :, b]).predict(x_test[:, b]))
    # one feature bin shared by every response bin (a feedforward model's constant stream)
    static = TemporallyVarying("ridge").fit_predict_many(x[:, :1], [y], x_test[:, :1])[0]
    for b in range(4):
        np.testing.assert_allclose(static[:, :, b], SkRidge(1.0).fit(x[:, 0], y[:, :, b]).predict(x_test[:, 0]))


def test_temporally_fixed_matches_stacked_fit():
    x, y, x_test = temporal_data(seed=5)
    bins = [0, 2, 3]
    xs = np.concatenate([x[:, b] for b in bins])  # sample order is irrelevant to least squares
    ys = np.concatenate([y[:, :, b] for b in bins])
    ref = SkRidge(1.0).fit(xs, ys)
    pred = TemporallyFixed("ridge", bins=bins).fit(x, y).predict(x_test)
    assert pred.shape == (6, 3, 3)
    for k, b in enumerate(bins):
        np.testing.assert_allclose(pred[:, :, k], ref.predict(x_test[:, b]), atol=1e-10)
    many = TemporallyFixed("ridge", bins=bins).fit_predict_many(x, [y], x_test)[0]
    np.testing.assert_allclose(many, pred, atol=1e-10)


def test_temporal_wrappers_refuse_bad_shapes_and_unfitted_use():
    xt, yt, xt_test = temporal_data()
    with pytest.raises(ValueError, match="same number of time bins"):
        TemporallyVarying("ridge").fit(xt[:, :3], yt)
    with pytest.raises(ValueError, match=r"time-bin indices in \[0, 4\)"):
        TemporallyFixed("ridge", bins=[4]).fit(xt, yt)
    with pytest.raises(ValueError, match="add a bin axis"):
        TemporallyFixed("ridge").fit(xt[:, 0], yt)
    with pytest.raises(ValueError, match=r"y must be \(stimuli, units, time bins\)"):
        TemporallyVarying("ridge").fit(xt, yt[:, 0])
    with pytest.raises(ValueError, match="call fit"):
        TemporallyVarying("ridge").predict(xt_test)
    with pytest.raises(ValueError, match="call fit"):
        model = TemporallyFixed("ridge")
        model.fit_predict_many(xt, [yt], xt_test)
        model.predict(xt_test)
    with pytest.raises(ValueError, match="x has 2 time bins"):
        TemporallyFixed("ridge").fit(xt, yt).predict(xt_test[:, :2])
    with pytest.raises(TypeError, match="mapper_factory"):
        TemporallyFixed(3)
