"""One-to-One: the planted source column, the affine variant and the column correlations."""

import numpy as np

from goaldriven.neural_fits.mappings.one_to_one import OneToOne, pearson_columns


def test_one_to_one_picks_the_planted_column():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 30))
    x[:, 4] = 0.1  # a constant source column is never chosen (its centred values are rounding noise)
    y = np.stack([3 * x[:, 7] + 0.1 * rng.standard_normal(50), x[:, 21] - 0.2 * rng.standard_normal(50)], axis=1)
    x_test = rng.standard_normal((6, 30))
    model = OneToOne().fit(x, y)
    np.testing.assert_array_equal(model.selected_, [7, 21])
    r = [np.corrcoef(x[:, j], y[:, i])[0, 1] for i, j in enumerate([7, 21])]
    np.testing.assert_allclose(model.train_r_, r, rtol=1e-12)
    np.testing.assert_array_equal(model.predict(x_test), x_test[:, [7, 21]])  # the source column itself
    affine = OneToOne(affine=True).fit(x, y)
    for i, j in enumerate([7, 21]):
        slope, intercept = np.polyfit(x[:, j], y[:, i], 1)
        np.testing.assert_allclose(affine.predict(x_test)[:, i], slope * x_test[:, j] + intercept, rtol=1e-10)
    r_all = pearson_columns(x, y)
    assert np.isnan(r_all[4]).all()
    np.testing.assert_allclose(r_all[[0, 29]], np.corrcoef(x[:, [0, 29]].T, y.T)[:2, 2:], rtol=1e-12)
    preds = OneToOne().fit_predict_many(x, [y[:, :1], y[:, 1:]], x_test)
    np.testing.assert_array_equal(np.concatenate(preds, axis=1), x_test[:, [7, 21]])
