"""Linear mappings from model features to neural responses, with one fit/predict interface.

References: thesis Sections 2.5.6 (PLS-25 per time bin, Fig. 2.12a), 3.3 and 3.6.2 (One-to-One, Ridge alpha = 1,
PLS-25 compared for inter-animal consistency), 4.8.3 (ElasticNet-CV, chapter 4); spec ch2 8.7, ch3 A2.5, B4.1.

    ridge          w = argmin |Y_c - X_c w|^2 + alpha |w|^2  (sklearn Ridge(alpha, fit_intercept=True): x and y centred
                   on the training means). Primal (X_c'X_c + alpha I) w = X_c'Y_c when p <= n, dual
                   w = X_c'(X_c X_c' + alpha I)^-1 Y_c when p > n; one Cholesky factor serves every target.
    one_to_one     per target unit, the source column with the highest Pearson r on the training stimuli; it is the
                   prediction (see OneToOne for the affine variant).
    elasticnet_cv  per target unit, (alpha, l1_ratio) chosen by k-fold CV on the training stimuli, then refit.
    pls            partial least squares, sklearn PLSRegression(25, scale=False) in kernel form (pls.py).
    factored       the spatially factored readout (factored_readout.py).

Every mapper has fit(x, y) -> self, predict(x) -> (n, u) and fit_predict_many(x_train, ys, x_test), which fits one
independent mapping per target array and shares the x-side work (Gram matrices, factorisations). ElasticNetCV lives
in elastic_net.py and the temporal wrappers (TemporallyVarying / TemporallyFixed: (n, t, p) features to (n, u, t)
responses, one mapping per bin or one for all bins) in temporal.py; both stay reachable as mappers.<name>.
"""

# n: stimuli, p: features, u: units, m: test stimuli
import importlib

import numpy as np
import scipy.linalg

# name -> "module:Class", resolved on use, so importing this module imports neither sklearn nor TensorFlow
MAPPERS = {
    "pls": "goaldriven.neural_fits.pls:PLSRegression",
    "ridge": "goaldriven.neural_fits.mappers:Ridge",
    "elasticnet_cv": "goaldriven.neural_fits.elastic_net:ElasticNetCV",
    "one_to_one": "goaldriven.neural_fits.mappers:OneToOne",
    "factored": "goaldriven.neural_fits.factored_readout:FactoredReadout",
}
DEFAULT_BLOCK = 2048  # feature columns per float64 block of the Gram accumulations (n x 2048 x 8 bytes)


