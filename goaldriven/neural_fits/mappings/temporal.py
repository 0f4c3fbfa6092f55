"""Temporal wrappers: (n, t, *features) features to (n, u, t) responses with any mapping of mappings/.

References: thesis Fig. 2.12a (temporally varying: PLS-25 per 10 ms bin) and eq. 2.13 (temporally fixed: one
mapping shared by all time bins); spec ch2 8.7.

    varying   y[:, :, b] ~ mapper_b(x[:, b])           one independent mapping per chosen bin b
    fixed     y[i, :, b] ~ mapper(x[i, b]) for all (i, b)   one mapping over (stimulus, bin) samples
"""

# n: stimuli, p: features, u: units, t: time bins
import numpy as np

from goaldriven.neural_fits.mappings import make_mapping


def _check_temporal(x, y=None, bins=None):
    """Validates x (n, t_x, *features) [and y (n, u, t)]; t_x must equal t, or be 1 (the same features for every
    bin, e.g. a feedforward model's constant stream). Returns (x, y, the bins used)."""
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if len(x.shape) < 3:
        raise ValueError(
            f"x must be (stimuli, time bins, features...); add a bin axis (x[:, None]). Received {x.shape}"
        )
    if y is None:
        return x, None, None
    y = np.asarray(y)
    if y.ndim != 3:
        raise ValueError(f"y must be (stimuli, units, time bins). Received shape {y.shape}")
    if x.shape[0] != y.shape[0] or x.shape[1] not in (1, y.shape[2]):
        raise ValueError(
            f"x (n, t, ...) and y (n, u, t) need the same stimuli and the same number of time bins (or x with 1 bin). "
            f"Received x {x.shape}, y {y.shape}"
        )
    t = y.shape[2]
    chosen = np.arange(t) if bins is None else np.asarray(bins)
    if chosen.ndim != 1 or not chosen.size or not np.issubdtype(chosen.dtype, np.integer) or np.any(chosen < -t):
        raise ValueError(f"bins must be a non-empty list of time-bin indices in [0, {t}). Received: {bins}")
    if np.any(chosen >= t):
        raise ValueError(f"bins must be a non-empty list of time-bin indices in [0, {t}). Received: {bins}")
    return x, y, chosen % t


class _Temporal:
    """Shared parts of the temporal wrappers; `mapper_factory` is a zero-argument callable or a MAPPINGS name."""

    def __init__(self, mapper_factory, bins=None):
        if isinstance(mapper_factory, str):
            name = mapper_factory
            mapper_factory = lambda: make_mapping(name)
        if not callable(mapper_factory):
            raise TypeError(f"mapper_factory must be a callable returning a mapper. Received {mapper_factory!r}")
        self.mapper_factory, self.bins = mapper_factory, None if bins is None else list(bins)

    def _check_x_test(self, x, fitted_attr=None):
        if fitted_attr is not None and not hasattr(self, fitted_attr):
            raise ValueError(f"this {type(self).__name__} is not fitted yet; call fit(x_train, y_train) first.")
        x, _, _ = _check_temporal(x)
        if x.shape[1] != self.x_bins_:
            raise ValueError(f"x has {x.shape[1]} time bins but the mapping was fit on x with {self.x_bins_}.")
        return x

    def _x_bin(self, x, b):
        return x[:, 0 if x.shape[1] == 1 else b]


class TemporallyVarying(_Temporal):
    """One mapping per time bin (thesis Fig. 2.12a: PLS-25 per 10 ms bin): x (n, t, *f), y (n, u, t).

    `bins` (indices) restricts the fit to those bins; predictions are (n, u, len(bins)) in that order. x with one
    bin (n, 1, *f) is used for every bin; fit_predict_many then fits all bins of all targets in one call of the inner
    mapper's fit_predict_many (one Gram for everything).
    """

    def fit(self, x, y):
        x, y, self.bins_ = _check_temporal(x, y, self.bins)
        self.x_bins_ = x.shape[1]
        self.mappers_ = [self.mapper_factory().fit(self._x_bin(x, b), y[:, :, b]) for b in self.bins_]
        return self

    def predict(self, x) -> np.ndarray:
        x = self._check_x_test(x, "mappers_")
        return np.stack([m.predict(self._x_bin(x, b)) for m, b in zip(self.mappers_, self.bins_)], axis=2)

    def fit_predict_many(self, x_train, ys_train, x_test) -> list[np.ndarray]:
        checked = [_check_temporal(x_train, y, self.bins) for y in ys_train]
        if not checked:
            raise ValueError("ys_train is empty; pass at least one (n, u, t) target array.")
        x_train, bins = checked[0][0], checked[0][2]
        self.bins_, self.x_bins_ = bins, x_train.shape[1]
        x_test = self._check_x_test(x_test)
        ys = [c[1] for c in checked]
        if x_train.shape[1] == 1:
            flat = self.mapper_factory().fit_predict_many(
                x_train[:, 0], [y[:, :, b] for y in ys for b in bins], x_test[:, 0]
            )
            return [np.stack(flat[i * len(bins) : (i + 1) * len(bins)], axis=2) for i in range(len(ys))]
        per_bin = [
            self.mapper_factory().fit_predict_many(x_train[:, b], [y[:, :, b] for y in ys], x_test[:, b]) for b in bins
        ]
        return [np.stack([p[i] for p in per_bin], axis=2) for i in range(len(ys))]


class TemporallyFixed(_Temporal):
    """One mapping shared by all time bins (thesis eq. 2.13): samples are (stimulus, bin) pairs stacked stimulus-
    major, x (n, t, *f) -> (n t', *f), y (n, u, t) -> (n t', u) over the chosen `bins` (t' of them); predictions are
    (n, u, t'). x with one bin is repeated for every bin."""

    def _stack_x(self, x):
        x = np.asarray(x)[:, self.bins_ if x.shape[1] > 1 else [0] * len(self.bins_)]  # (n, t', *f)
        return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])

    def _stack_y(self, y):
        y = y[:, :, self.bins_].transpose(0, 2, 1)  # (n, t', u)
        return y.reshape(-1, y.shape[2])

    def _unstack(self, pred, n):
        return pred.reshape(n, len(self.bins_), -1).transpose(0, 2, 1)

    def fit(self, x, y):
        x, y, self.bins_ = _check_temporal(x, y, self.bins)
        self.x_bins_ = x.shape[1]
        self.mapper_ = self.mapper_factory().fit(self._stack_x(x), self._stack_y(y))
        return self

    def predict(self, x) -> np.ndarray:
        x = self._check_x_test(x, "mapper_")
        return self._unstack(self.mapper_.predict(self._stack_x(x)), x.shape[0])

    def fit_predict_many(self, x_train, ys_train, x_test) -> list[np.ndarray]:
        checked = [_check_temporal(x_train, y, self.bins) for y in ys_train]
        if not checked:
            raise ValueError("ys_train is empty; pass at least one (n, u, t) target array.")
        self.bins_, self.x_bins_ = checked[0][2], checked[0][0].shape[1]
        x_test = self._check_x_test(x_test)
        preds = self.mapper_factory().fit_predict_many(
            self._stack_x(checked[0][0]), [self._stack_y(c[1]) for c in checked], self._stack_x(x_test)
        )
        return [self._unstack(p, x_test.shape[0]) for p in preds]
