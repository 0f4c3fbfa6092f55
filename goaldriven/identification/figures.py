"""Chapter 6 identification figures (thesis Figs. 6.4-6.11; spec ch5_ch6 Section 11.7) from `protocols` results.

Each function takes the result dict of the matching protocol and writes one PNG atomically (matplotlib's Figure API,
no global backend): accuracy bars per classifier x measure with s.e.m. and chance (6.4a, 6.9b), confusion matrices
(6.4c), Gini importances per statistic (6.5), held-out bars (6.4b, 6.10, 6.11), trajectory subsampling curves and the
portion-transfer matrix (6.6), unit-subsampling x noise heatmaps (6.7).
"""

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from goaldriven import atomic_write
from goaldriven.identification import dataset

_MEASURE_COLORS = {"weights": "tab:blue", "activations": "tab:orange", "activity_change": "tab:green",
                   "all": "tab:gray", "position": "tab:purple"}  # fmt: skip


def _measure_of(statistic: str) -> str:
    for measure, prefix in dataset.MEASURE_PREFIXES.items():
        if statistic.startswith(prefix):
            return measure
    return "position" if statistic == "position" else "all"


def _chance(ax, chance):
    if chance is not None:
        ax.axhline(chance, color="k", linestyle="--", linewidth=1, label=f"chance {chance:.0%}")


def _save(fig, path):
    fig.tight_layout()
    atomic_write.save_figure(fig, path, dpi=100)


def _bars(ax, groups: dict, chance, title, ylabel="test accuracy"):
    """groups: {group label: {bar label: {'mean', 'sem'}}}: grouped bars, one color per bar label."""
    labels = list(dict.fromkeys(bar for bars in groups.values() for bar in bars))
    width = 0.8 / max(len(labels), 1)
    for j, label in enumerate(labels):
        x = [i + (j - (len(labels) - 1) / 2) * width for i in range(len(groups))]
        means = [groups[g][label]["mean"] if label in groups[g] else np.nan for g in groups]
        sems = [groups[g][label]["sem"] if label in groups[g] else 0.0 for g in groups]
        ax.bar(x, means, width, yerr=sems, capsize=3, label=label, color=_MEASURE_COLORS.get(label))
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _chance(ax, chance)
    ax.legend(fontsize=7)


def accuracy_bars(results: dict, path: str, title: str = "learning-rule identification (10 splits)") -> None:
    """results: `protocols.per_measure` output {classifier: {measure: {mean, sem, chance}}} (Fig. 6.4a)."""
    chance = next((r["chance"] for by in results.values() for r in by.values()), None)
    fig = Figure(figsize=(2.2 + 1.6 * len(results), 3.5))
    _bars(fig.subplots(), results, chance, title)
    _save(fig, path)


def confusion_matrices(results: dict, path: str) -> None:
    """results: {panel title: {confusion (R, R) counts, rules}}: row-normalized matrices (Fig. 6.4c)."""
    fig = Figure(figsize=(3.2 * len(results), 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(results)))
    for ax, (title, result) in zip(axes, results.items()):
        counts = np.asarray(result["confusion"], np.float64)
        rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
        rules = result["rules"]
        ax.set_xticks(range(len(rules)), rules, fontsize=8)
        ax.set_yticks(range(len(rules)), rules, fontsize=8)
        for (i, j), rate in np.ndenumerate(rates):
            ax.text(j, i, f"{rate:.2f}", ha="center", va="center", fontsize=7, color="w" if rate > 0.5 else "k")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
    _save(fig, path)


def importances(importances_: dict, path: str, title: str = "random forest Gini importance") -> None:
    """importances_: {statistic: importance summed over the trajectory, 'position': one-hot} (Fig. 6.5), sorted."""
    names = sorted(importances_, key=importances_.get)
    fig = Figure(figsize=(6, 0.25 * len(names) + 1.2))
    ax = fig.subplots()
    ax.barh(range(len(names)), [importances_[n] for n in names], color=[_MEASURE_COLORS[_measure_of(n)] for n in names])
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("importance (sum over time)")
    ax.set_title(title)
    _save(fig, path)


