"""Per-unit correlations, stimulus splits, split-half reliability and summaries of neural scores.

Reference: A. Nayebi, PhD thesis (Stanford, 2022): Section 2.5.6 (reliability, eq. 2.15), Section 3.6.2-3.6.3
(Spearman-Brown corrected internal consistency), Section 4.8.3 (tanh before median / s.e.m.).

    pearson:          Corr(a, b) = sum (a - mean a)(b - mean b) / sqrt(sum (a - mean a)^2 sum (b - mean b)^2),
                      per column, over the stimulus axis.
    Spearman-Brown:   SB_k(rho) = k rho / (1 + (k - 1) rho)           (k = 2: from half to all trials)
    reliability:      rho_n = < SB( Corr(s_1, s_2) ) >_bootstraps       s_j = mean of the j-th random half of trials
    noise-corrected:  Corr(r_hat, r) / sqrt(rho_n)                      (eq. 2.15)
    summary:          median over units and s.e.m. = std(ddof=1) / sqrt(n), NaN ignored; optionally of tanh(values)

Trial halves (`trial_halves`) are drawn once per bootstrap and shared by every stimulus, unit and time bin, as in a
recording where one trial covers every unit and bin. With an odd number of trials r each bootstrap leaves out one
random trial, so both halves hold floor(r / 2) trials. Half averages are one matrix product with a (r, 2 * n_boot)
matrix of weights 1 / floor(r / 2), so split-half reliability is chunked over columns (units x bins) and bootstraps
and never copies the whole trial array (see `split_half_reliability` for the cost).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# n: stimuli, p: features, u: units, t: time bins, r: trials, b: bootstraps, g: stimulus groups (objects)

_ZERO_STD_RTOL = 1e-10  # a column whose std is <= this fraction of its largest |value| has zero variance


def as_rng(seed) -> np.random.Generator:
    """An explicit `np.random.Generator` from an int seed (or the Generator itself); None is refused."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(
            f"seed must be an int or a np.random.Generator (results must be reproducible); received {seed!r}."
        )
    return np.random.default_rng(int(seed))


def pearson(a, b, axis: int = 0) -> np.ndarray:
    """Pearson correlation of `a` and `b` along `axis` (the stimulus axis), one value per remaining index.

    Args:
        a, b: arrays of the same shape, e.g. (n, u) predictions and responses.
        axis: the axis the correlation runs over (stimuli).

    Returns:
        Array of `a.shape` without `axis`, float64 in [-1, 1]. A column with zero variance in `a` or `b` (exactly
        constant, or with std <= 1e-10 x its largest absolute value, i.e. constant up to rounding) gives NaN,
        not an arbitrary number; NaN inputs give NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"pearson needs two arrays of the same shape; received {a.shape} and {b.shape}.")
    if a.ndim == 0:
        raise ValueError("pearson needs arrays with a stimulus axis; received scalars.")
    axis = axis % a.ndim
    if a.shape[axis] < 2:
        raise ValueError(f"pearson needs >= 2 stimuli along axis {axis}; received shape {a.shape}.")
    ac = a - a.mean(axis=axis, keepdims=True)
    bc = b - b.mean(axis=axis, keepdims=True)
    return _centered_corr(ac, bc, axis, np.abs(a).max(axis=axis), np.abs(b).max(axis=axis))


def _centered_corr(ac, bc, axis, scale_a, scale_b) -> np.ndarray:
    """Pearson of already mean-centred arrays; NaN where a column's std <= 1e-10 x its scale (max |value|)."""
    ac, bc = np.moveaxis(ac, axis, 0), np.moveaxis(bc, axis, 0)
    n = ac.shape[0]
    saa = np.einsum("i...,i...->...", ac, ac)  # einsum reduces without a temporary product array
    sbb = np.einsum("i...,i...->...", bc, bc)
    sab = np.einsum("i...,i...->...", ac, bc)
    # Zero variance up to rounding: mean-centring a constant column leaves residuals of order eps * |value|.
    zero = (saa <= n * (_ZERO_STD_RTOL * scale_a) ** 2) | (sbb <= n * (_ZERO_STD_RTOL * scale_b) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sab / np.sqrt(saa * sbb)
    return np.where(zero, np.nan, np.clip(r, -1.0, 1.0))


def spearman_brown(r, factor: float = 2.0) -> np.ndarray:
    """Spearman-Brown prophecy SB_k(r) = k r / (1 + (k - 1) r); NaN where the denominator is 0 (r = -1/(k-1))."""
    if not factor > 0:
        raise ValueError(f"factor must be > 0 (the ratio of test lengths); received {factor!r}.")
    r = np.asarray(r, dtype=np.float64)
    den = 1.0 + (factor - 1.0) * r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den == 0, np.nan, factor * r / den)


