"""Linear readouts of the transfer tasks: PCA to 1000 dimensions, LinearSVC or ridge, C chosen by 5-fold CV.

Reference: thesis Section 3.6.8 (Eq. 3.17), spec ch3 A5 and Ambiguity 12; reference code [C] mouse-vision
`sklearn_transfer_datasets/base_fitter.py`, `hvm_fitter.py`, `core/constants.py`.
  - PCA: to `max_components` = 1000 when a layer has more features, fit on the train split only, exact
    ([C] `do_pca`: svd_solver="full"; here the same axes, from the Gram matrix when features outnumber samples);
    no PCA otherwise.
  - C grid: `C_GRID`, the 33 values of [C] `SVM_CV_C_LONG` (1e-8, 5e-8, ..., 1, 1e1, 5e1, 1e2, ..., 5e8). The thesis
    prints 32 values with "..., 1, 5, 1e2, ..." (`THESIS_C_GRID`), a typo by every sign (Ambiguity 12: the code's
    list is decade-regular, the printed one is not); the code's list is used.
  - Classification (categorisation, texture): LinearSVC, C by 5-fold stratified CV on the train split (accuracy).
  - Regression (position, pose, size): Ridge with alpha = 1 / C, C by 5-fold CV on the train split, scored as
    GridSearchCV scores a Ridge (R^2 averaged over the targets), as [C]; the test metric is Pearson r per target,
    averaged over the targets (Ambiguity 13).
Differences from [C], for speed and robustness (the fitted models are the same family on the same data):
  - the features are scaled by one number (train rows get unit mean squared norm after centring) before PCA, so
    LinearSVC converges in the same few iterations whatever a layer's activation scale; one global factor only
    moves the optimum along the C grid, which spans 16 decades, and leaves the PCA and the readout's geometry as
    they are (no per-feature z-scoring);
  - the ridge CV evaluates all alphas from one SVD per fold (the same numbers as refitting Ridge per alpha);
  - the CV folds are shuffled with a seed ([C]'s GridSearchCV default does not shuffle regression folds, which on
    a file ordered by object holds whole objects out).
"""

# n: samples, p: features, k: components, q: targets
import dataclasses
import warnings

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.svm import LinearSVC

C_GRID = tuple(sorted({float(f"{m}e{e}") for e in range(-8, 9) for m in (1, 5)} - {5.0}))  # 33: [C] SVM_CV_C_LONG
THESIS_C_GRID = tuple(sorted((set(C_GRID) - {10.0, 50.0}) | {5.0}))  # as printed in Eq. 3.17 (32 values)
MAX_COMPONENTS = 1000


@dataclasses.dataclass(frozen=True)
class ReadoutConfig:
    """How every readout is fitted (module docstring)."""

    c_grid: tuple[float, ...] = C_GRID
    cv_folds: int = 5
    max_components: int = MAX_COMPONENTS
    max_iter: int = 2000  # LinearSVC iterations per fit
    n_jobs: int = 1  # GridSearchCV workers (LinearSVC)
    seed: int = 0

    def __post_init__(self):
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ValueError(f"c_grid must hold positive values. Received: {self.c_grid}")
        if self.cv_folds < 2:
            raise ValueError(f"cv_folds must be >= 2. Received: {self.cv_folds}")
        if self.max_components < 1:
            raise ValueError(f"max_components must be >= 1. Received: {self.max_components}")


@dataclasses.dataclass
class Projection:
    """Centring, one global scale and (when p > max_components) the top principal axes, fitted on a train split."""

    mean: np.ndarray  # (p,)
    scale: float
    axes: np.ndarray | None  # (p, k) orthonormal principal axes, by decreasing variance; None: no PCA

    @property
    def components(self) -> int:
        return int(self.axes.shape[1]) if self.axes is not None else int(self.mean.shape[0])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float32) - self.mean) / self.scale
        return (z @ self.axes).astype(np.float32) if self.axes is not None else z


