"""Inter-animal consistency and model predictivity of MEC rate maps on spatial bins (thesis eq. 4.1-4.4).

Reference: thesis Sections 4.3, 4.8.3 (spec ch3_ch4 B4.1-B4.3, ambiguities 36, 38). Stimuli are spatial bins; a
split fits on a random `train_fraction` of the bins (thesis 20%) and tests on the rest (10 splits). Bins that are NaN
(unvisited) in any source or target column are dropped jointly before the splits are drawn. Corr = Pearson r over
the test bins, per target cell.

2-D (no repeated trials, eq. 4.3 / 4.4), per target cell of recording B, averaged over the splits:
    IAC_2D   = < Corr(M(s_train^Â; s_train^B)_test, s_test^B) >     Â = pooled source: every cell of every recording
                                                                     of another animal (concatenated)
    Pred_2D  = < Corr(M(r_train; s_train^B)_test, s_test^B) >       r = model rate maps, M fit per recording B

1-D (repeated trials, eq. 4.1 / 4.2), per target cell, averaged over splits, bootstrapped split halves (the trials of
each map halved at random), source maps (every map A^{m_j} of every recording of another animal, pairwise) and the
cell's maps m_i:
    IAC_1D   = < Corr(M(s1^A; s1^B), s2^B) / sqrt( SB(Corr(M(s1^A; s1^B), M(s2^A; s2^B))) x SB(Corr(s1^B, s2^B)) ) >
    Pred_1D  = < Corr(M(r; s1^B), s2^B)    / sqrt( SB(Corr(M(r; s1^B), M(r; s2^B)))       x SB(Corr(s1^B, s2^B)) ) >
with SB(rho) = 2 rho / (1 + rho); a bootstrap with a denominator term <= 0 is skipped. For eq. 4.2 the thesis'
average over source animals is read as the average over splits, bootstraps and the target's maps (ambiguity 38).
Values can exceed 1: summaries pass them through tanh (Fig. 4.2b). In every 1-D fit the target columns are all maps
of the recording's cells, labelled by cell, so the CV transforms choose one hyperparameter per cell, the best
averaged across its maps (transforms.GroupedElasticNetCV, "average across maps").

`make_mapper(groups=None)` returns a fresh transform (transforms.factory); the 1-D estimators pass `groups`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from goaldriven.neural_fits.mec import transforms
from goaldriven.neural_fits.mec.ratemap_file import Environment, MECDataError
from goaldriven.neural_fits.metrics import correlation
from goaldriven.neural_fits.metrics.splits import as_rng, half_means, stimulus_splits, trial_halves

# n: bins, p: source units / model features, u: target cells, m: maps, r: trials, b: bootstraps, s: splits

MIN_VALID_BINS = 10


@dataclasses.dataclass
class MECScores:
    """Per target cell (concatenated over recordings in file order): `values` (u,), `per_split` (s, u), the
    `recordings` and `cell_ids` (u,), and for CV transforms (2-D) the chosen `alpha`, `l1_ratio` and the number of
    source units with non-zero weight `n_used`, each (s, u)."""

    values: np.ndarray
    per_split: np.ndarray
    recordings: np.ndarray
    cell_ids: np.ndarray
    alpha: np.ndarray | None = None
    l1_ratio: np.ndarray | None = None
    n_used: np.ndarray | None = None

    def summary(self, tanh: bool = False) -> dict:
        """Median and s.e.m. over cells (NaN ignored); tanh first for 1-D scores."""
        return correlation.summarize(self.values, tanh=tanh)


def _flat(maps: np.ndarray) -> np.ndarray:
    """(u, bins...) -> (n, u)."""
    return np.asarray(maps, np.float64).reshape(maps.shape[0], -1).T


def _valid(*arrays: np.ndarray) -> np.ndarray:
    """(n,) bins finite in every column (and trial) of every (n, ...) array."""
    return np.all([np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1) for a in arrays], axis=0)


def _splits(valid: np.ndarray, train_fraction: float, n_splits: int, seed: int, where: str) -> list:
    n = int(valid.sum())
    if n < MIN_VALID_BINS:
        raise MECDataError(
            f"{where}: only {n} bins are visited by every source and target cell (need {MIN_VALID_BINS}); drop "
            "cells with many unvisited bins."
        )
    return stimulus_splits(n, train_fraction, n_splits, seed)


def _sources(env: Environment, target: str) -> list[str]:
    out = [name for name in env.recordings if env.animal_of(name) != env.animal_of(target)]
    if not out:
        raise MECDataError(
            f"environment {env.name!r}: recording {target!r} has no recording of another animal as source."
        )
    return out


def _fit_splits(make_mapper: Callable, x: np.ndarray, y: np.ndarray, splits: list) -> dict:
    """Held-out Pearson r (s, u) of a mapping fit per split, and what CV transforms chose."""
    out = {k: np.full((len(splits), y.shape[1]), np.nan) for k in ("r", "alpha", "l1_ratio", "n_used")}
    for i, (train, test) in enumerate(splits):
        mapper = make_mapper()
        pred = mapper.fit(x[train], y[train]).predict(x[test])
        out["r"][i] = correlation.pearson(pred, y[test])
        for key, value in transforms.chosen_hyperparameters(mapper).items():
            out[key][i] = value
        used = transforms.n_source_units_used(mapper)
        if used is not None:
            out["n_used"][i] = used
    return out


def _collect(env: Environment, per_target: dict) -> MECScores:
    names = list(per_target)
    cat = lambda key: np.concatenate([per_target[t][key] for t in names], axis=1)  # noqa: E731
    per_split = cat("r")
    values = _nanmean(per_split, axis=0)
    recs = np.concatenate([[t] * env.recordings[t].n_cells for t in names])
    ids = np.concatenate([env.recordings[t].cell_ids for t in names])
    extra = {k: cat(k) for k in ("alpha", "l1_ratio", "n_used")}
    extra = {k: (v if np.isfinite(v).any() else None) for k, v in extra.items()}
    return MECScores(values, per_split, recs, ids, **extra)


def _nanmean(a: np.ndarray, axis) -> np.ndarray:
    """Mean of the finite entries along `axis` (NaN where there are none)."""
    finite = np.isfinite(a)
    return _divide(np.where(finite, a, 0.0).sum(axis=axis), finite.sum(axis=axis))


def _divide(total, count):
    """total / count, NaN where count is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# environment kind -> (the estimators that take it, how errors name its bins)