_sb = spearman_brown  # the boolean `spearman_brown` arguments below shadow the function name


def noise_corrected(r, reliability) -> np.ndarray:
    """Eq. 2.15: r / sqrt(reliability), elementwise; NaN (not inf) where reliability <= 0 or is NaN."""
    r = np.asarray(r, dtype=np.float64)
    rel = np.asarray(reliability, dtype=np.float64)
    try:
        r, rel = np.broadcast_arrays(r, rel)
    except ValueError:
        raise ValueError(
            f"r and reliability must broadcast (one value per unit); received {r.shape} and {rel.shape}."
        ) from None
    ok = rel > 0
    return np.where(ok, r / np.sqrt(np.where(ok, rel, 1.0)), np.nan)


def summarize(values, tanh: bool = False, axis: int | None = None) -> dict:
    """Median and s.e.m. over units, ignoring NaN.

    Args:
        values: per-unit scores, e.g. (u,) or (u, t).
        tanh: pass the values through tanh first (ch4 Section 4.8.3: 1D scores can exceed 1).
        axis: None summarizes all values together; an int (e.g. 0 for (u, t)) gives one summary per remaining index.

    Returns:
        dict(median=..., sem=..., n=...): sem = std(ddof=1) / sqrt(n) over the n non-NaN values (NaN if n < 2);
        floats and an int for axis=None, arrays otherwise. Infinite values are kept (tanh maps them to +-1).
    """
    v = np.asarray(values, dtype=np.float64)
    if tanh:
        v = np.tanh(v)
    if axis is None:
        v, axis = v.reshape(-1), 0
    if v.ndim == 0 or v.shape[axis] == 0:
        raise ValueError(f"summarize needs at least one value along axis {axis}; received shape {v.shape}.")
    n = (~np.isnan(v)).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = np.where(np.isnan(v), 0.0, v)
        mean = filled.sum(axis=axis) / n
        dev = np.where(np.isnan(v), 0.0, v - np.expand_dims(mean, axis))
        sem = np.sqrt((dev**2).sum(axis=axis) / (n - 1)) / np.sqrt(n)
        sem = np.where(n >= 2, sem, np.nan)
    median = _nanmedian(v, axis)
    if median.ndim == 0:
        return {"median": float(median), "sem": float(sem), "n": int(n)}
    return {"median": median, "sem": sem, "n": n}


def _nanmedian(v: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmedian without the all-NaN warning (an all-NaN slice gives NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(v, axis=axis))


def stimulus_splits(n: int, train_fraction: float, n_splits: int, seed, groups=None) -> list:
    """Random train/test splits of n stimuli, stratified within groups (spec A-7: 75/25 within each object).

    Each split (and each group, if given) puts ceil(train_fraction * n_g) stimuli into train (at least 1 and at
    most n_g - 1, so every group has a test stimulus) and the rest into test, e.g. 60/20 for 80 images per object
    at 0.75, 59/59 for 118 images at 0.5, ceil(0.2 * n_bins) for ch4. Deterministic for a given seed.

    Args:
        n: number of stimuli.
        train_fraction: fraction in (0, 1) of each group used for training.
        n_splits: number of splits.
        seed: int or np.random.Generator.
        groups: optional (n,) labels (object ids); the split is drawn within each group.

    Returns:
        list of n_splits (train_idx, test_idx) pairs of sorted int64 index arrays.
    """
    if int(n) != n or n < 2:
        raise ValueError(f"n must be an integer >= 2 (stimuli to split); received {n!r}.")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1; received {train_fraction!r}.")
    if int(n_splits) != n_splits or n_splits < 1:
        raise ValueError(f"n_splits must be a positive integer; received {n_splits!r}.")
    rng = as_rng(seed)
    n = int(n)
    if groups is None:
        members = [np.arange(n)]
    else:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups must hold one label per stimulus, shape ({n},); received {groups.shape}.")
        _, inverse = np.unique(groups, return_inverse=True)
        members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
        small = [len(m) for m in members if len(m) < 2]
        if small:
            raise ValueError(
                f"every group needs >= 2 stimuli to have both train and test members; {len(small)} groups have 1. "
                "Merge small groups or split without groups."
            )
    n_train = [min(max(math.ceil(round(train_fraction * len(m), 9)), 1), len(m) - 1) for m in members]
    splits = []
    for _ in range(int(n_splits)):
        train, test = [], []
        for m, k in zip(members, n_train):
            perm = rng.permutation(m)
            train.append(perm[:k])
            test.append(perm[k:])
        splits.append((np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(test)).astype(np.int64)))
    return splits


