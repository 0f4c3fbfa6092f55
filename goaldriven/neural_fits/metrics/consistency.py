"""Noise-corrected model predictivity, inter-animal consistency and layer selection.

Reference: A. Nayebi, PhD thesis (Stanford, 2022): eq. 2.17 (Section 2.5.7), eq. 3.4 and Section 3.6.2-3.6.3
(ch3 Section A2.4/A2.6 of the spec), eqs. 4.1-4.2 (Section 4.8.3).

Per target unit, with s_1, s_2 the averages of two random halves of the target's trials, M(x; y) a mapping fit on
the train stimuli and Corr the Pearson correlation over the test stimuli:

    model (ch3 Section 3.6.2, eq. 4.2):
        < Corr(M(r; s_1)_test, s_2,test) / sqrt( SB(Corr(M(r; s_1)_test, M(r; s_2)_test)) x SB(Corr(s_1,test, s_2,test)) ) >
    animals (eq. 3.4 with SB as in Section 3.6.3 "Multiple animals", eq. 4.1):
        < Corr(M(s_1^A; s_1^B)_test, s_2,test^B)
          / sqrt( SB(Corr(M(s_1^A; s_1^B)_test, M(s_2^A; s_2^B)_test)) x SB(Corr(s_1,test^B, s_2,test^B)) ) >

< > averages over bootstrap halves x train/test splits (every split sees every bootstrap: spec ch3 ambiguity 4
resolved as "crossed"; `per_split` keeps each split's average), and over source animals in "pairwise" mode. SB(rho) = 2 rho / (1 + rho). With
spearman_brown=False the SB is dropped, which is the ch2 eq. 2.17 form: all three correlations are then at
half-trial level and a perfect model (or an identical animal) scores ~1 for Gaussian noise. With SB both
denominators are full-trial estimates while the numerator stays at half-trial level, so a perfect noise-free model
scores ~sqrt(rho_half / SB(rho_half)) = sqrt((1 + rho_half) / 2) < 1 (0.87 at rho_half = 0.5): the SB form is
conservative. It is not equally conservative for animals: the source animal's trial noise enters the mapping term,
which is SB-corrected too, so a perfect other animal scores sqrt((1 + rho_half) / 2 x (1 + rho_src) / 2), rho_src
being the split-half correlation of the predictions made from the source's trial halves. The fraction of the
inter-animal consistency that a perfect model reaches is then 1 / sqrt((1 + rho_src) / 2): above 1 (115% at rho_src
= 0.5, 103% at 0.89, at most sqrt(2)); without SB it is ~1 (tests/neural_fits/metrics/test_consistency.py).

A bootstrap whose mapping or target term is <= 0 or NaN has no defined ratio and is skipped; a unit with no defined
ratio at all gets NaN. Per unit we also return the raw held-out Pearson r of a mapping fit on the full trial
average (averaged over splits) and the target's split-half reliability over all stimuli (SB-corrected iff
spearman_brown), drawn with the same halves.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from goaldriven.neural_fits.metrics import correlation
from goaldriven.neural_fits.metrics.correlation import pearson, summarize
from goaldriven.neural_fits.metrics.reliability import reliability_from_halves
from goaldriven.neural_fits.metrics.splits import as_rng, half_means, trial_halves

# n: stimuli, p: features, u: units, t: time bins, r: trials, b: bootstraps


@dataclasses.dataclass(frozen=True)
class UnitScores:
    """Per-unit scores: `noise_corrected` (the estimator), `raw` (held-out r of the trial-average fit),
    `reliability` (split-half), each (u,) or (u, t); `animals` labels each unit's target animal (or is None);
    `per_split` (s, u) or (s, u, t): the estimator averaged over the bootstraps of each train/test split (Brain-Score
    aggregates the median over units of each split)."""

    noise_corrected: np.ndarray
    raw: np.ndarray
    reliability: np.ndarray
    animals: np.ndarray | None = None
    per_split: np.ndarray | None = None

    @property
    def values(self) -> np.ndarray:
        """The per-unit scores, i.e. `noise_corrected`."""
        return self.noise_corrected

    def summary(self, tanh: bool = False) -> dict:
        """Median and s.e.m. of `noise_corrected` over units (per time bin for (u, t)); tanh first if asked (ch4)."""
        return summarize(self.noise_corrected, tanh=tanh, axis=0)


class _Mean:
    """Running per-unit mean that skips NaN, kept per split: `mean()` pools the splits, `per_split()` does not."""

    def __init__(self, u: int, n_splits: int = 1):
        self.total = np.zeros((n_splits, u))
        self.count = np.zeros((n_splits, u))

    def add(self, values: np.ndarray, split: int = 0) -> None:  # (u, k)
        ok = ~np.isnan(values)
        self.total[split] += np.where(ok, values, 0.0).sum(axis=1)
        self.count[split] += ok.sum(axis=1)

    def mean(self) -> np.ndarray:
        return _divide(self.total.sum(axis=0), self.count.sum(axis=0))

    def per_split(self) -> np.ndarray:
        return _divide(self.total, self.count)


def _divide(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _ratio(p1, p2, s1, s2, spearman_brown: bool) -> np.ndarray:
    """The estimator for arrays (n_test, u, b) -> (u, b); NaN where a denominator term is <= 0."""
    num = pearson(p1, s2, axis=0)
    mapping = pearson(p1, p2, axis=0)
    target = pearson(s1, s2, axis=0)
    if spearman_brown:
        mapping, target = correlation.spearman_brown(mapping), correlation.spearman_brown(target)
    ok = (mapping > 0) & (target > 0)
    return np.where(ok, num / np.sqrt(np.where(ok, mapping * target, 1.0)), np.nan)


def _fit_predict(mapper_factory: Callable, x_train, ys, x_test) -> list:
    preds = mapper_factory().fit_predict_many(x_train, ys, x_test)
    if len(preds) != len(ys):
        raise ValueError(f"fit_predict_many returned {len(preds)} predictions for {len(ys)} targets; fix the mapper.")
    out = []
    for y, p in zip(ys, preds):
        p = np.asarray(p, dtype=np.float64)
        if p.shape != (len(x_test), y.shape[1]):
            raise ValueError(f"mapper predicted shape {p.shape}, expected {(len(x_test), y.shape[1])}; fix the mapper.")
        out.append(p)
    return out


def _check_trials(trials, name: str = "trials") -> np.ndarray:
    trials = np.asarray(trials)
    if trials.ndim != 3:
        raise ValueError(f"{name} must be (n, u, r) trial-resolved responses; received shape {trials.shape}.")
    if trials.shape[-1] < 2:
        raise ValueError(f"{name} needs >= 2 trials for split halves; received shape {trials.shape}.")
    return trials


def _check_splits(splits, n: int) -> list:
    out = []
    for i, pair in enumerate(splits):
        train, test = (np.asarray(a) for a in pair)
        for label, idx, low in (("train", train, 2), ("test", test, 3)):
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer) or len(idx) < low:
                raise ValueError(f"split {i}: {label} must be a 1-D integer index array with >= {low} stimuli.")
            if idx.min() < 0 or idx.max() >= n:
                raise ValueError(
                    f"split {i}: {label} indices must lie in [0, {n}); received [{idx.min()}, {idx.max()}]."
                )
        if np.intersect1d(train, test).size:
            raise ValueError(f"split {i}: train and test share stimuli; use disjoint indices (stimulus_splits).")
        out.append((train, test))
    if not out:
        raise ValueError("splits is empty; pass e.g. stimulus_splits(n, 0.5, 10, seed).")
    return out


def _chunks(n_boot: int, boot_chunk: int | None) -> list:
    if boot_chunk is not None and (int(boot_chunk) != boot_chunk or boot_chunk < 1):
        raise ValueError(f"boot_chunk must be a positive integer or None; received {boot_chunk!r}.")
    step = n_boot if boot_chunk is None else int(boot_chunk)
    return [slice(b0, min(b0 + step, n_boot)) for b0 in range(0, n_boot, step)]


def _columns(a: np.ndarray) -> list:
    """(n, u, b) -> list of b contiguous (n, u) arrays."""
    return [np.ascontiguousarray(a[..., j]) for j in range(a.shape[-1])]


def model_predictivity(
    features, trials, mapper_factory: Callable, splits, n_boot: int, seed, spearman_brown: bool = True, boot_chunk=None
) -> UnitScores:
    """Noise-corrected predictivity of a deterministic model for every unit (ch3 Section 3.6.2, eq. 4.2; eq. 2.17).

    Per split, one `fit_predict_many` call fits the mappings to both halves of every bootstrap (and to the full trial
    average, for `raw`), so the x-side work is shared; `boot_chunk` bootstraps per call (None: all) bounds memory.

    Args:
        features: (n, p) model features, or any (n, ...) array the mapper accepts (e.g. (n, h, w, c) maps).
        trials: (n, u, r) responses of one target animal.
        mapper_factory: zero-argument callable returning a fresh mapper with `fit_predict_many`.
        splits: list of (train_idx, test_idx), e.g. from `stimulus_splits`.
        n_boot: number of bootstrap split halves (thesis: 100).
        seed: int or np.random.Generator for the halves (same seed -> same halves as `split_half_reliability`).
        spearman_brown: SB-correct both denominator terms (ch3/ch4); False gives ch2 eq. 2.17.
        boot_chunk: bootstraps per `fit_predict_many` call.

    Returns:
        UnitScores with (u,) arrays.
    """
    trials = _check_trials(trials)
    n, u, r = trials.shape
    if not hasattr(features, "shape") or features.shape[0] != n:
        raise ValueError(f"features must be an array with one row per stimulus ({n}); received {np.shape(features)}.")
    splits = _check_splits(splits, n)
    halves = trial_halves(r, n_boot, seed)
    full = trials.mean(axis=-1, dtype=np.float64)  # (n, u)
    corrected, raw = _Mean(u, len(splits)), _Mean(u)
    for k, chunk in enumerate(_chunks(n_boot, boot_chunk)):
        s1, s2 = half_means(trials, halves[chunk])  # (n, u, b) each
        b = s1.shape[-1]
        for i, (train, test) in enumerate(splits):
            ys = _columns(s1[train]) + _columns(s2[train]) + ([full[train]] if k == 0 else [])
            preds = _fit_predict(mapper_factory, features[train], ys, features[test])
            p1, p2 = np.stack(preds[:b], axis=-1), np.stack(preds[b : 2 * b], axis=-1)
            corrected.add(_ratio(p1, p2, s1[test], s2[test], spearman_brown), split=i)
            if k == 0:
                raw.add(pearson(preds[-1], full[test])[:, None])
    reliability = reliability_from_halves(trials, halves, spearman_brown=spearman_brown)
    return UnitScores(corrected.mean(), raw.mean(), reliability, per_split=corrected.per_split())


def _check_animals(trials_by_animal) -> tuple[list, list]:
    if not isinstance(trials_by_animal, dict) or len(trials_by_animal) < 2:
        raise ValueError("trials_by_animal must be a dict {animal: (n, u_a, r_a) trials} with >= 2 animals.")
    names = list(trials_by_animal)
    data = [_check_trials(trials_by_animal[a], name=f"trials of animal {a!r}") for a in names]
    n_stimuli = {a.shape[0] for a in data}
    if len(n_stimuli) != 1:
        shapes = {name: a.shape for name, a in zip(names, data)}
        raise ValueError(f"all animals must see the same stimuli (same n); received shapes {shapes}.")
    return names, data


def inter_animal_consistency(
    trials_by_animal: dict,
    mapper_factory: Callable,
    splits,
    n_boot: int,
    seed,
    mode: str = "pooled",
    spearman_brown: bool = True,
    boot_chunk=None,
) -> UnitScores:
    """Inter-animal consistency of every unit of every animal as a target (eq. 3.4, ch3 Section 3.6.3, eq. 4.1).

    mode="pooled" (the thesis' "holdout"): the source for target B is one pseudo-population concatenating the units
    of all other animals. mode="pairwise": each other animal is a source on its own; per unit the values are
    averaged over sources.

    Halves: each animal draws its own random halves from its own trial count r_a (floor(r_a / 2) trials per half,
    one random trial left out when r_a is odd), the same for all its units and stimuli; bootstrap j pairs half 1 of
    every animal (source x = s_1^A, target y = s_1^B) and likewise half 2. Animals are independent recordings, so
    their trial indices carry no shared meaning and unequal trial counts need no matching. Halves are drawn from one
    generator in dict order, so the same dict (same order) and seed give the same result.

    Each (source half, target half) pair has its own x, so no x-side work is shared across bootstraps: every
    bootstrap x split x source costs two mapper fits (plus one per split x source for `raw`).

    Args:
        trials_by_animal: {animal: (n, u_a, r_a) trials}, the same n stimuli in the same order for all.
        mapper_factory, splits, n_boot, seed, spearman_brown, boot_chunk: as in `model_predictivity`.
        mode: "pooled" or "pairwise".

    Returns:
        UnitScores with arrays over the concatenated units of all target animals (dict order) and `animals` labels.
    """
    if mode not in ("pooled", "pairwise"):
        raise ValueError(f'mode must be "pooled" or "pairwise"; received {mode!r}.')
    names, data = _check_animals(trials_by_animal)
    n = data[0].shape[0]
    splits = _check_splits(splits, n)
    rng = as_rng(seed)
    halves = [trial_halves(a.shape[-1], n_boot, rng) for a in data]
    full = [a.mean(axis=-1, dtype=np.float64) for a in data]  # (n, u_a)
    sources = {
        tgt: (
            [[i for i in range(len(data)) if i != tgt]]
            if mode == "pooled"
            else [[i] for i in range(len(data)) if i != tgt]
        )
        for tgt in range(len(data))
    }
    corrected = {(tgt, j): _Mean(data[tgt].shape[1], len(splits)) for tgt in sources for j in range(len(sources[tgt]))}
    raw = {key: _Mean(data[key[0]].shape[1]) for key in corrected}
    for k, chunk in enumerate(_chunks(n_boot, boot_chunk)):
        means = [half_means(a, h[chunk]) for a, h in zip(data, halves)]  # per animal: two (n, u_a, b)
        for tgt, source_sets in sources.items():
            t1, t2 = means[tgt]
            for j, src in enumerate(source_sets):
                x1 = np.concatenate([means[i][0] for i in src], axis=1)  # (n, U_src, b)
                x2 = np.concatenate([means[i][1] for i in src], axis=1)
                for i, (train, test) in enumerate(splits):
                    p1 = _fit_each_bootstrap(mapper_factory, x1, t1, train, test)
                    p2 = _fit_each_bootstrap(mapper_factory, x2, t2, train, test)
                    ratio = _ratio(p1, p2, t1[test], t2[test], spearman_brown)
                    corrected[tgt, j].add(ratio, split=i)
                    if k == 0:
                        xf = np.concatenate([full[i] for i in src], axis=1)
                        pf = _fit_predict(mapper_factory, xf[train], [full[tgt][train]], xf[test])[0]
                        raw[tgt, j].add(pearson(pf, full[tgt][test])[:, None])
    values, raws, rels, labels, per_split = [], [], [], [], []
    for tgt, source_sets in sources.items():
        # Pairwise: average over sources (NaN-skipping); pooled has a single source set.
        values.append(_nanmean_stack([corrected[tgt, j].mean() for j in range(len(source_sets))]))
        per_split.append(_nanmean_stack([corrected[tgt, j].per_split() for j in range(len(source_sets))]))
        raws.append(_nanmean_stack([raw[tgt, j].mean() for j in range(len(source_sets))]))
        rels.append(reliability_from_halves(data[tgt], halves[tgt], spearman_brown=spearman_brown))
        labels.append(np.array([names[tgt]] * data[tgt].shape[1], dtype=object))
    return UnitScores(
        *(np.concatenate(a) for a in (values, raws, rels, labels)), per_split=np.concatenate(per_split, axis=1)
    )


def _fit_each_bootstrap(mapper_factory: Callable, x, y, train, test) -> np.ndarray:
    """One mapping per bootstrap q from x[..., q] to y[..., q]; x (n, U, b), y (n, u, b) -> (n_test, u, b)."""
    preds = [
        _fit_predict(mapper_factory, x[train, :, q], [np.ascontiguousarray(y[train, :, q])], x[test, :, q])[0]
        for q in range(y.shape[-1])
    ]
    return np.stack(preds, axis=-1)


def _nanmean_stack(arrays: list) -> np.ndarray:
    stacked = np.stack(arrays, axis=-1)  # (..., u, sources)
    count = (~np.isnan(stacked)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(stacked, axis=-1) / count, np.nan)


def _stack_over_time(results: list, animals=None) -> UnitScores:
    return UnitScores(
        *(np.stack([getattr(res, f) for res in results], axis=1) for f in ("noise_corrected", "raw", "reliability")),
        animals=animals,
        per_split=np.stack([res.per_split for res in results], axis=-1),  # (s, u, t)
    )


def model_predictivity_over_time(
    features, trials, mapper_factory: Callable, splits, n_boot: int, seed, spearman_brown: bool = True, boot_chunk=None
) -> UnitScores:
    """`model_predictivity` per time bin (a temporally varying mapping: one fit per bin).

    Args:
        features: (n, p) shared by every bin, (n, t, p) per bin, or a list of t per-bin arrays (e.g. feature maps).
        trials: (n, u, t, r). The same seed draws the same trial halves in every bin (a trial spans all bins).
        Other arguments: as in `model_predictivity`.

    Returns:
        UnitScores with (u, t) arrays.
    """
    trials = np.asarray(trials)
    if trials.ndim != 4:
        raise ValueError(f"trials must be (n, u, t, r) for the time-resolved estimator; received shape {trials.shape}.")
    n_bins = trials.shape[2]
    per_bin = _features_per_bin(features, trials.shape[0], n_bins)
    results = [
        model_predictivity(
            per_bin[k], trials[:, :, k, :], mapper_factory, splits, n_boot, seed, spearman_brown, boot_chunk
        )
        for k in range(n_bins)
    ]
    return _stack_over_time(results)


def _features_per_bin(features, n: int, n_bins: int) -> list:
    if isinstance(features, (list, tuple)):
        if len(features) != n_bins:
            raise ValueError(f"a list of features needs one array per time bin ({n_bins}); received {len(features)}.")
        return list(features)
    features = np.asarray(features)
    if features.ndim == 2:
        return [features] * n_bins
    if features.ndim == 3 and features.shape[:2] == (n, n_bins):
        return [features[:, k, :] for k in range(n_bins)]
    raise ValueError(
        f"features must be (n, p), (n, t, p) with n={n}, t={n_bins}, or a list of {n_bins} per-bin arrays; "
        f"received shape {features.shape}."
    )


def inter_animal_consistency_over_time(
    trials_by_animal: dict,
    mapper_factory: Callable,
    splits,
    n_boot: int,
    seed,
    mode: str = "pooled",
    spearman_brown: bool = True,
    boot_chunk=None,
) -> UnitScores:
    """`inter_animal_consistency` per time bin; every animal's trials are (n, u_a, t, r_a) with the same t.

    The same seed draws the same halves in every bin. Returns UnitScores with (u_total, t) arrays.
    """
    if not isinstance(trials_by_animal, dict) or not trials_by_animal:
        raise ValueError("trials_by_animal must be a non-empty dict {animal: (n, u_a, t, r_a) trials}.")
    arrays = {a: np.asarray(x) for a, x in trials_by_animal.items()}
    bins = {x.shape[2] if x.ndim == 4 else None for x in arrays.values()}
    if len(bins) != 1 or None in bins:
        raise ValueError(
            f"every animal's trials must be (n, u_a, t, r_a) with the same t; received { ({a: x.shape for a, x in arrays.items()}) }."
        )
    results = [
        inter_animal_consistency(
            {a: x[:, :, k, :] for a, x in arrays.items()},
            mapper_factory,
            splits,
            n_boot,
            seed,
            mode,
            spearman_brown,
            boot_chunk,
        )
        for k in range(bins.pop())
    ]
    return _stack_over_time(results, animals=results[0].animals)