_GEOMETRY = {
    "box": ("2-D estimators (eq. 4.3-4.4)", "environment's"),
    "track": ("1-D estimators (eq. 4.1-4.2)", "track's"),
}


def _checked(env: Environment, kind: str, features=None) -> np.ndarray | None:
    """Raises MECDataError unless `env` is a `kind` ("box" or "track") and model rate maps `features` (p, bins...), if
    given, lie on its bins; returns `features` as float64."""
    estimators, bins = _GEOMETRY[kind]
    if env.kind != kind:
        raise MECDataError(f"environment {env.name!r} is a {env.kind}; the {estimators} take a {kind}.")
    if features is None:
        return None
    features = np.asarray(features, np.float64)
    if features.shape[1:] != env.bins_shape:
        raise MECDataError(f"model rate maps {features.shape[1:]} do not match the {bins} bins {env.bins_shape}.")
    return features


def consistency_2d(
    env: Environment,
    make_mapper: Callable,
    train_fraction: float = 0.2,
    n_splits: int = 10,
    seed: int = 0,
    mode: str = "pooled",
) -> MECScores:
    """Eq. 4.3: inter-animal consistency of every cell of a box environment (module docstring). mode="pooled" (the
    thesis): one source of all other animals' cells; "pairwise" (Fig. 4.12 control): each other recording is a source
    on its own and a cell's values are averaged over the sources (no hyperparameters are then reported)."""
    _checked(env, "box")
    if mode not in ("pooled", "pairwise"):
        raise ValueError(f'mode must be "pooled" or "pairwise"; received {mode!r}.')
    per_target = {}
    for target, rec in env.recordings.items():
        y = _flat(rec.rate_maps)
        sources = _sources(env, target)
        groups = [sources] if mode == "pooled" else [[s] for s in sources]
        runs = []
        for group in groups:
            x = np.concatenate([_flat(env.recordings[s].rate_maps) for s in group], axis=1)
            valid = _valid(x, y)
            splits = _splits(valid, train_fraction, n_splits, seed, f"target {target!r}, sources {group}")
            runs.append(_fit_splits(make_mapper, x[valid], y[valid], splits))
        if mode == "pooled":
            per_target[target] = runs[0]
        else:
            r = _nanmean(np.stack([run["r"] for run in runs]), axis=0)
            per_target[target] = {"r": r, **{k: np.full_like(r, np.nan) for k in ("alpha", "l1_ratio", "n_used")}}
    return _collect(env, per_target)


def predictivity_2d(
    features: np.ndarray,
    env: Environment,
    make_mapper: Callable,
    train_fraction: float = 0.2,
    n_splits: int = 10,
    seed: int = 0,
) -> MECScores:
    """Eq. 4.4: model predictivity of every cell of a box; `features` (p, h, w) model rate maps on the same bins."""
    features = _checked(env, "box", features)
    x_all = _flat(features)
    x_all = x_all[:, np.isfinite(x_all).sum(axis=0) > 0]  # units never defined (impossible) would kill every bin
    per_target = {}
    for target, rec in env.recordings.items():
        y = _flat(rec.rate_maps)
        valid = _valid(x_all, y)
        splits = _splits(valid, train_fraction, n_splits, seed, f"target {target!r}")
        per_target[target] = _fit_splits(make_mapper, x_all[valid], y[valid], splits)
    return _collect(env, per_target)


def _ratio(p1, p2, s1, s2, spearman_brown: bool) -> np.ndarray:
    """Eq. 4.1 / 4.2 for (n_test, k) arrays -> (k,); NaN where a denominator term is <= 0 or undefined."""
    num = correlation.pearson(p1, s2)
    mapping, target = correlation.pearson(p1, p2), correlation.pearson(s1, s2)
    if spearman_brown:
        mapping, target = correlation.spearman_brown(mapping), correlation.spearman_brown(target)
    ok = (mapping > 0) & (target > 0)
    return np.where(ok, num / np.sqrt(np.where(ok, mapping * target, 1.0)), np.nan)


