"""ElasticNet with (alpha, l1_ratio) chosen per target unit by k-fold CV on the training stimuli.

References: thesis Section 4.8.3 (ElasticNet-CV, chapter 4); spec ch4 B4.1 and ambiguity 32 (the grid).

    w = argmin 1/(2n) |y - Xw - b|^2 + alpha l1_ratio |w|_1 + alpha (1 - l1_ratio) / 2 |w|^2   (sklearn ElasticNet)
    (alpha, l1_ratio) per unit = the first grid point with the best mean validation score over the folds.
"""

# n: stimuli, p: features, u: units, m: test stimuli
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNet, enet_path

from goaldriven.neural_fits.mappings.base import Mapper, split_targets

# the chapter 4 grid (spec ch4 B4.1): alpha log-spaced in [1e-9, 1e9] (includes 1), l1_ratio ~0 then uniform in (0, 1]
GRIDS = {
    "full": (np.geomspace(1e-9, 1e9, 99), np.array([1e-16, *np.linspace(0.01, 1.0, 99)])),
    "short": (np.geomspace(1e-9, 1e9, 9), np.array([1e-16, *np.linspace(0.01, 1.0, 9)])),
}


TIE_ATOL = 1e-9  # ElasticNetCV: validation scores this close to the best count as ties (first in grid order wins)