def principal_axes(centred: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """(p, k) top-k principal axes of centred (n, p) data, exactly (no randomised solver): sklearn's
    PCA(svd_solver="full") when p <= n; when p > n (a 3200 x 18432 layer) the eigenvectors of the n x n Gram matrix
    give the same axes (X^T u / s) at a fraction of the cost of the full SVD (one matrix product and an n x n eigh)."""
    n, p = centred.shape
    if p <= n:
        return PCA(n_components=k, svd_solver="full", random_state=seed).fit(centred).components_.T
    x = np.asarray(centred, np.float64)
    eigenvalues, vectors = np.linalg.eigh(x @ x.T)  # ascending
    top = np.argsort(eigenvalues)[::-1][:k]
    s = np.sqrt(np.maximum(eigenvalues[top], 1e-300))
    axes = (x.T @ vectors[:, top]) / s  # (p, k), unit norm up to round-off
    axes /= np.linalg.norm(axes, axis=0, keepdims=True)
    return axes.astype(np.float32)


def fit_projection(train: np.ndarray, max_components: int = MAX_COMPONENTS, seed: int = 0) -> Projection:
    """The Projection of `train` (n, p): PCA to max_components (at most n) only when p > max_components ([C]
    `do_pca`; the real train splits have 3200 and 3760 images, so always 1000 there)."""
    train = np.asarray(train, np.float32)
    mean = train.mean(axis=0)
    centred = train - mean
    scale = float(np.sqrt(np.mean(np.sum(centred.astype(np.float64) ** 2, axis=1)))) or 1.0
    axes = None
    if train.shape[1] > max_components:  # fewer train samples than max_components: as many components as samples
        axes = principal_axes(centred / scale, min(max_components, train.shape[0]), seed)
    return Projection(mean=mean, scale=scale, axes=axes)


def fit_classifier(train_x, train_y, config: ReadoutConfig, c: float | None = None) -> tuple[LinearSVC, float]:
    """LinearSVC on (projected) train features; C by stratified CV over config.c_grid unless `c` is given."""
    train_y = np.asarray(train_y)
    with warnings.catch_warnings():  # liblinear at the grid's largest C stops at max_iter: expected, not news
        warnings.simplefilter("ignore", ConvergenceWarning)
        if c is not None:
            model = LinearSVC(C=c, dual="auto", max_iter=config.max_iter, random_state=config.seed)
            return model.fit(train_x, train_y), float(c)
        folds = min(config.cv_folds, int(np.unique(train_y, return_counts=True)[1].min()))
        if folds < 2:
            raise ValueError("every class needs at least 2 train samples for the C cross-validation.")
        search = GridSearchCV(
            LinearSVC(dual="auto", max_iter=config.max_iter, random_state=config.seed),
            {"C": list(config.c_grid)},
            cv=StratifiedKFold(folds, shuffle=True, random_state=config.seed),
            n_jobs=config.n_jobs,
        )
        search.fit(train_x, train_y)
        return search.best_estimator_, float(search.best_params_["C"])


def ridge_cv_scores(x: np.ndarray, y: np.ndarray, alphas, folds: int, seed: int) -> np.ndarray:
    """Mean over `folds` shuffled CV folds of the held-out R^2 (averaged over targets, as Ridge.score) per alpha,
    every alpha from one SVD of each fold's centred train features (Ridge with an intercept)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64).reshape(len(x), -1)
    alphas = np.asarray(alphas, np.float64)
    scores = np.zeros((folds, len(alphas)))
    for f, (tr, te) in enumerate(KFold(folds, shuffle=True, random_state=seed).split(x)):
        xm, ym = x[tr].mean(0), y[tr].mean(0)
        u, s, vt = np.linalg.svd(x[tr] - xm, full_matrices=False)
        uty = u.T @ (y[tr] - ym)  # (k, q)
        xte = (x[te] - xm) @ vt.T  # (n_te, k)
        ss_tot = ((y[te] - y[te].mean(0)) ** 2).sum(0)
        for a, alpha in enumerate(alphas):
            pred = xte @ (uty * (s / (s**2 + alpha))[:, None]) + ym
            ss_res = ((y[te] - pred) ** 2).sum(0)
            r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
            scores[f, a] = r2.mean()
    return scores.mean(0)


def fit_regressor(train_x, train_y, config: ReadoutConfig, c: float | None = None) -> tuple[Ridge, float]:
    """Ridge (alpha = 1 / C) on (projected) train features; C by CV over config.c_grid unless `c` is given."""
    if c is None:
        grid = np.asarray(config.c_grid, np.float64)
        scores = ridge_cv_scores(train_x, train_y, 1.0 / grid, config.cv_folds, config.seed)
        c = float(grid[int(np.argmax(scores))])  # first best, as GridSearchCV
    with warnings.catch_warnings():  # the grid's largest C (alpha 2e-9) is near-singular by design
        warnings.simplefilter("ignore", LinAlgWarning)
        return Ridge(alpha=1.0 / c).fit(train_x, train_y), float(c)


def pearson_per_target(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r of each column (0 where either side is constant: a flat prediction carries no information)."""
    pred, target = np.asarray(pred, np.float64).reshape(len(pred), -1), np.asarray(target, np.float64)
    target = target.reshape(len(target), -1)
    pc, tc = pred - pred.mean(0), target - target.mean(0)
    denom = np.sqrt((pc**2).sum(0) * (tc**2).sum(0))
    return np.where(denom > 0, (pc * tc).sum(0) / np.where(denom > 0, denom, 1), 0.0)


def score_readout(kind: str, model, x: np.ndarray, y: np.ndarray) -> tuple[float, list[float]]:
    """(metric, per-target values): accuracy for a classifier; mean Pearson r over targets for a regressor."""
    if kind == "classification":
        accuracy = float(np.mean(model.predict(x) == np.asarray(y)))
        return accuracy, [accuracy]
    per_target = pearson_per_target(model.predict(x), y)
    return float(per_target.mean()), [float(v) for v in per_target]
