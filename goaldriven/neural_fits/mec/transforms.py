"""The mapping transforms of Fig. 4.1 on spatial bins, and ElasticNet-CV with the hyperparameters averaged over maps.

Reference: thesis Sections 4.3 and 4.8.3 (spec ch3_ch4 B4.1, ambiguities 31-32):

    one_to_one      the most correlated source unit on the training bins (MAPPINGS["one_to_one"])
    lasso           sklearn ElasticNet(alpha=1, l1_ratio=1)
    elasticnet      "balanced Lasso-Ridge": ElasticNet(alpha=1, l1_ratio=0.5)
    ridge           Ridge(alpha=1) (MAPPINGS["ridge"])
    lasso_cv        per cell alpha by 2-fold CV, l1_ratio = 1        (ElasticNetCV with one l1 ratio)
    ridge_cv        per cell alpha by 2-fold CV, l1_ratio = 1e-16    (sklearn ElasticNet's ridge end)
    elasticnet_cv   per cell (alpha, l1_ratio) by 2-fold CV on the full grid (the thesis' final transform)
    pls             PLS regression, 25 components capped at n_train - 1 and the source size (ch4 gives no number)

"Average across maps" (Section 4.8.3, 1-D track): when a cell has several maps, the CV transforms pick the grid point
whose validation score averaged over the cell's maps is best, and use it for every map (`groups` labels the target
columns of one cell). Every factory is `make(name, groups=None, grid=...)` -> a fresh Mapper.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet

from goaldriven.neural_fits.mappings import MAPPINGS
from goaldriven.neural_fits.mappings import elastic_net as elastic_net_lib
from goaldriven.neural_fits.mappings.base import Mapper
from goaldriven.neural_fits.mappings.pls import PLSRegression

# n: bins, p: source units, u: target columns (cells x maps), m: test bins

TRANSFORMS = ("one_to_one", "lasso", "elasticnet", "ridge", "lasso_cv", "ridge_cv", "elasticnet_cv", "pls")
CV_L1_RATIOS = {"lasso_cv": (1.0,), "ridge_cv": (1e-16,), "elasticnet_cv": None}
PLS_COMPONENTS = 25


class FixedElasticNet(Mapper):
    """sklearn ElasticNet(alpha, l1_ratio) with intercept, one independent fit per target column (Lasso: l1 = 1).

    Attributes after fit: coef_ (p, u), intercept_ (u,), n_not_converged_.
    """

    def __init__(self, alpha: float = 1.0, l1_ratio: float = 1.0, max_iter: int = 1000, tol: float = 1e-4):
        if not alpha > 0 or not 0 < l1_ratio <= 1:
            raise ValueError(f"need alpha > 0 and l1_ratio in (0, 1]; received {alpha}, {l1_ratio}.")
        self.alpha, self.l1_ratio, self.max_iter, self.tol = float(alpha), float(l1_ratio), int(max_iter), float(tol)

    def _fit(self, x, y):
        net = ElasticNet(alpha=self.alpha, l1_ratio=self.l1_ratio, max_iter=self.max_iter, tol=self.tol)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            net.fit(np.asarray(x, np.float64), y)
        self.n_not_converged_ = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.coef_ = np.asarray(net.coef_, np.float64).reshape(y.shape[1], -1).T
        self.intercept_ = np.asarray(net.intercept_, np.float64).reshape(-1)

    def _predict(self, x):
        return np.asarray(x, np.float64) @ self.coef_ + self.intercept_


class GroupedElasticNetCV(elastic_net_lib.ElasticNetCV):
    """ElasticNetCV whose (alpha, l1_ratio) is chosen per group of target columns (one cell's maps, thesis 4.8.3):
    the first grid point with the best validation score averaged over the folds and the group's columns.

    Args:
        groups: (u,) labels of the target columns of each `fit` (None: every column its own group, plain CV).
        Other arguments: as ElasticNetCV.
    """

    def __init__(self, groups=None, **kwargs):
        super().__init__(**kwargs)
        self.groups = None if groups is None else np.asarray(groups)

    def _fit(self, x, y):
        super()._fit(x, y)
        if self.groups is None:
            return
        if self.groups.shape != (y.shape[1],):
            raise ValueError(f"groups must label the {y.shape[1]} target columns; received shape {self.groups.shape}.")
        n_a, n_l = len(self.alphas), len(self.l1_ratios)
        flat = self.cv_scores_.reshape(n_a * n_l, -1)  # (grid, u)
        pooled = np.empty_like(flat)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups
            for g in np.unique(self.groups):
                cols = self.groups == g
                pooled[:, cols] = np.nanmean(flat[:, cols], axis=1, keepdims=True)
        score = np.where(np.isnan(pooled), -np.inf, pooled if self.scoring == "pearson" else -pooled)
        top = score.max(axis=0)
        best = np.argmax(score >= top - elastic_net_lib.TIE_ATOL * np.maximum(1.0, np.abs(top)), axis=0)
        best = np.where(np.isfinite(top), best, (n_a - 1) * n_l)
        alpha, l1 = self.alphas[best // n_l], self.l1_ratios[best % n_l]
        x = np.asarray(x, np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # counted by the CV already
            for j in np.flatnonzero((alpha != self.alpha_) | (l1 != self.l1_ratio_)):
                net = ElasticNet(alpha=alpha[j], l1_ratio=l1[j], max_iter=self.max_iter, tol=self.tol).fit(x, y[:, j])
                self.coef_[:, j], self.intercept_[j] = net.coef_, net.intercept_
        self.alpha_, self.l1_ratio_ = alpha, l1


class CappedPLS(PLSRegression):
    """PLS regression with n_components capped at n_train - 1 and the number of source units (ch4: few cells)."""

    def fit_predict_many(self, x_train, ys_train, x_test):
        self.n_components = max(1, min(self.requested, x_train.shape[0] - 1, x_train.shape[1]))
        return super().fit_predict_many(x_train, ys_train, x_test)

    def fit(self, x, y):
        self.n_components = max(1, min(self.requested, np.shape(x)[0] - 1, np.shape(x)[1]))
        return super().fit(x, y)

    def __init__(self, n_components: int = PLS_COMPONENTS, **kwargs):
        super().__init__(n_components=n_components, **kwargs)
        self.requested = int(n_components)


def make(name: str, groups=None, grid: str = "full") -> Mapper:
    """A fresh, unfitted transform `name` (TRANSFORMS); `groups` labels target columns of one cell (CV transforms),
    `grid` is ElasticNetCV's "full" (99 x 100) or "short" (9 x 10) grid."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown MEC transform {name!r}; choose from {', '.join(TRANSFORMS)}.")
    if name == "one_to_one":
        return MAPPINGS["one_to_one"]()
    if name == "ridge":
        return MAPPINGS["ridge"](alpha=1.0)
    if name == "lasso":
        return FixedElasticNet(alpha=1.0, l1_ratio=1.0)
    if name == "elasticnet":
        return FixedElasticNet(alpha=1.0, l1_ratio=0.5)
    if name == "pls":
        return CappedPLS()
    l1 = CV_L1_RATIOS[name]
    return GroupedElasticNetCV(groups=groups, grid=grid, l1_ratios=l1, cv=2)


def factory(name: str, grid: str = "full"):
    """`groups -> fresh transform` for the estimators of consistency.py (checks the name at once)."""
    make(name, grid=grid)
    return lambda groups=None: make(name, groups=groups, grid=grid)


def chosen_hyperparameters(mapper: Mapper) -> dict[str, np.ndarray]:
    """{"alpha": (u,), "l1_ratio": (u,)} chosen by a fitted CV transform; {} for the others."""
    if hasattr(mapper, "alpha_") and np.ndim(mapper.alpha_) == 1:
        return {"alpha": np.asarray(mapper.alpha_, float), "l1_ratio": np.asarray(mapper.l1_ratio_, float)}
    return {}


def n_source_units_used(mapper: Mapper) -> np.ndarray | None:
    """(u,) non-zero source weights per target column of a fitted linear transform with coef_ (p, u), else None."""
    coef = getattr(mapper, "coef_", None)
    if coef is None or np.ndim(coef) != 2:
        return None
    return (np.abs(coef) > 0).sum(axis=0)
