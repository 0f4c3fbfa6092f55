"""Grid and border scores of rate maps, cell types, and the two-sample Kolmogorov-Smirnov distance between the
score distributions of a model and of the recorded cells.

Reference: thesis Sections 4.4 and 4.8.4 (spec ch3_ch4 B3, ambiguity 34): grid cell = grid score > 0.3, border cell =
border score > 0.5, heterogeneous = neither; the model's scores are taken at its layer of maximum median
predictivity, over all its units, against all recorded cells of the environment (NaN scores, maps without a field,
are left out of both samples). The thesis reports the negative KS distance (higher = closer) and whether the two
samples are distinguishable at the 0.05 level.

    D = sup_x |F_model(x) - F_data(x)|     (F = empirical CDFs; the sup is attained at a sample point)
"""

from __future__ import annotations

import numpy as np
import scipy.stats

from goaldriven.spatial import scores as spatial_scores

# u: units or cells, h/w: spatial bins

GRID_THRESHOLD = spatial_scores.GRID_THRESHOLD
BORDER_THRESHOLD = spatial_scores.BORDER_THRESHOLD


def map_scores(maps: np.ndarray, grid_method: str = "mean") -> dict[str, np.ndarray]:
    """{"grid": (u,), "border": (u,)} scores of (u, h, w) rate maps (goaldriven.spatial.scores; NaN = undefined)."""
    maps = np.asarray(maps, np.float64)
    return {
        "grid": spatial_scores.grid_scores(maps, method=grid_method)["score60"],
        "border": spatial_scores.border_scores(maps),
    }


def cell_types(grid: np.ndarray, border: np.ndarray) -> np.ndarray:
    """(u,) "grid" (grid score > 0.3), "border" (border score > 0.5, not grid) or "heterogeneous"."""
    g = np.nan_to_num(np.asarray(grid, float), nan=-np.inf) > GRID_THRESHOLD
    b = np.nan_to_num(np.asarray(border, float), nan=-np.inf) > BORDER_THRESHOLD
    return np.where(g, "grid", np.where(b, "border", "heterogeneous"))


def ks_distance(a, b) -> float:
    """Two-sample KS statistic sup |F_a - F_b| of the finite values of a and b (computed here, not by scipy)."""
    a, b = (np.sort(np.asarray(v, float)[np.isfinite(v)]) for v in (a, b))
    if not a.size or not b.size:
        raise ValueError(f"KS distance needs finite values in both samples; received {a.size} and {b.size}.")
    points = np.concatenate([a, b])
    fa = np.searchsorted(a, points, side="right") / a.size
    fb = np.searchsorted(b, points, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def compare(model_scores, data_scores, alpha: float = 0.05) -> dict:
    """KS distance, its negative (the thesis' "higher is better"), the exact/asymptotic two-sided p-value
    (scipy.stats.ks_2samp, method "auto") and whether the samples are distinguishable at `alpha`."""
    d = ks_distance(model_scores, data_scores)
    a, b = (np.asarray(v, float)[np.isfinite(v)] for v in (model_scores, data_scores))
    p = float(scipy.stats.ks_2samp(a, b).pvalue)
    return {
        "ks": d,
        "neg_ks": -d,
        "p_value": p,
        "distinguishable": bool(p < alpha),
        "n_model": a.size,
        "n_data": b.size,
    }