class _Halves:
    """Split-half means of every map of one track recording: s1, s2 (n, u * M, b), columns map-major."""

    def __init__(self, rec, n_boot: int, rng: np.random.Generator):
        halves = [
            half_means(rec.map_trials(m), trial_halves(int((rec.trial_maps == m).sum()), n_boot, rng)) for m in rec.maps
        ]
        self.s1 = np.concatenate([h[0] for h in halves], axis=1)
        self.s2 = np.concatenate([h[1] for h in halves], axis=1)
        self.groups = np.tile(np.arange(rec.n_cells), len(rec.maps))
        self.n_maps = len(rec.maps)


def _halves_1d(make_mapper, x1, x2, y: _Halves, valid, splits, spearman_brown, total, count):
    """Adds eq. 4.1 / 4.2 values over splits x bootstraps into total / count (s, u*M). x1, x2: (n, p, b)."""
    s1, s2 = y.s1[valid], y.s2[valid]
    for i, (train, test) in enumerate(splits):
        for b in range(s1.shape[-1]):
            preds = []
            for x, s in ((x1, s1), (x2, s2)):
                xb = x[valid][..., b] if x.ndim == 3 else x[valid]
                mapper = make_mapper(y.groups)
                preds.append(mapper.fit(xb[train], s[train, :, b]).predict(xb[test]))
            value = _ratio(preds[0], preds[1], s1[test, :, b], s2[test, :, b], spearman_brown)
            ok = np.isfinite(value)
            total[i] += np.where(ok, value, 0.0)
            count[i] += ok


def _finish_1d(env: Environment, per_target: dict) -> MECScores:
    """Per cell: the sums over (maps, bootstraps, sources) divided by their count, per split and overall."""
    per_split, values = [], []
    for t, (total, count, n_maps) in per_target.items():
        u = env.recordings[t].n_cells
        tot, cnt = (a.reshape(len(a), n_maps, u).sum(1) for a in (total, count))  # (s, u), columns map-major
        per_split.append(_divide(tot, cnt))
        values.append(_divide(tot.sum(0), cnt.sum(0)))
    recs = np.concatenate([[t] * env.recordings[t].n_cells for t in per_target])
    ids = np.concatenate([env.recordings[t].cell_ids for t in per_target])
    return MECScores(np.concatenate(values), np.concatenate(per_split, axis=1), recs, ids)


def consistency_1d(
    env: Environment,
    make_mapper: Callable,
    train_fraction: float = 0.2,
    n_splits: int = 10,
    n_boot: int = 100,
    seed: int = 0,
    spearman_brown: bool = True,
) -> MECScores:
    """Eq. 4.1: inter-animal consistency of every cell of a track; `make_mapper(groups)` -> a fresh transform."""
    _checked(env, "track")
    rng = as_rng(seed)
    halves = {name: _Halves(rec, n_boot, rng) for name, rec in env.recordings.items()}
    per_target = {}
    for target in env.recordings:
        y = halves[target]
        total, count = np.zeros((n_splits, y.s1.shape[1])), np.zeros((n_splits, y.s1.shape[1]))
        for source in _sources(env, target):
            src_rec, src = env.recordings[source], halves[source]
            for j in range(src.n_maps):
                cols = slice(j * src_rec.n_cells, (j + 1) * src_rec.n_cells)
                x1, x2 = src.s1[:, cols], src.s2[:, cols]
                valid = _valid(x1, x2, y.s1, y.s2)
                splits = _splits(valid, train_fraction, n_splits, seed, f"target {target!r}, source {source!r}")
                _halves_1d(make_mapper, x1, x2, y, valid, splits, spearman_brown, total, count)
        per_target[target] = (total, count, y.n_maps)
    return _finish_1d(env, per_target)


def predictivity_1d(
    features: np.ndarray,
    env: Environment,
    make_mapper: Callable,
    train_fraction: float = 0.2,
    n_splits: int = 10,
    n_boot: int = 100,
    seed: int = 0,
    spearman_brown: bool = True,
) -> MECScores:
    """Eq. 4.2: model predictivity of every cell of a track; `features` (p, n) model rate maps on the track bins."""
    features = _checked(env, "track", features)
    x = _flat(features)
    rng = as_rng(seed)
    per_target = {}
    for target, rec in env.recordings.items():
        y = _Halves(rec, n_boot, rng)
        total, count = np.zeros((n_splits, y.s1.shape[1])), np.zeros((n_splits, y.s1.shape[1]))
        valid = _valid(x, y.s1, y.s2)
        splits = _splits(valid, train_fraction, n_splits, seed, f"target {target!r}")
        _halves_1d(make_mapper, x, x, y, valid, splits, spearman_brown, total, count)
        per_target[target] = (total, count, y.n_maps)
    return _finish_1d(env, per_target)
