"""Per-unit correlations, their noise correction, and summaries over units (median, s.e.m., best layer).

Reference: A. Nayebi, PhD thesis (Stanford, 2022): Section 2.5.6 (eq. 2.15), Sections 3.6.2-3.6.3 (Spearman-Brown,
layer selection), Section 4.8.3 (tanh before median / s.e.m.).

    pearson:          Corr(a, b) = sum (a - mean a)(b - mean b) / sqrt(sum (a - mean a)^2 sum (b - mean b)^2),
                      per column, over the stimulus axis.
    Spearman-Brown:   SB_k(rho) = k rho / (1 + (k - 1) rho)           (k = 2: from half to all trials)
    noise-corrected:  Corr(r_hat, r) / sqrt(rho_n)                      (eq. 2.15; rho_n from reliability.py)
    summary:          median over units and s.e.m. = std(ddof=1) / sqrt(n), NaN ignored; optionally of tanh(values)
    split medians:    Brain-Score: mean over splits of the per-split median over units, error std(ddof=0) / sqrt(s)
    best layer:       per area, the layer of maximal median over units (ties: the earliest layer)
"""

from __future__ import annotations

import warnings

import numpy as np

# n: stimuli, u: units, t: time bins

_ZERO_STD_RTOL = 1e-10  # a column whose std is <= this fraction of its largest |value| has zero variance


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
    return centered_corr(ac, bc, axis, np.abs(a).max(axis=axis), np.abs(b).max(axis=axis))


def centered_corr(ac, bc, axis, scale_a, scale_b) -> np.ndarray:
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


def split_median_mean(per_split) -> dict:
    """Brain-Score's aggregation of per-split scores (s, u): the median over units of each split (NaN ignored), then
    their mean over splits; error = their std (ddof 0) / sqrt(splits). Splits without a median are left out.

    Returns dict(score=..., score_error=...) (NaN when no split has a median; error NaN for one split).
    """
    v = np.asarray(per_split, dtype=np.float64)
    if v.ndim != 2 or 0 in v.shape:
        raise ValueError(f"split_median_mean needs per-split scores (splits, units); received shape {v.shape}.")
    medians = _nanmedian(v, axis=1)
    medians = medians[np.isfinite(medians)]
    if not medians.size:
        return {"score": float("nan"), "score_error": float("nan")}
    error = float(medians.std() / np.sqrt(medians.size)) if medians.size > 1 else float("nan")
    return {"score": float(medians.mean()), "score_error": error}


def _nanmedian(v: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmedian without the all-NaN warning (an all-NaN slice gives NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(v, axis=axis))


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
