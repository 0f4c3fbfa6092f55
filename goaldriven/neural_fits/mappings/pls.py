"""Partial least squares regression (PLS2, NIPALS, regression deflation) in kernel form, fast for p >> n.

Reference: thesis Sections 2.5.6 (Fig. 2.12a) and 3.6.2: PLS regression with 25 components, the lab's sklearn
`PLSRegression(n_components=25, scale=False)` (spec ch2 8.7, ch3 A2.5). This module returns that estimator's
predictions (same power iteration, same stopping rule, same deflation) from n x n Gram matrices instead of the
(n, p) feature matrix, so p = 50000 features cost one Gram product and each fit costs O(n^2 u).

Notation: X (n, p) and Y (n, u) the training features and targets centred on their training means (not scaled),
K = X X' (n, n). Component k = 1..K works on the residuals X_k, Y_k (X_1 = X, Y_1 = Y), K_k = X_k X_k',
M_k = Y_k' K_k Y_k (u, u):
    sklearn's NIPALS: y score Y_k c, x weights w = X_k' Y_k c / |X_k' Y_k c|, next c ~ Y_k' X_k w ~ M_k c, from
        c = e_j (first non-constant column of Y_k) until |w_i - w_(i-1)|^2 < tol (|X_k'Y_k c|^2 = c'M_k c, so the
        whole iteration runs on the u x u matrix M_k; it converges to the dominant eigenvector of M_k)
    scores      t_k = X_k w_k = K_k Y_k c / sqrt(c'M_k c)
    loadings    q_k = Y_k' t_k / t_k't_k
    deflation   Y_(k+1) = Y_k - t_k q_k',  K_(k+1) = P K_k P,  P = I - t_k t_k' / t_k't_k
G_k = K_k Y_k is kept up to date by a rank-two update (s = K_k t_k = (I - sum_(j<k) t_j t_j'/t_j't_j) K t_k,
g = Y_k' s, b = t_k's), and so is M_k = Y_k' G_k (recomputed when its trace drifts from sum(Y_k * G_k)):
    G_(k+1) = K_(k+1) Y_(k+1) = G_k - s q_k' - t_k (g - b q_k)' / t_k't_k
    M_(k+1) = M_k - g q_k' - q_k g' + b q_k q_k'
Prediction: with a_k = Y_k c / sqrt(c'M_k c) (so w_k = X' a_k), the test scores are t*_k = K* beta_k with
    beta_k = a_k - sum_(j<k) beta_j (K t_j)'a_k / t_j't_j,   K* = (x* - x_mean) X'
    Y* = y_mean + K* B,  B = sum_k beta_k q_k'   (= sklearn's (x* - x_mean) W (P'W)^-1 Q')
Centred Grams from the Gram G of all stimuli (GramCache), train rows T, test rows E, r = G_TT 1/n, e = G_ET 1/n,
g = 1'G_TT 1/n^2:  K = G_TT - 1r' - r1' + g 11',  K* = G_ET - 1r' - e1' + g 11'.

Edge cases: n_components > min(n_train, p) raises (as sklearn). A component whose score has |t|^2 <=
RANK_RTOL * trace(K) (the centred features are exhausted: n_components >= their rank, at most n_train - 1) or whose
Y residual is zero ends the fit with a warning; the predictions use the components found (sklearn stops on a zero Y residual too,
but for exhausted features returns numerically meaningless components). Constant target columns are predicted
by their training mean (as in sklearn).
"""

# n: train stimuli, m: test stimuli, p: features, u: units, K: components
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from goaldriven.neural_fits.mappings.base import DEFAULT_BLOCK, Mapper, check_x, check_ys
from goaldriven.neural_fits.mappings.gram import GramCache, GramRows, centred_dot, centred_grams, centred_t_dot

RANK_RTOL = 1e-10
_DRIFT_RTOL = 1e-9
_EPS = np.finfo(np.float64).eps


