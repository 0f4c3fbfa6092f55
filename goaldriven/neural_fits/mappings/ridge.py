"""Ridge regression with intercept, primal or dual, or from the shared Gram of all stimuli.

References: thesis Sections 3.3 and 3.6.2 (Ridge alpha = 1 for inter-animal consistency), 4.8.3; spec ch3 A2.5.

    w = argmin |Y_c - X_c w|^2 + alpha |w|^2  (sklearn Ridge(alpha, fit_intercept=True): x and y centred on the
    training means). Primal (X_c'X_c + alpha I) w = X_c'Y_c when p <= n, dual w = X_c'(X_c X_c' + alpha I)^-1 Y_c
    when p > n; one Cholesky factor serves every target.
"""

# n: stimuli, p: features, u: units, m: test stimuli
import numpy as np
import scipy.linalg

from goaldriven.neural_fits.mappings.base import DEFAULT_BLOCK, Mapper, check_ys, split_targets
from goaldriven.neural_fits.mappings.gram import GramRows, centred_dot, centred_grams, centred_t_dot


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

    accepts_gram = True

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
        return split_targets(preds, ys)

    def _fit_predict_many(self, x_train, ys, x_test):
        # independent per unit, so all targets are one multi-column solve with one factorisation
        preds = self._solve(x_train, np.concatenate(ys, axis=1), x_test)
        return split_targets(preds, ys)
