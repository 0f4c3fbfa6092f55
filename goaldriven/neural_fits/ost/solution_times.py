"""Object solution times (OST): model time bins, per-image OST, and its Spearman consistency with IT OSTs.

Reference: A. Nayebi, PhD thesis (Stanford, 2022), Sections 2.3.2 and 2.5.8, Figs. 2.3, 2.8, 2.9; Kar et al. 2019;
implementation spec ch2 Section 9 and ambiguities A-13 and A-14. The decoder and d' live in `dprime.py`.

Model time bins (spec 9.3). The 19 IT bins are 70, 80, ..., 250 ms (bin j covers [70 + 10 j, 80 + 10 j) ms).
  - ConvRNN: no mapping. Step t (0-based, 10 ms per step, image on from t = 0) is bin [10 t, 10 t + 10) ms, so the
    19 bins are steps t = 7..25 of the 26-step evaluation unroll; `convrnn_to_time` concatenates the IT-preferred
    layers at each of those steps into one IT pseudo-population.
  - Feedforward, k IT-preferred layers in hierarchy order (`layer_to_time`); if k > n_bins the layers are first
    subsampled evenly, round(linspace(0, k - 1, n_bins)) (first and last kept); if k == n_bins, bin j is layer j:
      uniform: bin j -> layer floor(j k / n_bins)  (k distinct OSTs).
      graded:  pos = j (k - 1) / (n_bins - 1), a = floor(pos), w = pos - a, m = round_half_up(w N);
               bin j = the first N - m units of layer a and the first m units of layer a + 1, each layer's units
               taken in one seeded random order (so consecutive bins trade units gradually). N = n_units (default:
               the smallest layer's unit count). Bins with w = 0 are N random units of one layer.

OST per image (spec 9.6), with t_b the bin times and d'(b) the model d' of the image:
    k = first bin with d'(k) >= d'_beh;  OST = t_{k-1} + (t_k - t_{k-1}) (d'_beh - d'(k-1)) / (d'(k) - d'(k-1)).
  An image already solved in the first bin gets t_0 (no extrapolation before the first bin); an image never solved
  gets NaN. Bin times are bin *starts* by default (A-14); any constant offset leaves the Spearman rho unchanged.

Consistency (spec 9.7): Spearman rho between model and IT OST over images solved by both, with the count of those
images and the fraction of IT-solved images the model solves. `ost_pipeline` scores each split on its own test
images (mean and s.e.m. over splits, the thesis' error bars) and also reports a pooled score: per-image d' averaged
over the splits in which the image was a test image, then OST and rho over all images.

Splits (spec 9.4, A-14): `ost_splits` takes n_train_per_class images per class for training and the rest (or
n_test_per_class) for testing. Per class, the images are shuffled once (seeded) and split s tests the block of
positions [s m, (s + 1) m) modulo the class size (m test images per class), so with n_splits m >= class size every
image is a test image at least once (132 per class, 32 test, 10 splits: each image 2-3 times). The thesis' "20
trials each of 10 train/test splits" is read as 10 splits with one fit each (A-14).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np
import scipy.stats

from goaldriven.neural_fits.ost.dprime import (
    DPRIME_CLIP,
    PCA_COMPONENTS,
    SVM_C,
    decode_dprime,
    image_dprime,
)

# n: images, p: features, b: time bins, s: splits, k: layers, t: model steps

__all__ = [
    "N_BINS",
    "BIN_START_MS",
    "CONVRNN_FIRST_STEP",
    "layer_to_time",
    "convrnn_to_time",
    "image_dprime",
    "decode_dprime",
    "object_solution_times",
    "OSTConsistency",
    "ost_consistency",
    "OSTResult",
    "ost_pipeline",
    "ost_splits",
]

N_BINS = 19  # 10 ms bins from 70 to 260 ms
BIN_START_MS = 70.0 + 10.0 * np.arange(N_BINS)  # bin starts, ms
CONVRNN_FIRST_STEP = 7  # step t <-> bin [10 t, 10 t + 10) ms, so 70 ms is step 7
_MAPPINGS = ("uniform", "graded")


def _check_layers(layers) -> list[np.ndarray]:
    layers = [np.asarray(x) for x in layers]
    if not layers:
        raise ValueError("layers is empty; pass the IT-preferred layers' (n, p_l) features in hierarchy order.")
    for i, x in enumerate(layers):
        if x.ndim != 2 or x.shape[1] < 1:
            raise ValueError(f"layers[{i}] must be (n images, p features); flatten maps first. Received: {x.shape}")
        if x.shape[0] != layers[0].shape[0]:
            raise ValueError(f"All layers need the same images. Received n = {[y.shape[0] for y in layers]}")
    return layers


def layer_to_time(layers, n_bins: int = N_BINS, mapping: str = "uniform", seed: int = 0, n_units: int | None = None):
    """Map k feedforward layers (hierarchy order) to n_bins pseudo-populations (module docstring, spec 9.3).

    Args:
        layers: list of k (n, p_l) arrays, earliest layer first.
        n_bins: number of time bins (19 for 70-260 ms).
        mapping: "uniform" or "graded" (identical when k >= n_bins).
        seed: seeds the graded unit order.
        n_units: graded pseudo-population size N (default: the smallest layer's unit count).

    Returns:
        list of n_bins arrays; uniform bins are the layer arrays themselves (not copies), graded bins are (n, N).
    """
    layers = _check_layers(layers)
    if mapping not in _MAPPINGS:
        raise ValueError(f"mapping must be one of {_MAPPINGS}. Received: {mapping!r}")
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer. Received: {n_bins!r}")
    k = len(layers)
    if k > n_bins:  # subsample evenly; spacing > 1, so the rounded indices are distinct
        layers = [layers[i] for i in np.round(np.linspace(0, k - 1, n_bins)).astype(int)]
        k = n_bins
    if mapping == "uniform" or k == n_bins or k == 1:
        return [layers[(j * k) // n_bins] for j in range(n_bins)]

    sizes = [x.shape[1] for x in layers]
    n_units = min(sizes) if n_units is None else n_units
    if not 1 <= n_units <= min(sizes):
        raise ValueError(f"n_units must be in [1, smallest layer = {min(sizes)}]. Received: {n_units}")
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(p) for p in sizes]  # one fixed random unit order per layer
    bins = []
    for j in range(n_bins):
        a, rem = divmod(j * (k - 1), n_bins - 1)  # pos = a + rem / (n_bins - 1), exact
        m = (2 * rem * n_units + (n_bins - 1)) // (2 * (n_bins - 1))  # round_half_up(w N) units from layer a + 1
        parts = [layers[a][:, orders[a][: n_units - m]]]
        if m > 0:
            parts.append(layers[a + 1][:, orders[a + 1][:m]])
        bins.append(np.concatenate(parts, axis=1))
    return bins


def convrnn_to_time(layers, first_step: int = CONVRNN_FIRST_STEP, n_bins: int = N_BINS) -> list[np.ndarray]:
    """One-to-one ConvRNN mapping: bin j = the IT-preferred layers at step first_step + j, concatenated.

    Args:
        layers: list of (n, t, ...) per-step features of the IT-preferred layers (trailing axes are flattened).
        first_step: step of the first bin (7: step t <-> [10 t, 10 t + 10) ms, first bin 70 ms).
        n_bins: number of bins (19); needs t >= first_step + n_bins steps (26 for the defaults).

    Returns:
        list of n_bins (n, sum_l p_l) arrays.
    """
    layers = [np.asarray(x) for x in layers]
    if not layers or any(x.ndim < 3 for x in layers):
        raise ValueError(
            f"layers must be a non-empty list of (n, t, ...) per-step features. "
            f"Received shapes: {[x.shape for x in layers]}"
        )
    n = layers[0].shape[0]
    needed = first_step + n_bins
    for i, x in enumerate(layers):
        if x.shape[0] != n or x.shape[1] < needed:
            raise ValueError(
                f"layers[{i}] must be (n = {n}, t >= {needed} steps, ...) for bins at steps "
                f"{first_step}..{needed - 1}; unroll the model longer. Received shape: {x.shape}"
            )
    return [np.concatenate([x[:, s].reshape(n, -1) for x in layers], axis=1) for s in range(first_step, needed)]


def object_solution_times(dprime_by_bin, behavioral_dprime, bin_start_ms=None) -> np.ndarray:
    """Per-image OST: first bin where the model d' reaches the behavioural d', linearly interpolated (spec 9.6).

    Args:
        dprime_by_bin: (b, n) model d' per bin; an image is either finite in every bin or NaN in every bin (untested).
        behavioral_dprime: (n,) behavioural d' per image (NaN: no behavioural d', so no OST).
        bin_start_ms: (b,) increasing bin times (default 70, 80, ... ms).

    Returns:
        (n,) OST in ms; NaN for unsolved or untested images. Images solved in the first bin get bin_start_ms[0].
    """
    d = np.asarray(dprime_by_bin, dtype=np.float64)
    beh = np.asarray(behavioral_dprime, dtype=np.float64)
    if d.ndim != 2 or beh.shape != (d.shape[1],):
        raise ValueError(f"Expected dprime_by_bin (b, n) and behavioral_dprime (n,). Received: {d.shape}, {beh.shape}")
    times = 70.0 + 10.0 * np.arange(d.shape[0]) if bin_start_ms is None else np.asarray(bin_start_ms, dtype=float)
    if times.shape != (d.shape[0],) or np.any(np.diff(times) <= 0):
        raise ValueError(f"bin_start_ms must be ({d.shape[0]},) strictly increasing times. Received: {times}")
    tested = np.isfinite(d)
    partial = tested.any(axis=0) & ~tested.all(axis=0)
    if partial.any():
        raise ValueError(
            f"Images {np.flatnonzero(partial)[:5].tolist()}... have d' in some bins only; decode every "
            f"bin on the same splits."
        )
    valid = tested.all(axis=0) & np.isfinite(beh)
    reached = (d >= beh[None, :]) & valid[None, :]  # (b, n)
    solved = reached.any(axis=0)
    k = np.argmax(reached, axis=0)  # first bin reaching the behavioural d'
    prev = np.maximum(k - 1, 0)
    cols = np.arange(d.shape[1])
    d_prev, d_k = d[prev, cols], d[k, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (beh - d_prev) / (d_k - d_prev)  # in (0, 1] when k > 0, since d_prev < beh <= d_k
        ost = np.where(k > 0, times[prev] + (times[k] - times[prev]) * frac, times[0])
    return np.where(solved, ost, np.nan)


class OSTConsistency(NamedTuple):
    rho: float  # Spearman rho over images solved by both (NaN if < 3 such images or either side constant)
    n_common: int  # images solved by both model and IT
    fraction_solved: float  # n_common / IT-solved images (NaN if IT solved none)


def ost_consistency(model_ost, it_ost) -> OSTConsistency:
    """Spearman rho between model and IT OSTs over images solved (finite OST) by both (spec 9.7)."""
    model_ost, it_ost = np.asarray(model_ost, dtype=float), np.asarray(it_ost, dtype=float)
    if model_ost.ndim != 1 or model_ost.shape != it_ost.shape:
        raise ValueError(
            f"model_ost and it_ost must be matching (n,) arrays. Received: {model_ost.shape}, {it_ost.shape}"
        )
    both = np.isfinite(model_ost) & np.isfinite(it_ost)
    n_common, n_it = int(both.sum()), int(np.isfinite(it_ost).sum())
    fraction = n_common / n_it if n_it else float("nan")
    a, b = model_ost[both], it_ost[both]
    if n_common < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return OSTConsistency(float("nan"), n_common, fraction)
    return OSTConsistency(float(scipy.stats.spearmanr(a, b)[0]), n_common, fraction)


@dataclasses.dataclass
class OSTResult:
    dprime: np.ndarray  # (s, b, n) decoded d', NaN where the image was not a test image
    ost: np.ndarray  # (s, n) model OST per split, NaN if untested or unsolved
    rho: np.ndarray  # (s,) per-split Spearman rho against IT OST over that split's test images
    n_common: np.ndarray  # (s,) images solved by both, per split
    fraction_solved: np.ndarray  # (s,) fraction of the split's IT-solved test images the model solves
    mean: float  # mean rho over splits (finite ones)
    sem: float  # s.e.m. of rho over splits: std(ddof=1) / sqrt(splits)
    pooled_ost: np.ndarray  # (n,) OST from d' averaged over the splits where each image was tested
    pooled: OSTConsistency  # consistency of pooled_ost with IT OST over all images


def ost_pipeline(
    features: Sequence[np.ndarray],
    labels,
    behavioral_dprime,
    it_ost,
    splits,
    *,
    mapping: str | None = None,
    n_bins: int = N_BINS,
    bin_start_ms=None,
    pca_components: int = PCA_COMPONENTS,
    svm_c: float = SVM_C,
    seed: int = 0,
    n_units: int | None = None,
    clip: float = DPRIME_CLIP,
) -> OSTResult:
    """Decode d' per bin and split, compute OSTs, and score them against IT OSTs (spec 9.3-9.7).

    Args:
        features: per-bin (n, p) features (mapping=None, e.g. from `convrnn_to_time`), or the IT-preferred layers
            in hierarchy order (mapping="uniform"/"graded", mapped to n_bins by `layer_to_time`).
        labels: (n,) integer class per image.
        behavioral_dprime: (n,) primate behavioural d' per image.
        it_ost: (n,) IT OST per image in ms (NaN: not solved by IT).
        splits: (train, test) index pairs, e.g. `ost_splits(labels)`.
        mapping, n_bins, n_units, seed: layer-to-time mapping (seed also seeds the decoder).
        bin_start_ms: bin times (default 70 + 10 j ms).
        pca_components, svm_c, clip: decoder settings (`decode_dprime`).
    """
    if mapping is not None:
        features = layer_to_time(features, n_bins=n_bins, mapping=mapping, seed=seed, n_units=n_units)
    features = _check_layers(features)
    n = features[0].shape[0]
    beh, it_ost = np.asarray(behavioral_dprime, dtype=float), np.asarray(it_ost, dtype=float)
    if beh.shape != (n,) or it_ost.shape != (n,):
        raise ValueError(f"behavioral_dprime and it_ost must be ({n},). Received: {beh.shape}, {it_ost.shape}")
    splits = [(np.asarray(tr, dtype=int), np.asarray(te, dtype=int)) for tr, te in splits]
    decode = dict(pca_components=pca_components, svm_c=svm_c, seed=seed, clip=clip)
    dprime = np.stack([decode_dprime(x, labels, splits, **decode) for x in features], axis=1)  # (s, b, n)
    ost = np.stack([object_solution_times(d, beh, bin_start_ms) for d in dprime])  # (s, n)
    scores = []
    for s, (_, test) in enumerate(splits):
        it_test = np.full(n, np.nan)
        it_test[test] = it_ost[test]  # score each split on its own test images
        scores.append(ost_consistency(ost[s], it_test))
    rho = np.array([c.rho for c in scores])
    finite = rho[np.isfinite(rho)]
    mean = float(finite.mean()) if finite.size else float("nan")
    sem = float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else float("nan")
    tested = np.isfinite(dprime)
    n_tested = tested.sum(axis=0)  # (b, n) splits in which each image was tested
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled_d = np.where(tested, dprime, 0.0).sum(axis=0) / n_tested  # (b, n); never tested -> NaN
    pooled_ost = object_solution_times(pooled_d, beh, bin_start_ms)
    return OSTResult(
        dprime=dprime,
        ost=ost,
        rho=rho,
        n_common=np.array([c.n_common for c in scores]),
        fraction_solved=np.array([c.fraction_solved for c in scores]),
        mean=mean,
        sem=sem,
        pooled_ost=pooled_ost,
        pooled=ost_consistency(pooled_ost, it_ost),
    )


def ost_splits(labels, n_train_per_class: int = 100, n_splits: int = 10, seed: int = 0, n_test_per_class=None):
    """Train/test splits with n_train_per_class training images per class; every image is tested at least once.

    Returns:
        list of n_splits (train_indices, test_indices) sorted int arrays (module docstring for the scheme).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty (n,) array. Received shape: {labels.shape}")
    if n_splits < 1 or n_train_per_class < 1:
        raise ValueError(f"n_splits and n_train_per_class must be >= 1. Received: {n_splits}, {n_train_per_class}")
    rng = np.random.default_rng(seed)
    train, test = [[] for _ in range(n_splits)], [[] for _ in range(n_splits)]
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        size = members.size
        m = size - n_train_per_class if n_test_per_class is None else int(n_test_per_class)
        if m < 1 or n_train_per_class + m > size:
            raise ValueError(
                f"Class {c} has {size} images: cannot take {n_train_per_class} train + {m} test. "
                f"Lower n_train_per_class or n_test_per_class."
            )
        if n_splits * m < size:
            raise ValueError(
                f"Class {c}: {n_splits} splits x {m} test images < {size} images, so some image would "
                f"never be tested; raise n_splits or n_test_per_class."
            )
        for s in range(n_splits):
            order = members[(s * m + np.arange(size)) % size]  # test block first, then the rest
            test[s].append(order[:m])
            train[s].append(order[m : m + n_train_per_class])
    return [(np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))) for tr, te in zip(train, test)]
