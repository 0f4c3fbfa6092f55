"""The Chapter 4 fit of one environment: inter-animal consistency per transform (Fig. 4.1a), model predictivity per
layer with the final transform, the best layer, grid / border score distributions (KS) and the report files.

Reference: thesis Sections 4.3-4.4, 4.8.3-4.8.4 (spec ch3_ch4 B3-B4, ambiguities 31-38). A box environment uses the
2-D estimators (eq. 4.3-4.4, pooled source), a track the 1-D ones (eq. 4.1-4.2, split halves of each map's trials,
tanh before the median). Files written by `write_report` into a folder:

    mec_summary.json     options, medians and s.e.m. per transform and layer, best layer, model / ceiling ratio,
                         KS of grid and border scores, grid vs heterogeneous t-test (Fig. 4.1f)
    mec_units.csv        one row per recorded cell: recording, cell id, grid and border score, type, the
                         consistency per transform, the predictivity per layer
    fig4_1.png           mec_plots.figure_4_1; score_distributions.png: model vs data score CDFs (box only)
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Callable

import numpy as np
import scipy.stats

from goaldriven import atomic_write
from goaldriven.neural_fits.mec import consistency, plots, score_distributions, transforms
from goaldriven.neural_fits.mec.ratemap_file import Environment

# u: cells, p: model units, h/w: spatial bins


@dataclasses.dataclass(frozen=True)
class MECFit:
    """What a Chapter 4 fit computes.

    Attributes:
      transform: the model -> cell transform and the headline consistency transform (thesis: elasticnet_cv).
      consistency_transforms: transforms compared for inter-animal consistency (Fig. 4.1a); () skips the comparison
        (the headline transform is always computed).
      grid: ElasticNetCV grid, "full" (99 alphas x 100 l1 ratios, thesis) or "short" (9 x 10).
      train_fraction, n_splits: bins fitted per split (thesis 0.2) and splits (10).
      n_boot: split halves of the trials (1-D only; thesis 100). spearman_brown: SB on both 1-D denominator terms.
      seed: seed of the splits and halves. grid_method: "mean" (thesis) or "minmax" grid score.
      inter_animal_mode: 2-D source, "pooled" (thesis) or "pairwise" (Fig. 4.12 control); 1-D is always pairwise over
        the source maps.
    """

    transform: str = "elasticnet_cv"
    consistency_transforms: tuple[str, ...] = transforms.TRANSFORMS
    grid: str = "full"
    train_fraction: float = 0.2
    n_splits: int = 10
    n_boot: int = 100
    seed: int = 0
    spearman_brown: bool = True
    grid_method: str = "mean"
    inter_animal_mode: str = "pooled"

    def __post_init__(self):
        for name in (self.transform, *self.consistency_transforms):
            transforms.make(name, grid=self.grid)  # raises naming the choices
        if self.inter_animal_mode not in ("pooled", "pairwise"):
            raise ValueError(f'inter_animal_mode must be "pooled" or "pairwise"; received {self.inter_animal_mode!r}.')
        if not 0 < self.train_fraction < 1 or self.n_splits < 1 or self.n_boot < 1:
            raise ValueError(
                f"need 0 < train_fraction < 1, n_splits >= 1 and n_boot >= 1; received {self.train_fraction}, "
                f"{self.n_splits}, {self.n_boot}."
            )


@dataclasses.dataclass
class MECResult:
    summary: dict
    consistency: dict  # {transform: MECScores}
    predictivity: dict  # {layer: MECScores}
    data_scores: dict | None  # {"grid", "border"}: (u,) over the recorded cells (box)
    model_scores: dict | None  # of the best layer's units


def _inter_animal(env: Environment, name: str, spec: MECFit):
    make = transforms.factory(name, spec.grid)
    if env.kind == "box":
        return consistency.consistency_2d(
            env, make, spec.train_fraction, spec.n_splits, spec.seed, spec.inter_animal_mode
        )
    return consistency.consistency_1d(
        env, make, spec.train_fraction, spec.n_splits, spec.n_boot, spec.seed, spec.spearman_brown
    )


def _predictivity(maps: np.ndarray, env: Environment, spec: MECFit):
    make = transforms.factory(spec.transform, spec.grid)
    if env.kind == "box":
        return consistency.predictivity_2d(maps, env, make, spec.train_fraction, spec.n_splits, spec.seed)
    return consistency.predictivity_1d(
        maps, env, make, spec.train_fraction, spec.n_splits, spec.n_boot, spec.seed, spec.spearman_brown
    )


def _summary(scores, tanh: bool) -> dict:
    out = scores.summary(tanh=tanh)
    if scores.alpha is not None:
        out["median_alpha"] = float(np.nanmedian(scores.alpha))
        out["median_l1_ratio"] = float(np.nanmedian(scores.l1_ratio))
    if scores.n_used is not None:  # source units with a non-zero weight (Fig. 4.1e: fewer for grid cells)
        out["median_n_source_units"] = float(np.nanmedian(scores.n_used))
    return out


def fit_environment(
    env: Environment, model_maps: dict[str, np.ndarray] | None, spec: MECFit, log: Callable[[str], None] = print
) -> MECResult:
    """Runs the fit; `model_maps` {layer: (p, bins...)} model rate maps on the environment's bins (None: data only)."""
    tanh = env.kind == "track"
    label = " (tanh)" if tanh else ""
    names = list(dict.fromkeys((*spec.consistency_transforms, spec.transform)))
    iac = {}
    for name in names:
        iac[name] = _inter_animal(env, name, spec)
        log(f"mec: inter-animal consistency ({name}): median{label} {iac[name].summary(tanh)['median']:.3f}")
    pred = {}
    for layer, maps in (model_maps or {}).items():
        pred[layer] = _predictivity(maps, env, spec)
        median = pred[layer].summary(tanh)["median"]
        log(f"mec: model predictivity of layer {layer} ({spec.transform}): median{label} {median:.3f}")
    summary = {
        "environment": env.name,
        "kind": env.kind,
        "n_cells": int(sum(r.n_cells for r in env.recordings.values())),
        "n_recordings": len(env.recordings),
        "options": dataclasses.asdict(spec),
        "tanh": tanh,
        "inter_animal": {name: _summary(s, tanh) for name, s in iac.items()},
        "predictivity": {layer: _summary(s, tanh) for layer, s in pred.items()},
    }
    ceiling = summary["inter_animal"][spec.transform]["median"]
    if pred:
        best = max(pred, key=lambda k: np.nan_to_num(summary["predictivity"][k]["median"], nan=-np.inf))
        summary["best_layer"] = best
        summary["ratio_to_inter_animal"] = summary["predictivity"][best]["median"] / ceiling
    data_scores = model_scores = None
    if env.kind == "box":
        data_scores = score_distributions.map_scores(
            np.concatenate([r.rate_maps for r in env.recordings.values()]), spec.grid_method
        )
        types = score_distributions.cell_types(data_scores["grid"], data_scores["border"])
        summary["cell_types"] = {t: int((types == t).sum()) for t in ("grid", "border", "heterogeneous")}
        summary["grid_vs_heterogeneous"] = _type_test(iac[spec.transform].values, data_scores["grid"])
        if pred:
            model_scores = score_distributions.map_scores(model_maps[summary["best_layer"]], spec.grid_method)
            summary["ks"] = {k: _safe_compare(model_scores[k], data_scores[k]) for k in ("grid", "border")}
            log(f"mec: grid-score KS distance (best layer) {summary['ks']['grid'].get('ks', float('nan')):.3f}")
    return MECResult(summary, iac, pred, data_scores, model_scores)


