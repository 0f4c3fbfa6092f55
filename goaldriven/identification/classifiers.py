"""The three rule classifiers of thesis Section 6.3.9 (spec ch5_ch6 Section 11.4) and their grid search.

* "svm": optional PCA of the continuous (trajectory) features only, the position one-hot concatenated after it, then
  `LinearSVC(C)`. Grid: n_components in {none, 10, 20, ..., 600} (values that do not fit the data are dropped), C in
  {1, 50, 500, 5e3, 5e4, 5e5, 5e6}.
* "rf": `RandomForestClassifier(n_estimators, max_features)`, n_estimators in {20, 50, 100, 500, 1000}, max_features in
  {all, log2, sqrt}; Gini importances summed over the trajectory per statistic (`importances_per_statistic`).
* "conv1d": input (T, 3 + S); one valid Conv1D with bias (kernel ceil(fraction * T), stride, filters; Xavier init) ->
  ReLU -> global max / global average pooling over time or flatten -> dense softmax; Adam, 400 epochs. Grid: lr {1e-3,
  1e-4}, batch {512, 1024}, kernel fraction {3e-3, 7e-3, 5e-2, 0.25, 0.5, 1}, stride {1, 2, 4}, filters {20, 40},
  pooling {none, max, avg}, L2 {1e-4, 0} (on both kernels).

Grid search: 5-fold stratified CV on the training split (shuffled with the seed), refit of the best configuration on
the whole training split (`GridSearchCV`); a one-point grid is fit directly. Z-scoring (fit on the training split) is
optional and off by default, as in the thesis code. Everything is seeded: the same seed gives the same predictions.
`SCALED_DOWN_GRIDS` are small grids for CPU runs (the full ones take GPU-days).
"""

# n: examples, T: time samples, S: statistics, C: classes

import math
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from goaldriven.identification import dataset

CLASSIFIERS = ("svm", "rf", "conv1d")
FULL_GRIDS = {
    "svm": {
        "pca__n_components": [None, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500, 600],
        "svc__C": [1.0, 50.0, 500.0, 5e3, 5e4, 5e5, 5e6],
    },
    "rf": {"n_estimators": [20, 50, 100, 500, 1000], "max_features": [None, "log2", "sqrt"]},
    "conv1d": {
        "learning_rate": [1e-3, 1e-4],
        "batch_size": [512, 1024],
        "kernel_fraction": [3e-3, 7e-3, 5e-2, 0.25, 0.5, 1.0],
        "stride": [1, 2, 4],
        "filters": [20, 40],
        "pooling": [None, "max", "avg"],
        "l2": [1e-4, 0.0],
        "epochs": [400],
    },
}
SCALED_DOWN_GRIDS = {
    "svm": {"pca__n_components": [None, 20], "svc__C": [1.0, 50.0]},
    "rf": {"n_estimators": [100], "max_features": ["sqrt"]},
    "conv1d": {
        "learning_rate": [1e-3],
        "batch_size": [64],
        "kernel_fraction": [0.25],
        "stride": [1],
        "filters": [20],
        "pooling": [None],
        "l2": [0.0],
        "epochs": [60],
    },
}


class ContinuousPCA(TransformerMixin, BaseEstimator):
    """PCA of all but the last `n_onehot` columns (None: no PCA); the one-hot columns are appended unchanged."""

    def __init__(self, n_components=None, n_onehot=dataset.N_POSITIONS, seed=0):
        self.n_components = n_components
        self.n_onehot = n_onehot
        self.seed = seed

    def fit(self, X, y=None):
        X = np.asarray(X)
        self.pca_ = None
        if self.n_components is not None:
            n_components = min(self.n_components, X.shape[0], X.shape[1] - self.n_onehot)
            self.pca_ = PCA(n_components, svd_solver="full", random_state=self.seed).fit(X[:, : -self.n_onehot])
        return self

    def transform(self, X):
        X = np.asarray(X)
        if self.pca_ is None:
            return X
        return np.concatenate([self.pca_.transform(X[:, : -self.n_onehot]), X[:, -self.n_onehot :]], axis=1)