def holdout_bars(results: dict, path: str, reference: dict | None = None) -> None:
    """results: {group: {measure: `protocols.holdout` output}} for one classifier (Figs. 6.4b, 6.10, 6.11).

    One panel per group, bars per held-out value and measure; `reference` {measure: {mean, sem}} (e.g. the random
    split accuracy) is drawn as a dotted line per measure.
    """
    groups = {g: by for g, by in results.items() if any("held_out" in r for r in by.values())}
    if not groups:
        raise ValueError("holdout_bars: every group was skipped (a group needs two or more values)")
    fig = Figure(figsize=(5 * len(groups), 3.5))
    axes = np.atleast_1d(fig.subplots(1, len(groups)))
    for ax, (group, by_measure) in zip(axes, groups.items()):
        bars, chance = {}, None
        for measure, result in by_measure.items():
            for value, held in result.get("held_out", {}).items():
                bars.setdefault(value, {})[measure] = held
                chance = held["chance"]
        _bars(ax, bars, chance, f"held-out {group}")
        for measure, ref in (reference or {}).items():
            ax.axhline(ref["mean"], color=_MEASURE_COLORS.get(measure), linestyle=":", linewidth=1)
    _save(fig, path)


def subsampling_curves(results: dict, path: str, portions: dict | None = None) -> None:
    """results: `protocols.trajectory_subsampling` output: accuracy vs sample count per regime (Fig. 6.6a);
    portions: optional {label: `protocols.portion_transfer` output} drawn as train x test heatmaps (Fig. 6.6b)."""
    portions = portions or {}
    fig = Figure(figsize=(4.5 + 3.2 * len(portions), 3.5))
    axes = np.atleast_1d(fig.subplots(1, 1 + len(portions)))
    chance = None
    for regime, result in results.items():
        counts = sorted(result["counts"], key=int)
        means = [result["counts"][c]["mean"] for c in counts]
        sems = [result["counts"][c]["sem"] for c in counts]
        chance = next((result["counts"][c]["chance"] for c in counts), chance)
        axes[0].errorbar([int(c) for c in counts], means, yerr=sems, marker="o", capsize=3,
                         label=f"{regime} ({result['period']} epochs)")  # fmt: skip
    axes[0].set_xlabel("samples in the trajectory")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0, 1.05)
    _chance(axes[0], chance)
    axes[0].legend(fontsize=7)
    for ax, (label, result) in zip(axes[1:], portions.items()):
        mean = np.asarray(result["mean"])
        image = ax.imshow(mean, vmin=0, vmax=1, cmap="viridis")
        for (i, j), value in np.ndenumerate(mean):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w" if value < 0.6 else "k")
        ax.set_xticks(range(len(mean)))
        ax.set_yticks(range(len(mean)))
        ax.set_xlabel("test portion")
        ax.set_ylabel("train portion")
        ax.set_title(f"{label} ({result['samples_per_portion']} samples each)", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, path)


def noise_heatmaps(results: dict, path: str, title: str = "") -> None:
    """results: `protocols.unit_subsampling` output: per measure, accuracy over unit fraction x noise (Fig. 6.7)."""
    measures = list(results["mean"])
    fig = Figure(figsize=(3.6 * len(measures), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(measures)))
    cmap = matplotlib.colormaps["magma"]
    for ax, measure in zip(axes, measures):
        grid = np.array([[np.nan if v is None else v for v in row] for row in results["mean"][measure]], np.float64)
        image = ax.imshow(grid, vmin=0, vmax=1, cmap=cmap, aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="w" if value < 0.6 else "k")
        ax.set_xticks(range(len(results["noises"])), [f"{n:g}" for n in results["noises"]], fontsize=7)
        ax.set_yticks(range(len(results["fractions"])), [f"{100 * f:.3g}%" for f in results["fractions"]], fontsize=7)
        ax.set_xlabel("noise sigma")
        ax.set_ylabel("units kept")
        ax.set_title(f"{title} {measure}".strip(), fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    _save(fig, path)