def trial_halves(n_trials: int, n_boot: int, seed) -> np.ndarray:
    """Random split halves of the trial axis, one pair per bootstrap.

    Returns:
        (n_boot, 2, n_trials // 2) int64 trial indices; with odd n_trials the one trial left out of a bootstrap is
        random. Deterministic for a given seed.
    """
    if int(n_trials) != n_trials or n_trials < 2:
        raise ValueError(f"split halves need >= 2 trials; received n_trials={n_trials!r}.")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; received {n_boot!r}.")
    rng = as_rng(seed)
    h = int(n_trials) // 2
    perms = rng.permuted(np.tile(np.arange(int(n_trials)), (int(n_boot), 1)), axis=1)
    return perms[:, : 2 * h].reshape(int(n_boot), 2, h).astype(np.int64)


def half_weights(halves: np.ndarray, n_trials: int) -> np.ndarray:
    """(r, 2 b) weights whose column j < b averages half 1 of bootstrap j and column b + j its half 2."""
    n_boot, _, h = halves.shape
    w = np.zeros((2, n_boot, n_trials))
    for j in range(2):
        np.put_along_axis(w[j], halves[:, j, :], 1.0 / h, axis=1)
    return np.ascontiguousarray(w.reshape(2 * n_boot, n_trials).T)