def kfold_indices(n: int, cv: int, seed: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, validation) index pairs of k-fold CV: contiguous folds as sklearn KFold(cv) (the first n % cv folds
    one longer), on a seeded permutation of 0..n-1 when `seed` is given."""
    if not 2 <= cv <= n:
        raise ValueError(f"cv must be between 2 and the number of training stimuli ({n}). Received: {cv}")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    sizes = np.full(cv, n // cv) + (np.arange(cv) < n % cv)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    folds = [order[bounds[i] : bounds[i + 1]] for i in range(cv)]
    return [(np.sort(np.concatenate(folds[:i] + folds[i + 1 :])), np.sort(folds[i])) for i in range(cv)]


def _fold_scores(pred: np.ndarray, target: np.ndarray, scoring: str) -> np.ndarray:
    """Validation score of each column of pred (n_val, k) against target (n_val,): Pearson r (NaN for a constant
    column) or the mean squared error."""
    if scoring == "mse":
        return ((pred - target[:, None]) ** 2).mean(axis=0)
    pc, tc = pred - pred.mean(axis=0), target - target.mean()
    norms = np.sqrt((pc**2).sum(axis=0) * (tc**2).sum())
    constant = (np.ptp(pred, axis=0) == 0) | (np.ptp(target) == 0)  # exact test: the mean of equal values rounds
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(constant | (norms == 0), np.nan, (pc.T @ tc) / norms)


class ElasticNetCV(Mapper):
    """ElasticNet with (alpha, l1_ratio) chosen per target unit by k-fold CV on the training stimuli (ch4 4.8.3).

    sklearn's objective 1/(2n) |y - Xw - b|^2 + alpha l1_ratio |w|_1 + alpha (1 - l1_ratio) / 2 |w|^2. For each fold,
    unit and l1_ratio one `sklearn.linear_model.enet_path` call solves all alphas by coordinate descent, each warm-
    started from the previous (larger) alpha. The pair with the best mean validation score over the folds is refit
    on all training stimuli with `sklearn.linear_model.ElasticNet`. Selection follows the reference code: Pearson r
    on the validation fold (NaN, e.g. a constant prediction, ignored), mean over folds, first maximum in the order
    (alpha ascending, l1_ratio ascending; scores within TIE_ATOL count as equal, so rounding never decides); scoring="mse" uses the mean squared error (sklearn ElasticNetCV) instead.
    A unit whose scores are all NaN gets the largest alpha (a constant prediction).

    Cost per fit: u x cv x len(l1_ratios) paths of len(alphas) coordinate-descent solves (the full grid: 198
    paths, 19602 solves per unit for cv = 2) + u refits. A solve costs at most max_iter sweeps of O(n p) (O(p^2)
    with the Gram matrix, used when a fold has more stimuli than features). Most of the time goes to l1_ratio =
    1e-16: sklearn's duality-gap test is ill-conditioned at a vanishing L1 weight, so those solves run to max_iter
    for roughly the smaller half of the alphas (counted in n_not_converged_). Measured on one core, 80 training stimuli (ch4: 20% of 400 bins): 30 / 100 / 400 features, full
    grid 1.0 / 1.6 / 6.9 s per unit and split; short grid 0.04 / 0.08 / 0.24 s.

    Args:
        alphas, l1_ratios: explicit grids (override `grid`).
        cv: folds; grid: "full" (99 alphas x 100 l1 ratios) or "short" (9 x 10), spec ch4 B4.1 / ambiguity 32.
        scoring: "pearson" (reference code) or "mse"; seed: None = contiguous folds (sklearn KFold, reference code),
            an int = folds of a seeded permutation.
        max_iter, tol: coordinate-descent limits (sklearn defaults).
    Attributes after fit: alpha_, l1_ratio_ (u,), cv_scores_ (len(alphas), len(l1_ratios), u), coef_ (p, u),
    intercept_ (u,), n_not_converged_ (solves that hit max_iter).
    """

    def __init__(
        self,
        alphas=None,
        l1_ratios=None,
        cv: int = 2,
        grid: str = "full",
        scoring: str = "pearson",
        seed: int | None = None,
        max_iter: int = 1000,
        tol: float = 1e-4,
    ):
        if grid not in GRIDS:
            raise ValueError(f"grid must be one of {sorted(GRIDS)}. Received: {grid!r}")
        if scoring not in ("pearson", "mse"):
            raise ValueError(f"scoring must be 'pearson' or 'mse'. Received: {scoring!r}")
        self.alphas = np.sort(np.asarray(GRIDS[grid][0] if alphas is None else alphas, dtype=np.float64))
        self.l1_ratios = np.asarray(GRIDS[grid][1] if l1_ratios is None else l1_ratios, dtype=np.float64)
        if self.alphas.ndim != 1 or not self.alphas.size or np.any(self.alphas <= 0):
            raise ValueError(f"alphas must be a non-empty list of positive numbers. Received: {alphas}")
        if self.l1_ratios.ndim != 1 or not self.l1_ratios.size or np.any((self.l1_ratios <= 0) | (self.l1_ratios > 1)):
            raise ValueError(f"l1_ratios must lie in (0, 1] (use 1e-16 for ridge). Received: {l1_ratios}")
        self.cv, self.grid, self.scoring, self.seed = int(cv), grid, scoring, seed
        self.max_iter, self.tol = int(max_iter), float(tol)

    def _fit(self, x, y):
        x = np.asarray(x, dtype=np.float64)
        n_a, n_l, u = len(self.alphas), len(self.l1_ratios), y.shape[1]
        folds = kfold_indices(x.shape[0], self.cv, self.seed)
        scores = np.empty((len(folds), n_a, n_l, u))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            for f, (tr, va) in enumerate(folds):
                x_mean, y_mean = x[tr].mean(axis=0), y[tr].mean(axis=0)
                xc = np.asfortranarray(x[tr] - x_mean)  # (n_f, p)
                xv = x[va] - x_mean
                gram = xc.T @ xc if len(tr) > x.shape[1] else None
                for j in range(u):
                    yj = np.ascontiguousarray(y[tr, j] - y_mean[j])
                    xy = None if gram is None else xc.T @ yj
                    for k, l1 in enumerate(self.l1_ratios):
                        _, coefs, _ = enet_path(
                            xc,
                            yj,
                            l1_ratio=l1,
                            alphas=self.alphas[::-1],
                            check_input=False,
                            precompute=False if gram is None else gram,
                            Xy=xy,
                            max_iter=self.max_iter,
                            tol=self.tol,
                        )
                        pred = xv @ coefs[:, ::-1] + y_mean[j]  # (n_val, n_a), alphas ascending
                        scores[f, :, k, j] = _fold_scores(pred, y[va, j], self.scoring)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
                self.cv_scores_ = np.nanmean(scores, axis=0)
            flat = self.cv_scores_.reshape(n_a * n_l, u)
            flat = np.where(np.isnan(flat), -np.inf, flat if self.scoring == "pearson" else -flat)
            top = flat.max(axis=0)  # first grid point within rounding (TIE_ATOL) of the best: Pearson r is scale-
            best = np.argmax(flat >= top - TIE_ATOL * np.maximum(1.0, np.abs(top)), axis=0)  # free, exact ties occur
            best = np.where(np.isfinite(top), best, (n_a - 1) * n_l)
            self.alpha_, self.l1_ratio_ = self.alphas[best // n_l], self.l1_ratios[best % n_l]
            self.coef_, self.intercept_ = np.empty((x.shape[1], u)), np.empty(u)
            for j in range(u):
                net = ElasticNet(alpha=self.alpha_[j], l1_ratio=self.l1_ratio_[j], max_iter=self.max_iter, tol=self.tol)
                net.fit(x, y[:, j])
                self.coef_[:, j], self.intercept_[j] = net.coef_, net.intercept_
        self.n_not_converged_ = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        if self.n_not_converged_:
            warnings.warn(
                f"ElasticNetCV: {self.n_not_converged_} coordinate-descent solves hit max_iter="
                f"{self.max_iter} (typically the smallest alphas)",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _predict(self, x):
        return np.asarray(x, dtype=np.float64) @ self.coef_ + self.intercept_

    def _fit_predict_many(self, x_train, ys, x_test):
        self._fit(x_train, np.concatenate(ys, axis=1))  # independent per unit
        return split_targets(self._predict(x_test), ys)
