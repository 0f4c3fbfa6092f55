"""The readouts: planted signal is decoded, shuffled labels are not, PCA only above 1000 features, C by CV."""

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_score
from sklearn.svm import LinearSVC

from goaldriven.transfer import evaluate, readouts

SMALL = readouts.ReadoutConfig(c_grid=(1e-4, 1e-2, 1.0, 1e2), cv_folds=3, max_components=20)


def _classes(n=240, p=30, classes=4, signal=1.0, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    centres = rng.normal(0, 1, (classes, p))
    return rng.normal(0, 1, (n, p)) + signal * centres[labels], labels


def test_the_grid_is_the_reference_codes_33_values():
    assert len(readouts.C_GRID) == 33 and len(readouts.THESIS_C_GRID) == 32
    assert readouts.C_GRID[:2] == (1e-8, 5e-8) and readouts.C_GRID[-1] == 5e8
    assert {1.0, 10.0, 50.0, 100.0} <= set(readouts.C_GRID) and 5.0 not in readouts.C_GRID
    assert 5.0 in readouts.THESIS_C_GRID and 10.0 not in readouts.THESIS_C_GRID


@pytest.mark.parametrize("shuffle, low, high", [(False, 0.8, 1.0), (True, 0.0, 0.45)])
def test_planted_categories_are_decoded_and_shuffled_labels_are_not(shuffle, low, high):
    x, y = _classes(signal=1.0)
    data = {"categorization": evaluate.TaskData(y, [(np.arange(0, 160), np.arange(160, 240))], chance=0.25)}
    if shuffle:
        data["categorization"].targets = y[np.random.default_rng(1).permutation(len(y))]
    out = evaluate.evaluate_layer([evaluate.TASKS["categorization"]], x, data, SMALL, log=lambda line: None)
    assert low <= out["categorization"]["mean"] <= high  # chance is 0.25


def test_planted_targets_are_regressed_and_shuffled_targets_are_not():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (300, 40))
    targets = np.stack([x[:, 0] + 0.3 * rng.normal(size=300), x[:, 1] - x[:, 2]], axis=1)
    splits = [(np.arange(200), np.arange(200, 300))]
    config = readouts.ReadoutConfig(c_grid=readouts.C_GRID, cv_folds=5)
    planted = evaluate.evaluate_layer(
        [evaluate.TASKS["position"]], x, {"position": evaluate.TaskData(targets, splits, 0.0)}, config, lambda s: None
    )["position"]
    shuffled = evaluate.evaluate_layer(
        [evaluate.TASKS["position"]], x, {"position": evaluate.TaskData(targets[rng.permutation(300)], splits, 0.0)},
        config, lambda s: None,
    )["position"]  # fmt: skip
    assert planted["mean"] > 0.9 and len(planted["per_target"][0]) == 2
    assert abs(shuffled["mean"]) < 0.25


def test_pca_only_when_a_layer_has_more_features_than_max_components():
    rng = np.random.default_rng(0)
    narrow, wide = rng.normal(size=(50, 20)), rng.normal(size=(50, 21))
    assert readouts.fit_projection(narrow, max_components=20).axes is None
    projection = readouts.fit_projection(wide, max_components=20)
    assert projection.axes is not None and projection(wide).shape == (50, 20)
    # fitted on the train rows only: the test rows do not move it
    train_only = readouts.fit_projection(wide[:40], max_components=20)
    np.testing.assert_allclose(train_only.mean, wide[:40].mean(0), rtol=1e-5)


@pytest.mark.parametrize("n, p", [(80, 30), (40, 300)])  # sklearn's full SVD, and the Gram route (p > n)
def test_pca_axes_are_sklearns_full_svd_axes(n, p):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, p)) @ rng.normal(size=(p, p)) * 0.1
    projection = readouts.fit_projection(x, max_components=10)
    reference = PCA(n_components=10, svd_solver="full").fit((x - x.mean(0)) / projection.scale)
    overlap = np.abs(projection.axes.T @ reference.components_.T)  # equal up to sign
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-4)


def test_ridge_cv_matches_gridsearch_over_sklearn_ridge():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(90, 12))
    y = np.stack([x @ rng.normal(size=12), x[:, 0]], 1) + rng.normal(0, 2, (90, 2))
    grid = np.array([1e-3, 1e-1, 1.0, 1e1, 1e3])
    mine = readouts.ridge_cv_scores(x, y, 1 / grid, folds=5, seed=4)
    search = GridSearchCV(Ridge(), {"alpha": list(1 / grid)}, cv=KFold(5, shuffle=True, random_state=4)).fit(x, y)
    np.testing.assert_allclose(mine, search.cv_results_["mean_test_score"], atol=1e-8)
    _, c = readouts.fit_regressor(x, y, readouts.ReadoutConfig(c_grid=tuple(grid), seed=4))
    assert c == pytest.approx(1 / search.best_params_["alpha"])


def test_the_svm_c_is_the_cross_validated_best():
    x, y = _classes(n=200, p=20, signal=0.3, seed=3)
    config = readouts.ReadoutConfig(c_grid=(1e-7, 1e-5, 1e-3, 1e-1, 10.0), cv_folds=4, seed=5)
    _, chosen = readouts.fit_classifier(x, y, config)
    cv = StratifiedKFold(4, shuffle=True, random_state=5)
    scores = [
        cross_val_score(LinearSVC(C=c, dual="auto", max_iter=2000, random_state=5), x, y, cv=cv).mean()
        for c in config.c_grid
    ]
    assert chosen == config.c_grid[int(np.argmax(scores))]
    assert chosen not in (config.c_grid[0], config.c_grid[-1])  # on this data the best C is inside the grid


def test_best_layer_is_the_highest_mean():
    layers = {"pose": {"a": {"mean": 0.2, "sem": 0.1}, "b": {"mean": 0.5, "sem": 0.0}}}
    assert evaluate.best_layers(layers) == {"pose": {"layer": "b", "mean": 0.5, "sem": 0.0}}
