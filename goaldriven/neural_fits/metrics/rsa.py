"""Representational similarity analysis (RSA) with split-half noise correction, per animal (thesis Chapter 3).

Reference: A. Nayebi, PhD thesis (Stanford, 2022), Section 3.6.3 eqs. 3.9-3.10 and Section 3.6.2 (spec ch3 A2.1,
A2.4 "RSA variant", A2.6 "RSA version", Ambiguity 5).

    RDM(X)_ij   = 1 - Corr(X_i, X_j)          X: (n stimuli, u units); Corr over the units of stimuli i and j
    RSA(X, Y)   = Corr(triu(RDM(X)), triu(RDM(Y)))   the n (n - 1) / 2 entries above the diagonal
    SB(rho)     = 2 rho / (1 + rho)

    inter-animal (eq. 3.9-3.10), per target animal B with source A (pooled: the other animals' units concatenated):
        < RSA(s_1^A, s_2^B) / sqrt( SB(RSA(s_1^A, s_2^A)) x SB(RSA(s_1^B, s_2^B)) ) >
    model (A2.6 RSA version), per animal B, for a deterministic model layer r:
        < RSA(r, s_2^B) / sqrt( SB(RSA(s_1^B, s_2^B)) ) >

s_1, s_2: averages of two random halves of the trials; < > over bootstrapped halves (a bootstrap whose denominator
term is <= 0 or NaN is skipped). The identity "mapping" fits nothing, so train = test = all stimuli (or the stimuli
given). Values are one per animal; summarize them with median and s.e.m. over animals (correlation.summarize).
With spearman_brown=False both denominator terms stay at half-trial level (the eq. 2.17 form): an animal identical
to the source in its noise-free responses then scores ~1. With SB (the thesis) it scores less, as the unit-level
estimator does (consistency.py docstring).

Ambiguity 5 (the RDM is not defined in the thesis): 1 - Pearson correlation between the stimuli's population
vectors (the correlation distance, scipy's pdist 'correlation'), the usual choice of the reference code's lineage.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from goaldriven.neural_fits.metrics import correlation
from goaldriven.neural_fits.metrics.correlation import pearson
from goaldriven.neural_fits.metrics.splits import as_rng, half_means, trial_halves

# n: stimuli, u: units, r: trials, b: bootstraps, q: RDM entries above the diagonal (n (n - 1) / 2)


def rdm(responses) -> np.ndarray:
    """(n, n) RDM 1 - Pearson r between the rows (stimuli) of (n, u) responses, or (b, n, n) for (n, u, b).

    A stimulus whose population vector is constant over units has NaN distances.
    """
    x = np.asarray(responses, dtype=np.float64)
    if x.ndim not in (2, 3) or x.shape[0] < 3 or x.shape[1] < 2:
        raise ValueError(f"rdm needs (n >= 3 stimuli, u >= 2 units[, b]) responses; received shape {x.shape}.")
    x = x if x.ndim == 3 else x[..., None]
    xc = x - x.mean(axis=1, keepdims=True)  # centre each stimulus over units
    norms = np.sqrt(np.einsum("nub,nub->bn", xc, xc))  # (b, n)
    gram = np.einsum("iub,jub->bij", xc, xc)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = gram / (norms[:, :, None] * norms[:, None, :])
    corr = np.where((norms[:, :, None] > 0) & (norms[:, None, :] > 0), np.clip(corr, -1.0, 1.0), np.nan)
    out = 1.0 - corr
    return out[0] if np.asarray(responses).ndim == 2 else out


def upper_triangle(matrices) -> np.ndarray:
    """The entries above the diagonal of (n, n) -> (q,) or (b, n, n) -> (q, b) (row-major order)."""
    m = np.asarray(matrices)
    rows, cols = np.triu_indices(m.shape[-1], k=1)
    return m[rows, cols] if m.ndim == 2 else np.moveaxis(m[:, rows, cols], 0, -1)


def rsa(x, y) -> np.ndarray:
    """RSA(X, Y): Pearson r between the upper triangles of RDM(X) and RDM(Y); (n, u) -> float, (n, u, b) -> (b,)."""
    return pearson(upper_triangle(rdm(x)), upper_triangle(rdm(y)), axis=0)


@dataclasses.dataclass(frozen=True)
class AnimalScores:
    """One value per target animal: `noise_corrected` (the estimator), `raw` (RSA of the full trial averages),
    `reliability` (the target's split-half RSA, SB-corrected iff spearman_brown), `animals` (names)."""

    noise_corrected: np.ndarray
    raw: np.ndarray
    reliability: np.ndarray
    animals: np.ndarray

    @property
    def values(self) -> np.ndarray:
        return self.noise_corrected

    def summary(self) -> dict:
        """Median and s.e.m. over animals."""
        return correlation.summarize(self.noise_corrected)


def _nanmean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def _sb(values: np.ndarray, spearman_brown: bool) -> np.ndarray:
    return correlation.spearman_brown(values) if spearman_brown else values


def _check(trials, name: str, stimuli) -> np.ndarray:
    trials = np.asarray(trials)
    if trials.ndim != 3 or trials.shape[-1] < 2:
        raise ValueError(f"{name} must be (n, u, r >= 2) trial-resolved responses; received shape {trials.shape}.")
    return trials if stimuli is None else trials[np.asarray(stimuli)]


def inter_animal_rsa(
    trials_by_animal: dict, n_boot: int, seed, mode: str = "pooled", spearman_brown: bool = True, stimuli=None
) -> AnimalScores:
    """Noise-corrected inter-animal RSA (eq. 3.9-3.10) of every animal as a target (module docstring).

    Args:
        trials_by_animal: {animal: (n, u_a, r_a) trials}, the same n stimuli for all, >= 2 animals.
        n_boot: bootstrapped split halves (thesis: 100); each animal draws its own halves from its own trials.
        seed: int or np.random.Generator.
        mode: "pooled" (the source is the other animals' units concatenated, ch3 A2.4) or "pairwise" (every other
            animal on its own; the ratio is averaged over sources).
        spearman_brown: SB on both denominator terms (the thesis); False: half-trial terms (~1 for identical animals).
        stimuli: indices of the stimuli to use (default: all).
    """
    if mode not in ("pooled", "pairwise"):
        raise ValueError(f'mode must be "pooled" or "pairwise"; received {mode!r}.')
    if not isinstance(trials_by_animal, dict) or len(trials_by_animal) < 2:
        raise ValueError("trials_by_animal must be a dict {animal: (n, u_a, r_a) trials} with >= 2 animals.")
    names = list(trials_by_animal)
    data = [_check(trials_by_animal[a], f"trials of animal {a!r}", stimuli) for a in names]
    if len({a.shape[0] for a in data}) != 1:
        raise ValueError(f"all animals must see the same stimuli; received shapes {[a.shape for a in data]}.")
    rng = as_rng(seed)
    halves = [half_means(a, trial_halves(a.shape[-1], n_boot, rng)) for a in data]  # per animal: two (n, u_a, b)
    full = [a.mean(axis=-1, dtype=np.float64) for a in data]
    triu = [(upper_triangle(rdm(s1)), upper_triangle(rdm(s2))) for s1, s2 in halves]  # (q, b) each
    own = [_sb(pearson(t1, t2), spearman_brown) for t1, t2 in triu]  # (b,) split-half RSA per animal
    values, raws = [], []
    for tgt in range(len(data)):
        others = [i for i in range(len(data)) if i != tgt]
        sources = [others] if mode == "pooled" else [[i] for i in others]
        ratios, raw = [], []
        for src in sources:
            if len(src) == 1:
                src_triu, src_rel = triu[src[0]][0], own[src[0]]
            else:  # the pooled pseudo-population: its own RDMs and split-half RSA
                s1 = np.concatenate([halves[i][0] for i in src], axis=1)
                s2 = np.concatenate([halves[i][1] for i in src], axis=1)
                src_triu = upper_triangle(rdm(s1))
                src_rel = _sb(pearson(src_triu, upper_triangle(rdm(s2))), spearman_brown)
            ratios.append(_ratio(pearson(src_triu, triu[tgt][1]), src_rel * own[tgt]))
            raw.append(float(rsa(np.concatenate([full[i] for i in src], axis=1), full[tgt])))
        values.append(_nanmean(np.array(ratios)))
        raws.append(_nanmean(np.array(raw)))
    return AnimalScores(np.array(values), np.array(raws), np.array([_nanmean(r) for r in own]), np.array(names))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """Mean over bootstraps of numerator / sqrt(denominator), skipping bootstraps whose denominator is <= 0 or NaN."""
    ok = denominator > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nanmean(np.where(ok, numerator / np.sqrt(np.where(ok, denominator, 1.0)), np.nan))


def model_rsa(features, trials_by_animal: dict, n_boot: int, seed, spearman_brown: bool = True, stimuli=None):
    """Noise-corrected RSA of a model layer against each animal (A2.6 RSA version; module docstring).

    Args:
        features: (n, p) model features of the n stimuli (any (n, ...) array is flattened per stimulus).
        trials_by_animal: {animal: (n, u_a, r_a) trials}; one animal is fine.
        n_boot, seed, spearman_brown, stimuli: as in `inter_animal_rsa`.

    Returns:
        AnimalScores, one value per animal.
    """
    x = np.asarray(features, dtype=np.float64)
    x = x.reshape(len(x), -1) if stimuli is None else x[np.asarray(stimuli)].reshape(len(stimuli), -1)
    model_triu = upper_triangle(rdm(x))  # (q,)
    rng = as_rng(seed)
    values, raws, rels, names = [], [], [], []
    for name, trials in trials_by_animal.items():
        trials = _check(trials, f"trials of animal {name!r}", stimuli)
        if trials.shape[0] != len(x):
            raise ValueError(f"animal {name!r} has {trials.shape[0]} stimuli, the features {len(x)}; align them.")
        s1, s2 = half_means(trials, trial_halves(trials.shape[-1], n_boot, rng))
        t1, t2 = upper_triangle(rdm(s1)), upper_triangle(rdm(s2))
        reliability = _sb(pearson(t1, t2), spearman_brown)
        numerator = pearson(np.repeat(model_triu[:, None], t2.shape[1], axis=1), t2)
        values.append(_ratio(numerator, reliability))
        raws.append(float(rsa(x, trials.mean(axis=-1, dtype=np.float64))))
        rels.append(_nanmean(reliability))
        names.append(name)
    return AnimalScores(np.array(values), np.array(raws), np.array(rels), np.array(names))
