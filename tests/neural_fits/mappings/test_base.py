"""The mapping registry, its capability flags, the shared input checks and the inputs-untouched contract."""

import numpy as np
import pytest

from goaldriven.neural_fits.mappings import MAPPINGS, make_mapping, mapping_class
from goaldriven.neural_fits.mappings.base import check_x
from goaldriven.neural_fits.mappings.elastic_net import ElasticNetCV
from goaldriven.neural_fits.mappings.factored_readout import FactoredReadout
from goaldriven.neural_fits.mappings.one_to_one import OneToOne
from goaldriven.neural_fits.mappings.pls import PLSRegression
from goaldriven.neural_fits.mappings.ridge import Ridge
from tests.neural_fits.mappings.regression_data import linear_data


def test_registry_builds_fresh_mappers():
    expected = {
        "pls": PLSRegression,
        "ridge": Ridge,
        "one_to_one": OneToOne,
        "elasticnet_cv": ElasticNetCV,
    }
    assert set(expected) | {"factored"} == set(MAPPINGS)
    for name, cls in expected.items():
        a, b = make_mapping(name), make_mapping(name)
        assert type(a) is cls and a is not b
    assert make_mapping("ridge", alpha=3.0).alpha == 3.0
    with pytest.raises(ValueError, match="unknown mapping 'lasso'; choose one of"):
        make_mapping("lasso")


def test_capability_flags_say_which_features_each_mapping_takes():
    """The fit pipeline hands a shared Gram only to accepts_gram mappings and feature maps to needs_maps ones."""
    assert {name for name, cls in MAPPINGS.items() if cls.accepts_gram} == {"pls", "ridge"}
    assert {name for name, cls in MAPPINGS.items() if cls.needs_maps} == {"factored"}
    assert {name for name, cls in MAPPINGS.items() if cls.costly_fit} == {"factored"}
    assert MAPPINGS["factored"] is FactoredReadout
    with pytest.raises(ValueError, match="unknown mapping 'svm'"):
        mapping_class("svm")


def test_inputs_are_checked_with_the_fix_named():
    x, y, x_test = linear_data(20, 5, 2)
    with pytest.raises(ValueError, match="call fit"):
        Ridge().predict(x_test)
    with pytest.raises(ValueError, match="must be 2-D"):
        Ridge().fit(x[:, 0], y)
    with pytest.raises(ValueError, match="same number of stimuli"):
        Ridge().fit(x, y[:10])
    with pytest.raises(ValueError, match="NaN or inf"):
        OneToOne().fit(x, np.where(y > 1, np.inf, y))
    with pytest.raises(TypeError, match="real numbers"):
        Ridge().fit(x.astype(complex), y)
    with pytest.raises(ValueError, match="at least 2 training stimuli"):
        Ridge().fit(x[:1], y[:1])
    with pytest.raises(ValueError, match="x has 4 features but the mapping was fit on 5"):
        Ridge().fit(x, y).predict(x_test[:, :4])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        Ridge(alpha=0.0)
    with pytest.raises(TypeError, match="must be a list"):
        Ridge().fit_predict_many(x, y, x_test)
    with pytest.raises(ValueError, match="empty"):
        Ridge().fit_predict_many(x, [], x_test)
    with pytest.raises(ValueError, match="every y must have x_train's 20 stimuli"):
        Ridge().fit_predict_many(x, [y, y[:5]], x_test)
    check_x(np.full((3, 2), 1e308))  # finite, although its sum overflows
    with pytest.raises(ValueError, match="call fit"):  # fit_predict_many leaves no fitted mapping
        model = Ridge()
        model.fit_predict_many(x, [y], x_test)
        model.predict(x_test)
    with pytest.raises(ValueError, match="x_test has 4 features"):
        Ridge().fit_predict_many(x, [y], x_test[:, :4])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_inputs_not_modified():
    x, y, x_test = linear_data(20, 30, 3)
    copies = [a.copy() for a in (x, y, x_test)]
    for name in ("ridge", "one_to_one", "pls"):
        kwargs = {"n_components": 3} if name == "pls" else {}
        make_mapping(name, **kwargs).fit(x, y).predict(x_test)
        make_mapping(name, **kwargs).fit_predict_many(x, [y], x_test)
    ElasticNetCV(grid="short", alphas=[0.1, 1.0]).fit(x, y).predict(x_test)
    for a, b in zip((x, y, x_test), copies):
        np.testing.assert_array_equal(a, b)
