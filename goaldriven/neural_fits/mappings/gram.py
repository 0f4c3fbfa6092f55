"""Centred Gram products of feature matrices, and features stood for by the Gram of all stimuli (GramFeatures).

Reference: thesis Sections 2.5.6 and 3.6.2 (PLS and ridge fits over many splits of the same stimuli): a kernel
mapping needs only K = X_c X_c' (n, n) and K* = X*_c X_c' (m, n), X_c the features centred on the training mean.
From the Gram G of all N stimuli (computed once), the centred Grams of any split follow without the features:
with train rows T, test rows E, r = G_TT 1 / n, e = G_ET 1 / n, g = 1'G_TT 1 / n^2,
    K = G_TT - 1r' - r1' + g 11',   K* = G_ET - 1r' - e1' + g 11'.
The products run in float64 over blocks of `block` feature columns (float32 features are never copied whole).
"""

# n: train stimuli, m: test stimuli, N: all stimuli, p: features, k: right-hand sides
import numpy as np
import scipy.linalg

from goaldriven.neural_fits.mappings.base import DEFAULT_BLOCK, check_x


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


class GramCache:
    """The Gram matrix of all stimuli, computed once; centred train / test-train Grams of any split from it.

    x (N, p), float32 or float64, is centred on its global mean (which makes the float64 accumulation better
    conditioned; train centring is shift-invariant) and multiplied in blocks of `block` columns.
    """

    def __init__(self, x=None, block: int = DEFAULT_BLOCK, *, gram=None, n_features: int | None = None):
        if gram is not None:  # a Gram computed elsewhere (streamed from disk: LayerFeatures.streamed_gram)
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