def half_means(trials, halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half averages s_1, s_2 of (..., r) trials for every bootstrap: two float64 arrays (..., b)."""
    trials = np.asarray(trials)
    out = trials @ half_weights(halves, trials.shape[-1])  # (..., 2 b)
    b = halves.shape[0]
    return out[..., :b], out[..., b:]


def split_half_reliability(trials, n_boot: int, seed, spearman_brown: bool = True, chunk_bytes: int = 2**28):
    """Split-half internal consistency per unit (ch2 Section 8.6 / eq. 2.15's rho_n; ch3 Section 3.6.3).

    For each bootstrap, the trials are split into two random halves (the same halves for every stimulus, unit and
    time bin; one random trial is left out when r is odd), each half is averaged, the Pearson correlation over
    stimuli of the two half averages is Spearman-Brown corrected (if `spearman_brown`) and the bootstraps are
    averaged (bootstraps giving NaN, e.g. a half with zero variance, are skipped; all NaN gives NaN).

    Cost: one BLAS product of (n * columns, r) by (r, b) per chunk (even r: s_2 = 2 mean - s_1; odd r: (r, 2 b)),
    i.e. ~2 r flops per stimulus x column x bootstrap, plus three einsum reductions. Measured: 2.4 s for 5120
    stimuli x 256 columns x 50 trials x 64 bootstraps on 2 busy CPU cores, so (5120, 256, 25, 50) with 900
    bootstraps takes ~15 min. Memory beyond the input: about `chunk_bytes` (columns are copied to float64 one
    chunk at a time) plus the (r, 2 b) weights; the trial array is never copied whole (a non-contiguous input is
    reshaped, which may copy it once).

    Args:
        trials: (n, u, r) or (n, u, t, r) responses; any float dtype.
        n_boot: number of bootstrap split halves (thesis: 900 in ch2, 100 in ch3/4).
        seed: int or np.random.Generator; the same seed draws the same halves as `trial_halves`.
        spearman_brown: apply SB (factor 2) to each bootstrap's correlation.
        chunk_bytes: working-memory budget of one chunk.

    Returns:
        (u,) or (u, t) float64 reliabilities.
    """
    trials = np.asarray(trials)
    if trials.ndim not in (3, 4):
        raise ValueError(f"trials must be (n, u, r) or (n, u, t, r); received shape {trials.shape}.")
    halves = trial_halves(trials.shape[-1], n_boot, seed)
    return reliability_from_halves(trials, halves, spearman_brown=spearman_brown, chunk_bytes=chunk_bytes)


def reliability_from_halves(trials, halves: np.ndarray, spearman_brown: bool = True, chunk_bytes: int = 2**28):
    """`split_half_reliability` with given (b, 2, h) halves (shared with the predictivity estimators)."""
    trials = np.asarray(trials)
    n, r = trials.shape[0], trials.shape[-1]
    if n < 3:
        raise ValueError(f"reliability needs >= 3 stimuli (Pearson over stimuli); received shape {trials.shape}.")
    halves = np.asarray(halves)
    if halves.ndim != 3 or halves.shape[1] != 2 or halves.size == 0 or halves.min() < 0 or halves.max() >= r:
        raise ValueError(f"halves must be (b, 2, h) trial indices in [0, {r}); received shape {halves.shape}.")
    # When every bootstrap's halves partition the trials, s_2 = 2 mean - s_1 halves the matrix product.
    partition = 2 * halves.shape[2] == r and np.array_equal(
        np.sort(halves.reshape(len(halves), r), axis=1), np.broadcast_to(np.arange(r), (len(halves), r))
    )
    flat = trials.reshape(n, -1, r)  # (n, m, r); a view for C-contiguous input
    m, n_boot = flat.shape[1], halves.shape[0]
    weights = half_weights(halves, r)  # (r, 2 b)
    boot_chunk = min(n_boot, 64)
    col_chunk = max(1, int(chunk_bytes // (8 * n * (r + 8 * boot_chunk))))
    total = np.zeros(m)
    count = np.zeros(m)
    for c0 in range(0, m, col_chunk):
        block = np.array(flat[:, c0 : c0 + col_chunk, :], dtype=np.float64)  # (n, cu, r), a copy
        cu = block.shape[1]
        scale = np.abs(block).max(axis=(0, 2))[:, None]  # (cu, 1) >= max |half average|
        # Centre over stimuli once: half averages are linear in the trials, so they come out centred too.
        block -= block.mean(axis=0, keepdims=True)
        twice_mean = 2.0 * block.mean(axis=2, keepdims=True) if partition else None  # (n, cu, 1)
        block2d = block.reshape(n * cu, r)
        for b0 in range(0, n_boot, boot_chunk):
            b1 = min(b0 + boot_chunk, n_boot)
            if partition:
                s1 = (block2d @ weights[:, b0:b1]).reshape(n, cu, b1 - b0)
                s2 = twice_mean - s1
            else:
                w = np.concatenate([weights[:, b0:b1], weights[:, n_boot + b0 : n_boot + b1]], axis=1)
                out = (block2d @ w).reshape(n, cu, 2 * (b1 - b0))  # one BLAS product for both halves
                s1, s2 = out[..., : b1 - b0], out[..., b1 - b0 :]
            rho = _centered_corr(s1, s2, 0, scale, scale)  # (cu, cb)
            if spearman_brown:
                rho = _sb(rho)
            ok = ~np.isnan(rho)
            total[c0 : c0 + cu] += np.where(ok, rho, 0.0).sum(axis=1)
            count[c0 : c0 + cu] += ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return mean.reshape(trials.shape[1:-1])


def select_layers(scores: dict) -> tuple[dict, dict]:
    """Best model layer per area: the maximum over layers of the median over units (ch3 Section 3.6.2).

    Args:
        scores: {layer: {area: per-unit scores}} in layer order (earliest first); NaN units are ignored.

    Returns:
        (best, medians): best = {area: layer}, ties going to the earliest layer (an area whose medians are all NaN
        gets None); medians = {layer: {area: median}}.
    """
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {layer: {area: per-unit scores}}.")
    layers = list(scores)
    areas = list(scores[layers[0]])
    for layer in layers:
        if not isinstance(scores[layer], dict) or set(scores[layer]) != set(areas):
            got = list(scores[layer]) if isinstance(scores[layer], dict) else type(scores[layer]).__name__
            raise ValueError(f"every layer must score the same areas {areas}; layer {layer!r} has {got}.")
    medians = {layer: {area: summarize(scores[layer][area])["median"] for area in areas} for layer in layers}
    best = {}
    for area in areas:
        best[area], top = None, -np.inf
        for layer in layers:  # strict > keeps the earliest layer on ties
            if medians[layer][area] > top:
                best[area], top = layer, medians[layer][area]
    return best, medians
