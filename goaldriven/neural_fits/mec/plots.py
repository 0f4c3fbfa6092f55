"""Figures of a Chapter 4 fit, in the style of thesis Fig. 4.1 (and the score-distribution comparison of Fig. 4.3).

Fig. 4.1 panels drawn here: (a) median +- s.e.m. inter-animal consistency per transform, with the model's best layer;
(b) model predictivity per layer against the inter-animal band; (c) alphas chosen by Lasso-CV and Ridge-CV; (d) L1
ratios chosen by ElasticNet-CV; (e) chosen L1 ratio against grid score; (f) consistency of grid cells vs the rest.
Panels without data (e.g. no CV transform) say so. matplotlib Figure objects, no pyplot, written atomically as PNG.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from goaldriven import atomic_write
from goaldriven.neural_fits.mec import score_distributions, transforms

LABELS = {
    "one_to_one": "One-to-One",
    "lasso": "Lasso a=1",
    "elasticnet": "Lasso-Ridge a=1",
    "ridge": "Ridge a=1",
    "lasso_cv": "Lasso-CV",
    "ridge_cv": "Ridge-CV",
    "elasticnet_cv": "ElasticNet-CV",
    "pls": "PLS",
}


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def figure_4_1(result, path: str) -> None:
    """The six panels of the module docstring for a fit.MECResult."""
    s, tanh = result.summary, result.summary["tanh"]
    figure = Figure(figsize=(15, 8.4))
    ax = figure.subplots(2, 3).reshape(-1)
    names = [n for n in transforms.TRANSFORMS if n in s["inter_animal"]]
    med = [s["inter_animal"][n]["median"] for n in names]
    sem = [np.nan_to_num(s["inter_animal"][n]["sem"]) for n in names]
    ax[0].bar(range(len(names)), med, yerr=sem, capsize=3, color="0.6")
    ax[0].set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=40, ha="right", fontsize=8)
    if "best_layer" in s:
        best = s["predictivity"][s["best_layer"]]
        ax[0].axhline(best["median"], color="C3", ls="--", label=f"model ({s['best_layer']})")
        ax[0].legend(fontsize=8)
    ax[0].set_ylabel("median consistency" + (" (tanh)" if tanh else ""))
    ax[0].set_title(f"(a) inter-animal consistency, {s['environment']}")
    if s["predictivity"]:
        layers = list(s["predictivity"])
        ax[1].errorbar(
            range(len(layers)),
            [s["predictivity"][k]["median"] for k in layers],
            yerr=[np.nan_to_num(s["predictivity"][k]["sem"]) for k in layers],
            marker="o",
            capsize=3,
        )
        ceiling = s["inter_animal"][s["options"]["transform"]]
        ax[1].axhspan(
            ceiling["median"] - np.nan_to_num(ceiling["sem"]),
            ceiling["median"] + np.nan_to_num(ceiling["sem"]),
            color="0.85",
            label="inter-animal",
        )
        ax[1].set_xticks(range(len(layers)), layers)
        ax[1].legend(fontsize=8)
        ax[1].set_title(f"(b) model predictivity ({LABELS[s['options']['transform']]})")
    else:
        _empty(ax[1], "(b) no model")
    drawn = False
    for name, color in (("lasso_cv", "C0"), ("ridge_cv", "C1")):
        scores = result.consistency.get(name)
        if scores is not None and scores.alpha is not None:
            ax[2].hist(
                np.log10(scores.alpha[np.isfinite(scores.alpha)]), bins=20, alpha=0.6, color=color, label=LABELS[name]
            )
            drawn = True
    if drawn:
        ax[2].set_xlabel("log10 chosen alpha")
        ax[2].legend(fontsize=8)
        ax[2].set_title("(c) regularisation chosen by CV")
    else:
        _empty(ax[2], "(c) no Lasso-CV / Ridge-CV")
    enet = result.consistency.get("elasticnet_cv")
    if enet is not None and enet.l1_ratio is not None:
        ax[3].hist(enet.l1_ratio[np.isfinite(enet.l1_ratio)], bins=np.linspace(0, 1, 21), color="C2")
        ax[3].set_xlabel("chosen L1 ratio (0: ridge, 1: lasso)")
        ax[3].set_title("(d) ElasticNet-CV sparsity")
    else:
        _empty(ax[3], "(d) no ElasticNet-CV (2-D)")
    if enet is not None and enet.l1_ratio is not None and result.data_scores is not None:
        ax[4].scatter(result.data_scores["grid"], np.nanmean(enet.l1_ratio, axis=0), s=8)
        ax[4].axvline(score_distributions.GRID_THRESHOLD, color="0.5", ls=":")
        ax[4].set_xlabel("grid score")
        ax[4].set_ylabel("mean chosen L1 ratio")
        ax[4].set_title("(e) sparsity vs grid score")
    else:
        _empty(ax[4], "(e) needs ElasticNet-CV on a box")
    test = s.get("grid_vs_heterogeneous")
    if test and result.data_scores is not None:
        values = result.consistency[s["options"]["transform"]].values
        is_grid = np.nan_to_num(result.data_scores["grid"], nan=-np.inf) > score_distributions.GRID_THRESHOLD
        groups = [values[is_grid & np.isfinite(values)], values[~is_grid & np.isfinite(values)]]
        ax[5].boxplot([g if g.size else [np.nan] for g in groups])
        ax[5].set_xticks([1, 2], [f"grid (n={groups[0].size})", f"heterogeneous (n={groups[1].size})"])
        p = test.get("p_value")
        ax[5].set_title("(f) consistency by cell type" + (f", t-test p={p:.2g}" if p is not None else ""))
    else:
        _empty(ax[5], "(f) needs grid scores (box)")
    figure.tight_layout()
    atomic_write.save_figure(figure, path, dpi=110)


def score_cdfs(result, path: str) -> None:
    """Empirical CDFs of the grid and border scores: recorded cells vs the model's best layer, with the KS distance."""
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, 2)
    for ax, key, threshold in (
        (axes[0], "grid", score_distributions.GRID_THRESHOLD),
        (axes[1], "border", score_distributions.BORDER_THRESHOLD),
    ):
        for label, values, color in (("data", result.data_scores[key], "k"), ("model", result.model_scores[key], "C3")):
            v = np.sort(values[np.isfinite(values)])
            if v.size:
                ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", color=color, label=f"{label} (n={v.size})")
        ax.axvline(threshold, color="0.5", ls=":")
        ks = result.summary.get("ks", {}).get(key, {})
        title = f"{key} score" + (f": KS {ks['ks']:.2f}, p={ks['p_value']:.2g}" if "ks" in ks else "")
        ax.set_title(title)
        ax.set_ylabel("cumulative fraction")
        ax.legend(fontsize=8)
    figure.tight_layout()
    atomic_write.save_figure(figure, path, dpi=110)
