"""Files of an OST fit: per-image OSTs, the consistency summary and the model-versus-IT OST scatter (thesis Figs. 2.3,
2.8).

  ost_images.csv     one row per image: stimulus_id, object, behavioral_dprime, it_dprime_defined, it_ost_ms, and per
                     variant ost_<variant> (OST from the d' averaged over the splits in which the image was tested;
                     empty when unsolved or never tested)
  ost_summary.json   the layers (and how they were chosen), the bin -> layer assignment per variant, and per variant
                     the consistency: mean +- s.e.m. of Spearman rho over the splits (the thesis' numbers), the
                     per-split rho, images solved by both and the fraction of IT-solved images solved, and the pooled
                     rho over all images
  ost_scatter.png    pooled model OST against IT OST over the images solved by both, one panel per variant
Every file is written atomically; figures are drawn without pyplot.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from goaldriven import atomic_write

FILES = ("ost_images.csv", "ost_summary.json", "ost_scatter.png")


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def summary(fit, config=None) -> dict[str, Any]:
    """The JSON-ready summary of an OSTFit (module docstring); `config` is the OSTFitConfig used, if given."""
    variants = {}
    for name, result in fit.variants.items():
        variants[name] = {
            "consistency_mean": _num(result.mean),
            "consistency_sem": _num(result.sem),
            "consistency_per_split": [_num(r) for r in result.rho],
            "n_common_per_split": result.n_common.tolist(),
            "fraction_it_solved_per_split": [_num(f) for f in result.fraction_solved],
            "pooled_consistency": _num(result.pooled.rho),
            "pooled_n_common": int(result.pooled.n_common),
            "pooled_fraction_it_solved": _num(result.pooled.fraction_solved),
            "model_solved_images": int(np.isfinite(result.pooled_ost).sum()),
        }
    out = {
        "layers": list(fit.layers),
        "model_kind": "recurrent (one-to-one steps)" if fit.recurrent else "feedforward (layers mapped to bins)",
        "layer_selection": fit.selection or "given (--ost_layers)",
        "bin_ms": fit.bin_ms.tolist(),
        "bin_times": fit.targets.bin_times,
        "assignment": fit.assignment,
        "variants": variants,
        "images": {
            "total": int(fit.stimulus_ids.size),
            "evaluation (IT d' defined)": int(fit.targets.evaluation_images.size),
            "pls_training (IT d' undefined)": int(fit.targets.pls_training_images.size),
            "it_solved": int(np.isfinite(fit.targets.it_ost_ms).sum()),
        },
    }
    if config is not None:
        out["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()}
    return out


def write_images_csv(fit, path: str) -> None:
    names = list(fit.variants)
    columns = ["stimulus_id", "object", "behavioral_dprime", "it_dprime_defined", "it_ost_ms"]
    columns += [f"ost_{name}" for name in names]
    t = fit.targets
    with atomic_write.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, sid in enumerate(fit.stimulus_ids):
            row = [sid, fit.labels[i], t.behavioral_dprime[i], int(t.it_dprime_defined[i]), t.it_ost_ms[i]]
            row += [fit.variants[name].pooled_ost[i] for name in names]
            writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v for v in row])


def plot_scatter(fit, path: str) -> None:
    """Pooled model OST versus IT OST per variant (images solved by both), titled with the consistency."""
    names = list(fit.variants)
    cols = min(len(names), 2)
    rows = (len(names) + cols - 1) // cols
    figure = Figure(figsize=(4 * cols, 3.6 * rows))
    axes = np.atleast_1d(figure.subplots(rows, cols, squeeze=False)).ravel()
    it = fit.targets.it_ost_ms
    for ax, name in zip(axes, names):
        result = fit.variants[name]
        both = np.isfinite(result.pooled_ost) & np.isfinite(it)
        ax.scatter(it[both], result.pooled_ost[both], s=10, alpha=0.6)
        lo, hi = fit.bin_ms[0], fit.bin_ms[-1] + 10.0
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1, ls="--")
        ax.set_title(
            f"{name}: rho {result.mean:.3f} +- {result.sem:.3f}\n(pooled {result.pooled.rho:.3f}, "
            f"{result.pooled.n_common} images)",
            fontsize=9,
        )
        ax.set_xlabel("IT OST (ms)")
        ax.set_ylabel("model OST (ms)")
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    figure.tight_layout()
    atomic_write.save_figure(figure, path, dpi=120, bbox_inches="tight")


def write_all(fit, folder: str, config=None) -> list[str]:
    """Writes ost_images.csv, ost_summary.json and ost_scatter.png into `folder`; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, name) for name in FILES]
    write_images_csv(fit, paths[0])
    atomic_write.write_json(paths[1], summary(fit, config))
    plot_scatter(fit, paths[2])
    return paths
