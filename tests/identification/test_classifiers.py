"""Classifiers on planted data: separable -> near 100%, permuted labels -> near chance; importances; determinism."""

import math

import numpy as np
import pytest

from goaldriven.identification import classifiers, dataset
from tests.identification import planted

SMALL_CONV = {"learning_rate": [3e-3], "batch_size": [32], "kernel_fraction": [0.25], "stride": [1], "filters": [8],
              "pooling": ["max"], "l2": [0.0], "epochs": [25]}  # fmt: skip


@pytest.fixture(scope="module")
def planted_examples():
    runs = planted.planted_runs(statistics=planted.ADMISSIBLE[::3], epochs=tuple(range(0, 51, 5)), seed=1)
    return dataset.assemble(runs)  # 288 examples, 8 statistics x 11 epochs + 3


def _split(examples, seed=0):
    order = np.random.default_rng(seed).permutation(len(examples.X))
    return order[: 3 * len(order) // 4], order[3 * len(order) // 4 :]


@pytest.mark.parametrize(
    "name, grid",
    [("svm", {"pca__n_components": [None, 10], "svc__C": [1.0]}), ("rf", "scaled_down"), ("conv1d", SMALL_CONV)],
)
def test_planted_rules_are_identified(planted_examples, name, grid):
    ex = planted_examples
    train, test = _split(ex)
    model, params = classifiers.fit(name, ex.X[train], ex.y[train], n_time=ex.n_time, grid=grid, seed=0)
    accuracy = np.mean(model.predict(ex.X[test]) == ex.y[test])
    assert accuracy > 0.9, (name, accuracy, params)


def test_permuted_labels_give_chance(planted_examples):
    ex = planted_examples
    y = np.random.default_rng(3).permutation(ex.y)
    train, test = _split(ex)
    accuracies = []
    for name, grid in (("svm", {"svc__C": [1.0], "pca__n_components": [None]}), ("rf", "scaled_down")):
        model, _ = classifiers.fit(name, ex.X[train], y[train], n_time=ex.n_time, grid=grid, seed=0)
        accuracies.append(np.mean(model.predict(ex.X[test]) == y[test]))
    assert max(accuracies) < 0.45, accuracies  # chance 0.25; 72 test examples (s.d. ~0.05)


def test_grid_search_picks_from_the_grid_and_is_deterministic(planted_examples):
    ex = planted_examples
    grid = {"n_estimators": [5, 30], "max_features": ["sqrt", "log2"]}
    first, params = classifiers.fit("rf", ex.X, ex.y, n_time=ex.n_time, grid=grid, seed=4)
    again, params_again = classifiers.fit("rf", ex.X, ex.y, n_time=ex.n_time, grid=grid, seed=4)
    assert params == params_again and params["n_estimators"] in (5, 30)
    np.testing.assert_array_equal(first.predict_proba(ex.X), again.predict_proba(ex.X))


def test_importances_are_sums_over_each_trajectory(planted_examples):
    ex = planted_examples
    model, _ = classifiers.fit("rf", ex.X, ex.y, n_time=ex.n_time, grid={"n_estimators": [50]}, seed=0)
    raw = model.feature_importances_
    per_stat = classifiers.importances_per_statistic(model, ex.statistics, ex.n_time)
    T = ex.n_time
    for s, name in enumerate(ex.statistics):
        assert per_stat[name] == pytest.approx(sum(raw[s * T + t] for t in range(T)))
    assert per_stat["position"] == pytest.approx(raw[-3:].sum())
    assert sum(per_stat.values()) == pytest.approx(1.0)
    top = sorted(per_stat, key=per_stat.get)[-4:]  # the planted signal: rule r shifts statistic r
    assert set(top) == set(ex.statistics[:4])


def test_pca_is_applied_to_the_continuous_features_only():
    X = np.random.default_rng(0).normal(size=(40, 23))
    X[:, -3:] = np.eye(3)[np.arange(40) % 3]
    out = classifiers.ContinuousPCA(n_components=5).fit(X).transform(X)
    assert out.shape == (40, 8)
    np.testing.assert_array_equal(out[:, -3:], X[:, -3:])
    centred = X[:, :-3] - X[:, :-3].mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)[:5]
    np.testing.assert_allclose(np.linalg.norm(out[:, :5], axis=0), singular, rtol=1e-8)


def test_pca_sizes_beyond_the_data_are_dropped_from_the_grid():
    grid = classifiers.resolve_grid("svm", "full")
    feasible = classifiers._feasible("svm", grid, n_train=100, n_continuous=504, cv=5)
    assert feasible["pca__n_components"] == [None, 10, 20, 30, 40, 50]


def test_conv1d_kernel_sizes_follow_the_trajectory_fraction():
    sizes = []
    for fraction in classifiers.FULL_GRIDS["conv1d"]["kernel_fraction"]:
        net = classifiers.Conv1DClassifier(n_time=21, kernel_fraction=fraction, pooling="avg")
        conv = [layer for layer in net._build(27, 4).layers if layer.__class__.__name__ == "Conv1D"][0]
        sizes.append(conv.kernel_size[0])
        assert sizes[-1] == max(1, math.ceil(fraction * 21 - 1e-9))
    assert sorted(set(sizes)) == [1, 2, 6, 11, 21]


def test_full_grid_sizes_match_the_spec():
    sizes = {name: math.prod(len(v) for v in grid.values()) for name, grid in classifiers.FULL_GRIDS.items()}
    assert sizes == {"svm": 12 * 7, "rf": 5 * 3, "conv1d": 2 * 2 * 6 * 3 * 2 * 3 * 2}


def test_conv1d_is_deterministic_given_a_seed(planted_examples):
    ex = planted_examples
    grid = {**SMALL_CONV, "epochs": [2]}
    first, _ = classifiers.fit("conv1d", ex.X[:96], ex.y[:96], n_time=ex.n_time, grid=grid, seed=7)
    again, _ = classifiers.fit("conv1d", ex.X[:96], ex.y[:96], n_time=ex.n_time, grid=grid, seed=7)
    np.testing.assert_allclose(first.predict_proba(ex.X), again.predict_proba(ex.X), rtol=1e-6)


def test_the_forest_is_never_standardized_and_keeps_tiny_values_next_to_huge_ones():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    X = np.zeros((80, 2 * 3 + dataset.N_POSITIONS))
    X[:, 0] = 1e-3 * (1 + y) + 1e-5 * rng.normal(size=80)  # the rule's signal, at 1e-3 scale
    X[:3, 1] = 1e24  # a diverging run's statistic in another column
    scaled, _ = classifiers.fit("rf", X, y, n_time=3, standardize=True)
    plain, _ = classifiers.fit("rf", X, y, n_time=3, standardize=False)
    assert isinstance(classifiers.forest(scaled), classifiers.RandomForestClassifier)
    assert np.array_equal(scaled.predict(X), plain.predict(X)) and (plain.predict(X) == y).mean() == 1.0