def _safe_compare(model, data) -> dict:
    try:
        return score_distributions.compare(model, data)
    except ValueError as error:  # no finite scores on one side
        return {"error": str(error)}


def _type_test(values: np.ndarray, grid: np.ndarray) -> dict:
    """Independent t-test of the consistency of grid cells (grid score > 0.3) vs the rest (Fig. 4.1f)."""
    is_grid = np.nan_to_num(grid, nan=-np.inf) > score_distributions.GRID_THRESHOLD
    a, b = values[is_grid & np.isfinite(values)], values[~is_grid & np.isfinite(values)]
    out = {"n_grid": int(a.size), "n_other": int(b.size)}
    out["median_grid"] = float(np.median(a)) if a.size else float("nan")
    out["median_other"] = float(np.median(b)) if b.size else float("nan")
    if a.size >= 2 and b.size >= 2:
        test = scipy.stats.ttest_ind(a, b)
        out.update(t=float(test.statistic), p_value=float(test.pvalue))
    return out


def write_report(result: MECResult, folder: str) -> list[str]:
    """mec_summary.json, mec_units.csv and the figures into `folder`; returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "mec_summary.json"), os.path.join(folder, "mec_units.csv")]
    atomic_write.write_json(paths[0], result.summary)
    first = next(iter(result.consistency.values()))
    columns = {f"iac_{k}": v.values for k, v in result.consistency.items()}
    columns.update({f"pred_{k}": v.values for k, v in result.predictivity.items()})
    if result.data_scores is not None:
        columns = {"grid_score": result.data_scores["grid"], "border_score": result.data_scores["border"], **columns}
        types = score_distributions.cell_types(result.data_scores["grid"], result.data_scores["border"])
    with atomic_write.atomic_open(paths[1], "w") as f:
        writer = csv.writer(f)
        writer.writerow(["recording", "cell_id", *(["type"] if result.data_scores else []), *columns])
        for i, (rec, cell) in enumerate(zip(first.recordings, first.cell_ids)):
            kind = [types[i]] if result.data_scores else []
            writer.writerow([rec, cell, *kind, *(f"{v[i]:.5f}" for v in columns.values())])
    paths.append(os.path.join(folder, "fig4_1.png"))
    plots.figure_4_1(result, paths[-1])
    if result.model_scores is not None:
        paths.append(os.path.join(folder, "score_distributions.png"))
        plots.score_cdfs(result, paths[-1])
    return paths
