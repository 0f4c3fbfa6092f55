"""The interface every mapping shares (fit / predict / fit_predict_many), its input checks and capability flags.

References: thesis Sections 2.5.6, 3.6.2 and 4.8.3 (the mappings of mappings/__init__.py); spec ch2 8.7, ch3 A2.5.

Every mapping has fit(x, y) -> self, predict(x) -> (n, u) and fit_predict_many(x_train, ys, x_test), which fits one
independent mapping per target array and shares the x-side work (Gram matrices, factorisations). Class attributes
tell the fit pipeline which feature views a mapping takes (pipeline/feature_store.py):
    accepts_gram   x may also be GramRows of one GramFeatures (gram.py): the N x N Gram of all stimuli, computed
                   once and shared by every split, bootstrap half and target group (PLS, ridge)
    needs_maps     x must be unflattened feature maps (n, [t,] h, w, c), one mapping for every time bin (the
                   factored readout); such a mapping cannot map one animal's units to another's
    costly_fit     one fit is a training run: score it with one fit per split (noise_correction="reliability")
and `min_features` is the fewest feature columns a fit needs (PLS: its n_components), so a pipeline can refuse a too
small source population before it starts fitting.
"""

# n: stimuli, p: features, u: units, m: test stimuli
import numpy as np

DEFAULT_BLOCK = 2048  # feature columns per float64 block of the Gram accumulations (n x 2048 x 8 bytes)


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


def split_targets(preds: np.ndarray, ys: list[np.ndarray]) -> list[np.ndarray]:
    """(m, sum u_i) predictions of targets solved together -> one (m, u_i) array per target array of `ys`."""
    return np.split(preds, np.cumsum([y.shape[1] for y in ys])[:-1], axis=1)


class Mapper:
    """Base class: validation, the fitted check and the default fit_predict_many (a loop over fit/predict).

    Subclasses implement `_fit(x, y)` and `_predict(x)` on validated 2-D float arrays and may override
    `_fit_predict_many(x_train, ys, x_test)` to share the x-side work across targets.
    """

    min_samples = 2
    min_features = 1
    accepts_gram = False
    needs_maps = False
    costly_fit = False

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
