"""Figures of the path-integration evaluation (PNG via matplotlib Figure objects: no pyplot, no global backend)."""

# u: units, h/w: spatial bins, b: batch, t: time
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from goaldriven.spatial import scores as spatial_scores


def best_grid_units(
    maps: np.ndarray, scores: dict[str, np.ndarray], path: str, *, n: int = 16, title: str = ""
) -> None:
    """Rate maps (u, h, w) of the n units with the highest 60-degree grid score, with their scores."""
    order = np.argsort(-np.nan_to_num(scores["score60"], nan=-np.inf))[:n]
    cols = int(np.ceil(np.sqrt(len(order))))
    rows = int(np.ceil(len(order) / cols))
    fig = Figure(figsize=(2.0 * cols, 2.2 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, unit in zip(axes.flat, order):
        ax.imshow(maps[unit], origin="lower", cmap="jet", interpolation="nearest")
        ax.set_title(f"unit {unit}\ngrid {scores['score60'][unit]:.2f} border {scores['border'][unit]:.2f}", fontsize=7)
    fig.suptitle(title or "best grid units", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def track_ratemaps(maps: np.ndarray, path: str, *, n: int = 16) -> None:
    """1-D rate maps (u, w) along the track: the first n units, each scaled to its own maximum."""
    fig = Figure(figsize=(6.0, 0.45 * min(n, len(maps)) + 0.8))
    ax = fig.subplots()
    for row, curve in enumerate(maps[:n]):
        peak = np.nanmax(np.abs(curve)) if np.isfinite(curve).any() else 0.0
        ax.plot(row + 0.9 * (curve / peak if peak > 0 else curve), color="k", lw=1)
    ax.set_xlabel("position bin along the track")
    ax.set_ylabel("unit")
    ax.set_title("rate maps along the track", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def score_histograms(
    scores: dict[str, np.ndarray], path: str, *, grid_threshold: float, border_threshold: float
) -> None:
    """Histograms of the grid (60 and 90 degree) and border scores of all units, thresholds marked."""
    fig = Figure(figsize=(11, 3.2))
    axes = fig.subplots(1, 3)
    for ax, key, label, threshold in (
        (axes[0], "score60", "grid score (60 deg)", grid_threshold),
        (axes[1], "score90", "grid score (90 deg)", None),
        (axes[2], "border", "border score", border_threshold),
    ):
        values = scores[key][np.isfinite(scores[key])]
        ax.hist(values, bins=40, color="0.35")
        if threshold is not None:  # Fraction of all units; a NaN score (no field, flat map) counts as not above.
            above = spatial_scores.fraction_above(scores[key], threshold)
            ax.axvline(threshold, color="tab:red", ls="--", lw=1)
            ax.set_title(f"{label}: {above:.1%} > {threshold}", fontsize=9)
        else:
            ax.set_title(label, fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel("units")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def decoded_trajectories(example: dict[str, np.ndarray], box_width: float, path: str) -> None:
    """True (solid) and decoded (dashed) positions (b, t, 2) of a few evaluation episodes."""
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots()
    half = box_width / 2
    ax.plot([-half, half, half, -half, -half], [-half, -half, half, half, -half], color="k", lw=1)
    colors = matplotlib.colormaps["tab10"](np.arange(len(example["position"])))
    for true, decoded, color in zip(example["position"], example["decoded"], colors):
        ax.plot(true[:, 0], true[:, 1], color=color, lw=1.5)
        ax.plot(decoded[:, 0], decoded[:, 1], color=color, lw=1, ls="--", marker=".", ms=3)
    ax.set_aspect("equal")
    ax.set_xlim(-half * 1.05, half * 1.05)
    ax.set_ylim(-half * 1.05, half * 1.05)
    ax.set_title("true (solid) and decoded (dashed) paths", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def knockouts(results: dict[str, Any], path: str) -> None:
    """Degradation of cell-type knockouts against random heterogeneous knockouts of as many units."""
    rows = results["rows"]
    fig = Figure(figsize=(max(4.0, 1.4 * len(rows)), 3.4))
    ax = fig.subplots()
    for i, row in enumerate(rows):
        ax.bar(i - 0.2, 100 * row["degradation"], width=0.4, color="tab:blue" if row["kind"] == "grid" else "tab:green")
        draws = 100 * np.asarray(row["heterogeneous_degradations"], float)
        if len(draws):
            ax.bar(i + 0.2, draws.mean(), width=0.4, color="0.6", yerr=draws.std(), capsize=3)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(
        [f"{r['kind']} > {r['threshold']:g}\n({r['fraction_units']:.0%} units)" for r in rows], fontsize=8
    )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("degradation (%)")
    ax.set_title("knockouts: cell type (colour) vs heterogeneous (grey)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