def make_mapper(name: str, **kwargs):
    """A fresh, unfitted mapper registered under `name` (see MAPPERS), built with `kwargs`."""
    if name not in MAPPERS:
        raise ValueError(f"unknown mapper {name!r}; choose one of {sorted(MAPPERS)}.")
    module, attr = MAPPERS[name].split(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise ImportError(f"mapper {name!r} needs {module}, which failed to import: {e}") from e
    return cls(**kwargs)


def check_x(x, name: str = "x") -> np.ndarray:
    """x as a 2-D numeric array (no copy), finite. Raises naming the shape received."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (stimuli, features); flatten feature maps first. Received shape {x.shape}"
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers. Received dtype {x.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(x, dtype=np.float64)  # finite sum: no NaN/inf, without an (n, p) temporary
    if not np.isfinite(total) and not np.isfinite(x).all():
        raise ValueError(f"{name} has NaN or inf values; remove or impute them before fitting. Shape {x.shape}")
    return x


def check_xy(x, y, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) as 2-D finite arrays with the same number of stimuli (at least `min_samples`)."""
    x, y = check_x(x), check_x(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of stimuli (rows). Received x {x.shape}, y {y.shape}")
    if x.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} training stimuli. Received x {x.shape}")
    return x, y


def check_ys(ys_train, n: int) -> list[np.ndarray]:
    """The validated list of (n, u_i) target arrays of fit_predict_many."""
    if isinstance(ys_train, np.ndarray) or not isinstance(ys_train, list | tuple):
        raise TypeError(f"ys_train must be a list of (n, u) arrays. Received {type(ys_train).__name__}")
    if not ys_train:
        raise ValueError("ys_train is empty; pass at least one (n, u) target array.")
    ys = [check_x(y, "y") for y in ys_train]
    for y in ys:
        if y.shape[0] != n:
            raise ValueError(f"every y must have x_train's {n} stimuli (rows). Received y {y.shape}")
    return ys


class Mapper:
    """Base class: validation, the fitted check and the default fit_predict_many (a loop over fit/predict).

    Subclasses implement `_fit(x, y)` and `_predict(x)` on validated 2-D float arrays and may override
    `_fit_predict_many(x_train, ys, x_test)` to share the x-side work across targets.
    """

    min_samples = 2

    def fit(self, x, y):
        """Fits the mapping from x (n, p) to y (n, u); returns self. Inputs are never modified."""
        x, y = check_xy(x, y, self.min_samples)
        self._fit(x, y)
        self.n_features_in_, self.n_units_ = x.shape[1], y.shape[1]
        return self

    def predict(self, x) -> np.ndarray:
        """Predicted responses (m, u) for features x (m, p)."""
        if not hasattr(self, "n_features_in_"):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(x_train, y_train) first.")
        x = check_x(x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"x has {x.shape[1]} features but the mapping was fit on {self.n_features_in_}.")
        return self._predict(x)

    def fit_predict_many(self, x_train, ys_train, x_test) -> list[np.ndarray]:
        """One independent mapping per target array in ys_train (each (n, u_i)); predictions (m, u_i) on x_test.

        This does not leave a fitted mapping behind (predict still needs fit).
        """
        x_train, x_test = check_x(x_train, "x_train"), check_x(x_test, "x_test")
        ys = check_ys(ys_train, x_train.shape[0])
        if x_train.shape[0] < self.min_samples:
            raise ValueError(f"need at least {self.min_samples} training stimuli. Received x_train {x_train.shape}")
        if x_test.shape[1] != x_train.shape[1]:
            raise ValueError(f"x_test has {x_test.shape[1]} features but x_train has {x_train.shape[1]}.")
        return self._fit_predict_many(x_train, ys, x_test)

    def _fit_predict_many(self, x_train, ys, x_test):
        preds = []
        for y in ys:
            self._fit(x_train, y)
            preds.append(self._predict(x_test))
        return preds

    def _fit(self, x, y):
        raise NotImplementedError

    def _predict(self, x):
        raise NotImplementedError

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_") and k[0] != "_")
        return f"{type(self).__name__}({fields})"


def centred_grams(x_train, x_test=None, block: int = DEFAULT_BLOCK):
    """K = X_c X_c' (n, n) and K* = X*_c X_c' (m, n), X_c = x_train - mean, X*_c = x_test - mean (train mean).

    Accumulated in float64 over blocks of `block` feature columns (float32 input is never copied whole), with BLAS
    syrk for the symmetric K. Returns (K, K* or None, mean (p,)).
    """
    n, p = x_train.shape
    gram = np.zeros((n, n), order="F")
    cross = None if x_test is None else np.zeros((x_test.shape[0], n))
    mean = np.empty(p)
    for s in range(0, p, block):
        b = np.array(x_train[:, s : s + block], dtype=np.float64, order="F")  # (n, b)
        mean[s : s + b.shape[1]] = b.mean(axis=0)
        b -= mean[s : s + b.shape[1]]
        gram = scipy.linalg.blas.dsyrk(1.0, b, beta=1.0, c=gram, overwrite_c=1)  # upper triangle += b b'
        if cross is not None:
            cross += (np.asarray(x_test[:, s : s + block], dtype=np.float64) - mean[s : s + b.shape[1]]) @ b.T
    gram += np.triu(gram, 1).T
    return np.ascontiguousarray(gram), cross, mean


def centred_t_dot(x, mean: np.ndarray, v: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """(x - mean)' v (p, k) in float64, block by block over the columns of x (n, p); v (n, k)."""
    out = np.empty((x.shape[1], v.shape[1]))
    for s in range(0, x.shape[1], block):
        b = np.asarray(x[:, s : s + block], dtype=np.float64) - mean[s : s + block]
        out[s : s + b.shape[1]] = b.T @ v
    return out


def centred_dot(x, mean: np.ndarray, w: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """(x - mean) w (m, k) in float64, block by block over the columns of x (m, p); w (p, k)."""
    out = np.zeros((x.shape[0], w.shape[1]))
    for s in range(0, x.shape[1], block):
        out += (np.asarray(x[:, s : s + block], dtype=np.float64) - mean[s : s + block]) @ w[s : s + block]
    return out


def _solve_psd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a^-1 b for symmetric positive definite a (Cholesky; eigendecomposition if a is numerically singular)."""
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(a, lower=True, check_finite=False), b)
    except np.linalg.LinAlgError:
        vals, vecs = np.linalg.eigh(a)
        keep = vals > vals.max() * a.shape[0] * np.finfo(float).eps
        return vecs[:, keep] @ ((vecs[:, keep].T @ b) / vals[keep, None])


class Ridge(Mapper):
    """Ridge regression with intercept, all units at once (sklearn Ridge(alpha, fit_intercept=True) semantics).

    Args:
        alpha: L2 penalty (> 0); the thesis uses 1 (sklearn convention, ch3 3.6.2, ch4 4.8.3).
        block: feature columns per float64 block when p > n (bounds memory for float32 inputs).
    Attributes after fit: coef_ (p, u), intercept_ (u,), dual_ (whether the n x n form was used).
    """

    def __init__(self, alpha: float = 1.0, block: int = DEFAULT_BLOCK):
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0 (use least squares for alpha = 0). Received: {alpha}")
        self.alpha, self.block = float(alpha), int(block)

    def _solve(self, x_train, y, x_test):
        """Fits y (n, u); returns test predictions when x_test is given, else sets coef_/intercept_."""
        n, p = x_train.shape
        y_mean = y.mean(axis=0)
        yc = y - y_mean
        self.dual_ = p > n
        if self.dual_:
            gram, cross, x_mean = centred_grams(x_train, x_test, self.block)
            gram[np.diag_indices(n)] += self.alpha
            dual = _solve_psd(gram, yc)  # (n, u)
            if x_test is not None:
                return cross @ dual + y_mean
            coef = centred_t_dot(x_train, x_mean, dual, self.block)
        else:
            x_mean = x_train.mean(axis=0, dtype=np.float64)
            xc = x_train - x_mean
            cov = xc.T @ xc
            cov[np.diag_indices(p)] += self.alpha
            coef = _solve_psd(cov, xc.T @ yc)  # (p, u)
            if x_test is not None:
                return (x_test - x_mean) @ coef + y_mean
        self.coef_, self.intercept_ = coef, y_mean - x_mean @ coef
        return None

    def _fit(self, x, y):
        self._solve(x, y, None)

    def _predict(self, x):
        return centred_dot(x, np.zeros(x.shape[1]), self.coef_, self.block) + self.intercept_

    def fit_predict_many(self, x_train, ys_train, x_test) -> list[np.ndarray]:
        """As Mapper.fit_predict_many; x_train / x_test may also be GramRows of one GramFeatures (Gram reused)."""
        if not isinstance(x_train, GramRows):
            return super().fit_predict_many(x_train, ys_train, x_test)
        kernel, cross = x_train.split(x_test)
        ys = check_ys(ys_train, kernel.shape[0])
        y = np.concatenate(ys, axis=1)
        kernel[np.diag_indices(kernel.shape[0])] += self.alpha
        preds = cross @ _solve_psd(kernel, y - y.mean(axis=0)) + y.mean(axis=0)
        return np.split(preds, np.cumsum([y.shape[1] for y in ys])[:-1], axis=1)

    def _fit_predict_many(self, x_train, ys, x_test):
        # independent per unit, so all targets are one multi-column solve with one factorisation
        preds = self._solve(x_train, np.concatenate(ys, axis=1), x_test)
        return np.split(preds, np.cumsum([y.shape[1] for y in ys])[:-1], axis=1)


def pearson_columns(x, y: np.ndarray, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Pearson r (p, u) between every column of x (n, p) and of y (n, u); NaN where a column is constant."""
    yc = y - y.mean(axis=0)
    ynorm = np.where(np.ptp(y, axis=0) > 0, np.sqrt((yc**2).sum(axis=0)), 0.0)  # exact test for constant columns
    out = np.empty((x.shape[1], y.shape[1]))
    for s in range(0, x.shape[1], block):
        b = np.asarray(x[:, s : s + block], dtype=np.float64)
        bnorm = np.where(np.ptp(b, axis=0) > 0, np.sqrt(((b - b.mean(axis=0)) ** 2).sum(axis=0)), 0.0)
        norms = bnorm[:, None] * ynorm
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s : s + b.shape[1]] = np.where(norms > 0, ((b - b.mean(axis=0)).T @ yc) / norms, np.nan)
    return out


class OneToOne(Mapper):
    """Each target unit is mapped to the single most correlated source column (thesis 3.6.2, 4.3).

    The source column with the highest Pearson r on the training stimuli is chosen per target unit and fixed for
    the split (ties: the lowest index; constant columns are never chosen; a constant target picks column 0). The
    thesis then correlates that source unit with the target on held-out stimuli, so by default the prediction is
    the raw source column: correlation-based scores are unchanged by any positive affine map. `affine=True` instead
    predicts a + b * x_j with (a, b) least squares on the training stimuli (same Pearson r, sensible squared error).

    Attributes after fit: selected_ (u,) chosen columns, train_r_ (u,) their training r, slope_, intercept_ (u,).
    """

    def __init__(self, affine: bool = False, block: int = DEFAULT_BLOCK):
        self.affine, self.block = bool(affine), int(block)

    def _fit(self, x, y):
        r = pearson_columns(x, y, self.block)  # (p, u)
        r = np.where(np.isnan(r), -np.inf, r)
        self.selected_ = np.argmax(r, axis=0)
        self.train_r_ = r[self.selected_, np.arange(y.shape[1])]
        self.train_r_[~np.isfinite(self.train_r_)] = np.nan
        self.slope_, self.intercept_ = np.ones(y.shape[1]), np.zeros(y.shape[1])
        if self.affine:
            xs = np.asarray(x[:, self.selected_], dtype=np.float64)  # (n, u)
            xc, yc = xs - xs.mean(axis=0), y - y.mean(axis=0)
            var = (xc**2).sum(axis=0)
            self.slope_ = np.divide((xc * yc).sum(axis=0), var, out=np.zeros_like(var), where=var > 0)
            self.intercept_ = y.mean(axis=0) - self.slope_ * xs.mean(axis=0)

    def _predict(self, x):
        return np.asarray(x[:, self.selected_], dtype=np.float64) * self.slope_ + self.intercept_

    def _fit_predict_many(self, x_train, ys, x_test):
        self._fit(x_train, np.concatenate(ys, axis=1))  # per-unit choice: targets are independent columns
        return np.split(self._predict(x_test), np.cumsum([y.shape[1] for y in ys])[:-1], axis=1)


class GramCache:
    """The Gram matrix of all stimuli, computed once; centred train / test-train Grams of any split from it.

    x (N, p), float32 or float64, is centred on its global mean (which makes the float64 accumulation better
    conditioned; train centring is shift-invariant) and multiplied in blocks of `block` columns.
    """

    def __init__(self, x=None, block: int = DEFAULT_BLOCK, *, gram=None, n_features: int | None = None):
        if gram is not None:  # a Gram computed elsewhere (e.g. streamed from disk: FeatureStore.gram_features)
            self.gram, self.n, self.n_features = np.asarray(gram, np.float64), len(gram), int(n_features)
            return
        x = check_x(x)
        self.gram, _, _ = centred_grams(x, None, block)  # (N, N)
        self.n, self.n_features = x.shape

    def split(self, train, test) -> tuple[np.ndarray, np.ndarray]:
        """(K (n, n), K* (m, n)): Grams centred on the mean of the `train` rows (see module doc)."""
        train, test = np.asarray(train), np.asarray(test)
        g_tt = self.gram[np.ix_(train, train)]
        g_et = self.gram[np.ix_(test, train)]
        r = g_tt.mean(axis=1)
        g = r.mean()
        g_tt -= r[:, None] + r[None, :] - g
        g_et -= g_et.mean(axis=1)[:, None] + r[None, :] - g
        return g_tt, g_et


class GramRows:
    """Rows `index` of features held as a GramCache: stands for x[index] in a kernel mapper's fit_predict_many."""

    def __init__(self, cache: "GramCache", index):
        self.cache, self.index = cache, np.asarray(index)
        self.shape = (len(self.index), cache.n_features)

    def __len__(self) -> int:
        return self.shape[0]

    def split(self, test: "GramRows") -> tuple[np.ndarray, np.ndarray]:
        """(K (n, n), K* (m, n)) centred on these (training) rows' mean; `test` must index the same features."""
        if not isinstance(test, GramRows) or test.cache is not self.cache:
            raise TypeError("x_test must be GramRows of the same GramFeatures as x_train (index both from it).")
        return self.cache.split(self.index, test.index)


class GramFeatures:
    """Features (N, p) stood for by their N x N Gram, computed once: `features[idx]` gives GramRows that PLS and
    ridge turn into each split's centred Grams without reading the features again (all splits, bootstrap halves
    and target groups share one Gram product)."""

    def __init__(self, x=None, block: int = DEFAULT_BLOCK, *, gram=None, n_features: int | None = None):
        self.cache = GramCache(x, block, gram=gram, n_features=n_features)
        self.shape = (self.cache.n, self.cache.n_features)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> GramRows:
        return GramRows(self.cache, np.arange(self.shape[0])[index])


# names moved out of this file (import cycle: they need Mapper / make_mapper), resolved on first use
_MOVED = {
    "goaldriven.neural_fits.elastic_net": ("GRIDS", "TIE_ATOL", "kfold_indices", "_fold_scores", "ElasticNetCV"),
    "goaldriven.neural_fits.temporal": ("_check_temporal", "_Temporal", "TemporallyVarying", "TemporallyFixed"),
}


def __getattr__(name: str):
    for module, names in _MOVED.items():
        if name in names:
            return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
