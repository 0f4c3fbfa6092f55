"""One-to-one mapping: each target unit is predicted by its single most correlated source column.

References: thesis Sections 3.6.2 and 4.3 (One-to-One, compared with Ridge and PLS-25 for inter-animal consistency).
"""

# n: stimuli, p: features, u: units, m: test stimuli
import numpy as np

from goaldriven.neural_fits.mappings.base import DEFAULT_BLOCK, Mapper, split_targets


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
        return split_targets(self._predict(x_test), ys)