def _nipals_direction(m: np.ndarray, start: int, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
    """y-score coefficients c (u,) where sklearn's power iteration stops, run on M = Y'KY; and its iteration count."""
    c = np.zeros(m.shape[0])
    c[start] = 1.0
    if m.shape[0] == 1:  # sklearn: one iteration for a single target (exact)
        return c, 1
    mc, cmc = m[:, start].copy(), m[start, start]
    c_prev, cmc_prev = None, None  # the previous iterate (sklearn's x_weights_old)
    for i in range(max_iter):
        if c_prev is not None:
            cos = (c_prev @ mc) / np.sqrt(cmc_prev * cmc)
            if 2.0 - 2.0 * cos < tol:  # |w_i - w_(i-1)|^2 of unit x weights
                return c, i + 1
        if i == max_iter - 1:
            break
        c_prev, cmc_prev = c, cmc
        c = mc / np.linalg.norm(mc)
        mc = m @ c
        cmc = c @ mc
    warnings.warn("PLS: maximum number of iterations reached", ConvergenceWarning, stacklevel=4)
    return c, max_iter


def _stop(k: int, why: str) -> None:
    warnings.warn(
        f"PLS: {why} at component {k}; using {k} components. Lower n_components to silence this.", stacklevel=4
    )


def pls_dual(kmul, trace: float, yc: np.ndarray, n_components: int, max_iter: int = 500, tol: float = 1e-6):
    """Kernel PLS on centred targets yc (n, u) with K given by `kmul(v) = K v` (v (n, k)); `trace` = trace(K).

    Returns (B (n, u) with predictions y_mean + K* B, components used, NIPALS iterations per component).
    """
    n, u = yc.shape
    y = np.array(yc, dtype=np.float64)
    y[:, np.ptp(y, axis=0) == 0] = 0.0  # constant targets: prediction = mean
    g = kmul(y)  # (n, u) K_k Y_k
    m = y.T @ g
    m = (m + m.T) / 2  # (u, u) M_k
    ts, kts, betas = np.zeros((n, n_components)), np.zeros((n, n_components)), np.zeros((n, n_components))
    qs, dd, iters = np.zeros((u, n_components)), np.zeros(n_components), []
    for k in range(n_components):
        zero = np.all(np.abs(y) < 10 * _EPS, axis=0)  # sklearn zeroes numerically empty residual columns
        y[:, zero], g[:, zero], m[zero], m[:, zero] = 0.0, 0.0, 0.0, 0.0
        live = np.any(np.abs(y) > _EPS, axis=0)
        if not live.any():
            _stop(k, "the y residual is constant")  # as sklearn
            break
        live = np.flatnonzero(live & (np.diag(m) > 0))
        c, n_iter = _nipals_direction(m, live[0], max_iter, tol) if live.size else (None, 0)
        lam = c @ m @ c if live.size else 0.0
        t = (g @ c) / np.sqrt(lam) if lam > 0 else np.zeros(n)  # (n,) scores
        d = t @ t
        if not d > RANK_RTOL * trace:
            _stop(k, "the centred features are exhausted (their rank is below n_components)")
            break
        a = (y @ c) / np.sqrt(lam)  # (n,) x weights w = X' a
        kt = kmul(t[:, None])[:, 0]  # (n,) K t
        s = kt - ts[:, :k] @ ((ts[:, :k].T @ kt) / dd[:k])  # K_k t
        betas[:, k] = a - betas[:, :k] @ ((kts[:, :k].T @ a) / dd[:k])
        q = (y.T @ t) / d
        gt, b = g.T @ t, t @ s
        y -= np.outer(t, q)
        g -= np.outer(s, q) + np.outer(t, (gt - b * q) / d)
        m += b * np.outer(q, q) - np.outer(gt, q) - np.outer(q, gt)
        exact = np.vdot(y, g)  # trace(Y_k' G_k): when the update has drifted from it (cancellation as Y_k -> 0),
        if abs(np.trace(m) - exact) > _DRIFT_RTOL * abs(exact):  # recompute M exactly (n u^2)
            m = y.T @ g
            m = (m + m.T) / 2
        ts[:, k], kts[:, k], qs[:, k], dd[k] = t, kt, q, d
        iters.append(n_iter)
    used = len(iters)
    return betas[:, :used] @ qs[:, :used].T, used, iters


def _check_components(n_components: int, n: int, p: int) -> None:
    if n_components > min(n, p):
        raise ValueError(
            f"n_components={n_components} exceeds min(n_train, n_features) = min({n}, {p}); reduce n_components."
        )


def _explicit(kernel: np.ndarray):
    return lambda v: kernel @ v


class PLSRegression(Mapper):
    """sklearn PLSRegression(n_components, scale=False) predictions, computed in kernel form (see module doc).

    Args:
        n_components: PLS components (25 in the thesis).
        max_iter, tol: sklearn's NIPALS power-iteration limits (same defaults, same stopping rule).
        method: "dual" (n x n Gram), "primal" (K v = X (X'v), no Gram) or "auto" (dual iff p > n).
        block: feature columns per float64 block when forming Grams (bounds memory for float32 inputs).
    Attributes after fit: x_mean_ (p,), y_mean_ (u,), coef_ (p, u), n_components_ (components used), n_iter_.
    """

    accepts_gram = True

    def __init__(
        self,
        n_components: int = 25,
        max_iter: int = 500,
        tol: float = 1e-6,
        method: str = "auto",
        block: int = DEFAULT_BLOCK,
    ):
        if int(n_components) != n_components or n_components < 1:
            raise ValueError(f"n_components must be a positive integer. Received: {n_components}")
        if method not in ("auto", "dual", "primal"):
            raise ValueError(f"method must be 'auto', 'dual' or 'primal'. Received: {method!r}")
        self.n_components, self.max_iter, self.tol = int(n_components), int(max_iter), float(tol)
        self.method, self.block = method, int(block)

    @property
    def min_features(self) -> int:
        """Components are extracted from the features: at least n_components columns (base.Mapper)."""
        return self.n_components

    def _dual(self, n: int, p: int) -> bool:
        return self.method == "dual" or (self.method == "auto" and p > n)

    def _kernels(self, x_train, x_test):
        """(kmul, trace, cross(B) -> K* B or None, x_mean) for centred train features and optional test rows."""
        if self._dual(*x_train.shape):
            gram, cross, mean = centred_grams(x_train, x_test, self.block)
            return _explicit(gram), np.trace(gram), (None if cross is None else cross.__matmul__), mean
        mean = x_train.mean(axis=0, dtype=np.float64)
        xc = x_train - mean  # (n, p) float64, p <= n
        xtc = None if x_test is None else x_test - mean
        kmul = lambda v: xc @ (xc.T @ v)
        return kmul, float((xc**2).sum()), (None if xtc is None else lambda b: xtc @ (xc.T @ b)), mean

    def _run(self, kmul, trace, y):
        y_mean = y.mean(axis=0)
        dual, self.n_components_, self.n_iter_ = pls_dual(
            kmul, trace, y - y_mean, self.n_components, self.max_iter, self.tol
        )
        return dual, y_mean

    def _fit(self, x, y):
        _check_components(self.n_components, *x.shape)
        kmul, trace, _, self.x_mean_ = self._kernels(x, None)
        dual, self.y_mean_ = self._run(kmul, trace, y)
        self.coef_ = centred_t_dot(x, self.x_mean_, dual, self.block)  # X' B (p, u)

    def _predict(self, x):
        return centred_dot(x, self.x_mean_, self.coef_, self.block) + self.y_mean_

    def fit_predict_many(self, x_train, ys_train, x_test) -> list[np.ndarray]:
        """As Mapper.fit_predict_many; x_train / x_test may also be GramRows of one GramFeatures (Gram reused)."""
        if not isinstance(x_train, GramRows):
            return super().fit_predict_many(x_train, ys_train, x_test)
        kernel, cross = x_train.split(x_test)
        ys = check_ys(ys_train, kernel.shape[0])
        _check_components(self.n_components, *x_train.shape)
        trace = np.trace(kernel)
        return [cross @ dual + y_mean for dual, y_mean in (self._run(_explicit(kernel), trace, y) for y in ys)]

    def _fit_predict_many(self, x_train, ys, x_test):
        _check_components(self.n_components, *x_train.shape)
        kmul, trace, cross, _ = self._kernels(x_train, x_test)  # shared by all targets
        preds = []
        for y in ys:
            dual, y_mean = self._run(kmul, trace, y)
            preds.append(cross(dual) + y_mean)
        return preds


def pls_splits(
    x,
    y,
    splits,
    n_components: int = 25,
    *,
    max_iter: int = 500,
    tol: float = 1e-6,
    block: int = DEFAULT_BLOCK,
    verbose: bool = False,
) -> list[np.ndarray]:
    """PLS fit on each split's train rows and predicted on its test rows: list of (m_s, u) predictions.

    Equal to `PLSRegression(n_components, scale=False).fit(x[tr], y[tr]).predict(x[te])` of sklearn per split.
    x (N, p), y (N, u), splits: list of (train indices, test indices). When p > N the N x N Gram is computed once
    and shared by all splits; otherwise each split uses the primal form.
    """
    x = check_x(x)
    y = check_x(y, "y").astype(np.float64)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same number of stimuli. Received x {x.shape}, y {y.shape}")
    mapper = PLSRegression(n_components, max_iter=max_iter, tol=tol, block=block)
    began = time.perf_counter()
    if x.shape[1] <= x.shape[0]:
        out = []
        for i, (tr, te) in enumerate(splits):
            out.append(mapper.fit_predict_many(x[tr], [y[tr]], x[te])[0])
            if verbose:
                print(f"  pls split {i + 1}/{len(splits)}: {time.perf_counter() - began:.1f} s", flush=True)
        return out
    cache = GramCache(x, block)
    if verbose:
        print(f"  gram {x.shape[0]}x{x.shape[0]} from p={x.shape[1]}: {time.perf_counter() - began:.1f} s", flush=True)
    out = []
    for i, (tr, te) in enumerate(splits):
        _check_components(n_components, len(tr), x.shape[1])
        kernel, cross = cache.split(tr, te)
        y_mean = y[tr].mean(axis=0)
        dual, _, _ = pls_dual(_explicit(kernel), np.trace(kernel), y[tr] - y_mean, n_components, max_iter, tol)
        out.append(cross @ dual + y_mean)
        if verbose:
            print(f"  pls split {i + 1}/{len(splits)}: {time.perf_counter() - began:.1f} s", flush=True)
    return out