class Conv1DClassifier(ClassifierMixin, BaseEstimator):
    """The thesis' Conv1D network as a scikit-learn classifier on flat (n, S*T + 3) examples (T = `n_time`)."""

    def __init__(
        self,
        n_time=21,
        learning_rate=1e-3,
        batch_size=512,
        kernel_fraction=1.0,
        stride=1,
        filters=20,
        pooling=None,
        l2=0.0,
        epochs=400,
        seed=0,
    ):
        self.n_time = n_time
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.kernel_fraction = kernel_fraction
        self.stride = stride
        self.filters = filters
        self.pooling = pooling
        self.l2 = l2
        self.epochs = epochs
        self.seed = seed

    def _build(self, n_features, n_classes):
        import keras  # pylint: disable=g-import-not-at-top  Keras (and TF) only load when a Conv1D is fit.

        if self.pooling not in (None, "max", "avg"):
            raise ValueError(f"Conv1DClassifier pooling must be None, 'max' or 'avg'. Received: {self.pooling!r}")
        kernel = min(max(math.ceil(self.kernel_fraction * self.n_time - 1e-9), 1), self.n_time)
        regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
        inputs = keras.Input((self.n_time, n_features))  # (b, T, 3 + S)
        h = keras.layers.Conv1D(
            self.filters,
            kernel,
            strides=self.stride,
            padding="valid",
            use_bias=True,
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed),
            kernel_regularizer=regularizer,
        )(inputs)
        h = keras.layers.ReLU()(h)
        pooling = {"max": keras.layers.GlobalMaxPooling1D, "avg": keras.layers.GlobalAveragePooling1D}
        h = pooling.get(self.pooling, keras.layers.Flatten)()(h)
        outputs = keras.layers.Dense(
            n_classes,
            activation="softmax",
            kernel_initializer=keras.initializers.GlorotUniform(seed=self.seed + 1),
            kernel_regularizer=regularizer,
        )(h)
        model = keras.Model(inputs, outputs)
        model.compile(
            optimizer=keras.optimizers.Adam(self.learning_rate),
            loss="sparse_categorical_crossentropy",
            jit_compile=False,
        )
        return model

    def fit(self, X, y):
        import keras  # pylint: disable=g-import-not-at-top

        self.classes_, y_index = np.unique(np.asarray(y), return_inverse=True)
        sequences = dataset.flat_to_sequences(np.asarray(X, np.float32), self.n_time)
        keras.utils.set_random_seed(self.seed)  # shuffling order; the initializers carry their own seeds
        self.model_ = self._build(sequences.shape[2], len(self.classes_))
        self.model_.fit(sequences, y_index, batch_size=self.batch_size, epochs=self.epochs, verbose=0, shuffle=True)
        return self

    def predict_proba(self, X):
        sequences = dataset.flat_to_sequences(np.asarray(X, np.float32), self.n_time)
        return np.asarray(self.model_(sequences, training=False))  # a direct call: no predict() retracing per model

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def make_estimator(name: str, n_time: int, seed: int = 0, standardize: bool = False, n_jobs: int = 1):
    """An unfitted estimator whose parameters the grids name ('svm', 'rf' or 'conv1d').

    standardize: z-score the features (fitted on the training data) for the SVM and the Conv1D network. The random
    forest never is: its splits do not depend on a feature's scale, and subtracting a mean of 1e24 (a diverging run's
    activations) from 1e-3-scale values would erase them in float64.
    """
    if name == "svm":
        steps = [("pca", ContinuousPCA(seed=seed)), ("svc", LinearSVC(random_state=seed, max_iter=2000))]
    elif name == "rf":
        return RandomForestClassifier(random_state=seed, n_jobs=n_jobs)
    elif name == "conv1d":
        steps = [("net", Conv1DClassifier(n_time=n_time, seed=seed))]
    else:
        raise ValueError(f"unknown classifier {name!r}; use one of {list(CLASSIFIERS)}")
    return Pipeline(([("scale", StandardScaler())] if standardize else []) + steps)


def resolve_grid(name: str, grid) -> dict:
    """grid: 'full', 'scaled_down' or a {parameter: values} dict, in `make_estimator`'s parameter names.

    Conv1D grids may use bare parameter names (learning_rate, ...); they are prefixed with 'net__' here.
    """
    if isinstance(grid, str):
        grids = {"full": FULL_GRIDS, "scaled_down": SCALED_DOWN_GRIDS}
        if grid not in grids:
            raise ValueError(f"unknown grid {grid!r}; use 'full', 'scaled_down' or a dict of parameter lists")
        grid = grids[grid][name]
    if name == "conv1d":
        grid = {(key if "__" in key else f"net__{key}"): values for key, values in grid.items()}
    return {key: list(values) for key, values in grid.items()}


def _feasible(name, grid, n_train, n_continuous, cv):
    """Drops PCA sizes larger than a CV training fold or the number of continuous features."""
    if name != "svm" or "pca__n_components" not in grid:
        return grid
    limit = min(n_train - math.ceil(n_train / cv), n_continuous)
    sizes = [k for k in grid["pca__n_components"] if k is None or k <= limit]
    return {**grid, "pca__n_components": sizes or [None]}


def fit(name: str, X, y, n_time: int, grid="scaled_down", seed: int = 0, cv: int = 5, standardize=False, n_jobs=1):
    """Grid search (stratified `cv`-fold CV) and refit on all of (X, y). Returns (fitted estimator, best params)."""
    estimator = make_estimator(name, n_time, seed=seed, standardize=standardize, n_jobs=n_jobs)
    grid = _feasible(name, resolve_grid(name, grid), len(X), np.shape(X)[1] - dataset.N_POSITIONS, cv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # LinearSVC at large C, as in the thesis code
        if all(len(values) == 1 for values in grid.values()):
            params = {key: values[0] for key, values in grid.items()}
            return clone(estimator).set_params(**params).fit(X, y), params
        splitter = StratifiedKFold(cv, shuffle=True, random_state=seed)
        search = GridSearchCV(estimator, grid, cv=splitter, refit=True, n_jobs=1, error_score="raise")
        search.fit(X, y)
    return search.best_estimator_, search.best_params_


def forest(estimator) -> RandomForestClassifier:
    """The RandomForestClassifier of a fitted 'rf' estimator (never wrapped: make_estimator)."""
    return estimator


def importances_per_statistic(estimator, statistics, n_time: int) -> dict:
    """Gini importances of a fitted 'rf' estimator summed over each statistic's trajectory; 'position': the one-hot."""
    importances = forest(estimator).feature_importances_
    per_stat = importances[: len(statistics) * n_time].reshape(len(statistics), n_time).sum(axis=1)
    out = {name: float(value) for name, value in zip(statistics, per_stat)}
    out["position"] = float(importances[len(statistics) * n_time :].sum())
    return out
