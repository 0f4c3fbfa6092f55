"""Figures of a Chapter 3 fit: per-area predictivity by layer (Fig. 3.6 style) and the mapping comparison (Fig. 3.1).

Reference: thesis Figures 3.1 (inter-animal consistency per area under RSA, One-to-One, Ridge and PLS, with the
split-half reliability) and 3.6 (per area: median noise-corrected predictivity per model layer, with the
inter-animal consistency as a band). Drawn on matplotlib.figure.Figure objects, without pyplot (report.py), and
written atomically.
"""

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from goaldriven import atomic_write
from goaldriven.neural_fits.pipeline import mouse_tables

MAPPING_LABELS = {"rsa": "RSA", "one_to_one": "One-to-One", "ridge": "Ridge (alpha=1)", "pls": "PLS (25)"}


def plot_areas(summary: dict[str, Any], columns: dict[str, Any], path: str) -> None:
    """One panel per area: median +- s.e.m. noise-corrected predictivity per layer, the best layer marked, and the
    area's inter-animal consistency (median +- s.e.m.) as a grey band."""
    areas = sorted(summary["areas"], key=mouse_tables.area_rank)
    cols = min(3, len(areas))
    rows = int(np.ceil(len(areas) / cols))
    figure = Figure(figsize=(4.2 * cols, 3.4 * rows))
    axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).reshape(-1)
    for ax, area in zip(axes, areas):
        layers = summary["areas"][area]
        names = list(layers)
        med = [np.nanmean([t["noise_corrected"]["median"] for t in layers[n].values()]) for n in names]
        sem = [np.nanmean([t["noise_corrected"]["sem"] for t in layers[n].values()]) for n in names]
        ax.errorbar(range(len(names)), med, yerr=sem, marker="o", capsize=3, color="C0")
        entry = columns["areas"].get(area, {})
        if entry.get("best_layer") in names:
            k = names.index(entry["best_layer"])
            ax.plot([k], [med[k]], marker="*", markersize=14, color="C3", ls="none", label="best layer")
        ceiling = entry.get("inter_animal")
        if ceiling and np.isfinite(ceiling["median"]):
            low, high = ceiling["median"] - (ceiling["sem"] or 0), ceiling["median"] + (ceiling["sem"] or 0)
            ax.axhspan(low, high, color="0.6", alpha=0.4, lw=0, label="inter-animal")
        excluded = "" if entry.get("in_pooled", True) else " (not pooled)"
        ax.set_title(f"{area}{excluded}")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
        ax.grid(alpha=0.3)
    for ax in axes[len(areas) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("noise-corrected predictivity")
    axes[0].legend(frameon=False, fontsize=8)
    pooled = columns["pooled"]
    figure.suptitle(
        f"{columns['model']} ({columns['column']}): pooled median {pooled['median']:.3f} +- {pooled['sem']:.3f}"
    )
    figure.tight_layout()
    atomic_write.save_figure(figure, path, dpi=120, bbox_inches="tight")


def plot_mapping_comparison(comparison: dict[str, Any], path: str) -> None:
    """Grouped bars per area: the inter-animal consistency (median +- s.e.m.) under each mapping; black ticks: the
    median split-half reliability of the area's units."""
    names = list(comparison["mappings"])
    areas = sorted({a for name in names for a in comparison["mappings"][name]}, key=mouse_tables.area_rank)
    figure = Figure(figsize=(max(6.0, 1.3 * len(areas)), 4))
    ax = figure.subplots()
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        stats = [comparison["mappings"][name].get(a, {"median": np.nan, "sem": np.nan}) for a in areas]
        x = np.arange(len(areas)) + (i - (len(names) - 1) / 2) * width
        ax.bar(
            x,
            [s["median"] for s in stats],
            width,
            yerr=[s["sem"] if np.isfinite(s["sem"]) else 0 for s in stats],
            capsize=2,
            color=f"C{i}",
            label=MAPPING_LABELS.get(name, name),
        )
    reliability = [comparison["reliability"].get(a, {}).get("median", np.nan) for a in areas]
    ax.plot(np.arange(len(areas)), reliability, "k_", markersize=30, mew=2, label="split-half reliability")
    ax.set_xticks(range(len(areas)), areas)
    ax.set_ylabel("inter-animal consistency (median +- s.e.m.)")
    ax.set_title("inter-animal consistency by mapping (pooled source)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    atomic_write.save_figure(figure, path, dpi=120, bbox_inches="tight")
