"""Grid and border scores of spatial rate maps.

Reference: A. Nayebi, PhD thesis (Stanford), Chapter 4, Section 4.8.4; Langston et al.
2010 (grid score); Banino et al. 2018 (ring masks, "min/max" variant); Solstad et al.
2008 (border score).

Spatial autocorrelogram (SAC) of a rate map r with NaN (unvisited) bins: for each lag
l, the Pearson correlation of r(p) and r(p + l) over the bins p valid in both. With
m the validity mask and x = r * m, every sum is a cross-correlation done by FFT:

    N = m*m,  S1 = x*m,  S2 = m*x,  S11 = x^2*m,  S22 = m*x^2,  S12 = x*x
    SAC(l) = (N S12 - S1 S2) / sqrt((N S11 - S1^2) (N S22 - S2^2)),
    NaN where N < min_overlap.   Shape (2h-1, 2w-1), lag 0 at index (h-1, w-1).

Grid scores: r_a is the Pearson correlation, over a ring of the SAC, between the SAC
and the SAC rotated by a degrees. Ten rings, inner radius 0.2 n and outer radius in
linspace(0.4, 1.0, 10) n (n = bins per side; distances in bins from the centre):

    method="mean"   (thesis, Langston 2010):
        score60 = mean(r60, r120) - mean(r30, r90, r150),   score90 = r90 - mean(r45, r135)
    method="minmax" (Banino et al. 2018 code):
        score60 = min(r60, r120) - max(r30, r90, r150),     score90 = r90 - mean(r45, r135)

(the Banino code keeps the mean form for the 90-degree score in both modes). Each
score is the maximum over the ten rings.

False positives (measured by bench/grid_score_null.py on 20 x 20 maps): with the conventional SAC (every lag with
>= 20 overlapping bins, as in the Banino/Sorscher scorer the thesis used) about a quarter of smooth random fields
(Gaussian-filtered white noise, sigma = 2 bins) score above 0.3, because correlations over the few bins that overlap
at large lags are noisy and the ring masks reach them. Counting only lags with >= 37.5% of the bins overlapping
(STRICT_MIN_OVERLAP_FRACTION; 150 of 400) cuts that to a few percent while hexagonal patterns still score > 1.
Evaluations report both: the conventional fraction (comparable with the thesis) and the strict one.

Border score (Solstad 2008): b = (CM - DM) / (CM + DM), where fields are 4-connected
groups of >= min_field_bins bins with rate > field_threshold * peak; CM is the largest
fraction of one wall's bins covered by one field; DM is the rate-weighted mean distance
of field bins to the nearest wall, divided by half the shorter side.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.sparse

# u: units, h/w: spatial bins, H/W = 2h-1/2w-1: SAC lags, k: ring masks, P = H*W

GRID_THRESHOLD = 0.3  # grid cell: score60 > 0.3 (thesis)
BORDER_THRESHOLD = 0.5  # border cell: border score > 0.5 (thesis)
RING_INNER = 0.2  # inner ring radius, in units of n bins
RING_OUTER = np.linspace(0.4, 1.0, 10)  # outer ring radii, in units of n bins
STRICT_MIN_OVERLAP_FRACTION = 0.375  # strict SAC: lags where >= 37.5% of the bins overlap (see docstring)
_ANGLES = (30, 45, 60, 90, 120, 135, 150)
_METHODS = ("mean", "minmax")
_CHUNK = 512  # units per batch: bounds memory at ~100 MB for 20x20 maps


def _check_stack(ratemaps, name="ratemaps") -> np.ndarray:
    ratemaps = np.asarray(ratemaps, dtype=np.float64)
    if ratemaps.ndim != 3:
        raise ValueError(
            f"{name} must be 3-D (u, h, w); received shape {ratemaps.shape}. "
            f"For a single map use the singular function, or pass map[None]."
        )
    if min(ratemaps.shape[1:]) < 2:
        raise ValueError(f"{name} need at least 2x2 bins; received shape {ratemaps.shape}.")
    return ratemaps


def _check_map(ratemap, fn: str) -> np.ndarray:
    ratemap = np.asarray(ratemap, dtype=np.float64)
    if ratemap.ndim != 2:
        raise ValueError(
            f"ratemap must be 2-D (h, w); received shape {ratemap.shape}. "
            f"Pass one unit's map, or use {fn}() for a stack."
        )
    return ratemap


def _sacs(maps: np.ndarray, min_overlap: int) -> np.ndarray:
    """NaN-aware Pearson autocorrelograms of a (u, h, w) stack -> (u, 2h-1, 2w-1)."""
    u, h, w = maps.shape
    valid = np.isfinite(maps)
    # Standardise each map first: Pearson is invariant to it, and it keeps the
    # moment differences below well conditioned.
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = np.where(valid, maps, 0.0)
        n_valid = valid.sum((1, 2), keepdims=True)
        mean = filled.sum((1, 2), keepdims=True) / n_valid
        centred = np.where(valid, maps - mean, 0.0)
        scale = np.sqrt((centred**2).sum((1, 2), keepdims=True) / n_valid)
        x = np.where(scale > 0, centred / scale, 0.0)  # (u, h, w)
    m = valid.astype(np.float64)
    shape = (scipy.fft.next_fast_len(2 * h - 1, real=True), scipy.fft.next_fast_len(2 * w - 1, real=True))
    fm, fx, fxx = (scipy.fft.rfft2(a, s=shape) for a in (m, x, x * x))

    rows = np.r_[shape[0] - (h - 1) : shape[0], 0:h]  # lags -(h-1)..h-1
    cols = np.r_[shape[1] - (w - 1) : shape[1], 0:w]

    def xcorr(fa, fb):  # sum_p a(p) b(p + l), lag-centred
        full = scipy.fft.irfft2(np.conj(fa) * fb, s=shape)
        return full[:, rows][:, :, cols]

    n = np.rint(xcorr(fm, fm))
    s1, s2 = xcorr(fx, fm), xcorr(fm, fx)
    s11, s22, s12 = xcorr(fxx, fm), xcorr(fm, fxx), xcorr(fx, fx)
    var1, var2 = n * s11 - s1 * s1, n * s22 - s2 * s2
    with np.errstate(invalid="ignore", divide="ignore"):
        sac = (n * s12 - s1 * s2) / np.sqrt(var1 * var2)
    tiny = 1e-10 * np.maximum(n, 1) ** 2
    sac[(n < min_overlap) | (var1 <= tiny) | (var2 <= tiny)] = np.nan
    return np.clip(sac, -1.0, 1.0)


def spatial_autocorrelogram(ratemap: np.ndarray, min_overlap: int = 20) -> np.ndarray:
    """NaN-aware Pearson spatial autocorrelogram of one rate map or a stack.

    Args:
        ratemap: (h, w) or (u, h, w); NaN marks unvisited bins.
        min_overlap: lags whose overlap has fewer valid bin pairs are NaN.

    Returns:
        (2h-1, 2w-1) or (u, 2h-1, 2w-1) float64; zero lag at index (h-1, w-1) is 1
        (NaN for a constant map).
    """
    ratemap = np.asarray(ratemap, dtype=np.float64)
    if ratemap.ndim not in (2, 3):
        raise ValueError(f"ratemap must be 2-D (h, w) or 3-D (u, h, w); received shape {ratemap.shape}.")
    if int(min_overlap) != min_overlap or min_overlap < 2:
        raise ValueError(f"min_overlap must be an integer >= 2; received {min_overlap!r}.")
    if ratemap.ndim == 2:
        return _sacs(ratemap[None], min_overlap)[0]
    return _sacs(_check_stack(ratemap), min_overlap)


def ring_masks(sac_shape: tuple[int, int], nbins: int) -> np.ndarray:
    """The ten annuli used for grid scores, shape (k=10, H, W) bool.

    Annulus i holds the lags at distance d (in bins) from the centre with
    RING_INNER * nbins < d <= RING_OUTER[i] * nbins.
    """
    H, W = sac_shape
    dy = np.arange(H)[:, None] - (H - 1) / 2
    dx = np.arange(W)[None, :] - (W - 1) / 2
    d = np.hypot(dy, dx)
    return np.stack([(d > RING_INNER * nbins) & (d <= r * nbins) for r in RING_OUTER])


@functools.lru_cache(maxsize=32)
def _rotation_operator(shape: tuple[int, int], angle: float) -> scipy.sparse.csr_matrix:
    """Sparse (P, P) matrix R with R @ img.ravel() == rotate(img, angle).ravel().

    Bilinear rotation is linear in the image, so rotating the P basis images once
    with scipy.ndimage.rotate (order=1, reshape=False, zero padding) gives the exact
    operator; applying it to a stack is one sparse product instead of u calls.
    """
    n_pix = shape[0] * shape[1]
    blocks = []
    for start in range(0, n_pix, 256):
        stop = min(start + 256, n_pix)
        basis = np.zeros((stop - start, n_pix))
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        rotated = scipy.ndimage.rotate(
            basis.reshape(-1, *shape), angle, axes=(1, 2), reshape=False, order=1, mode="constant", cval=0.0
        )
        blocks.append(scipy.sparse.csr_matrix(rotated.reshape(stop - start, n_pix)))
    return scipy.sparse.vstack(blocks).T.tocsr()  # (P out, P in)


def _rotation_correlations(sacs: np.ndarray, rings: np.ndarray) -> dict[int, np.ndarray]:
    """Pearson r between each SAC and its rotations, per ring: {angle: (u, k)}."""
    u, H, W = sacs.shape
    valid = np.isfinite(sacs).reshape(u, -1)  # (u, P)
    filled = np.where(valid, sacs.reshape(u, -1), 0.0)
    ring_mat = rings.reshape(len(rings), -1).T.astype(np.float64)  # (P, k)
    corrs = {}
    for angle in _ANGLES:
        op = _rotation_operator((H, W), angle)
        # Bilinear interpolation; a rotated point is valid only if all the bins it
        # interpolates from are valid (rotated mask > 0.99), so the zeros standing
        # in for NaN never leak into the values used.
        rot = (op @ filled.T).T  # (u, P)
        rot_valid = (op @ valid.T.astype(np.float64)).T > 0.99
        joint = valid & rot_valid  # (u, P)
        a = np.where(joint, filled, 0.0)
        b = np.where(joint, rot, 0.0)
        n = joint.astype(np.float64) @ ring_mat  # (u, k)
        sa, sb = a @ ring_mat, b @ ring_mat
        saa, sbb, sab = (a * a) @ ring_mat, (b * b) @ ring_mat, (a * b) @ ring_mat
        var_a, var_b = n * saa - sa * sa, n * sbb - sb * sb
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (n * sab - sa * sb) / np.sqrt(var_a * var_b)
        r[(n < 3) | (var_a <= 1e-12 * n * n) | (var_b <= 1e-12 * n * n)] = np.nan
        corrs[angle] = r
    return corrs


def _nanmax_argmax(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max and argmax over the last axis ignoring NaN; (NaN, -1) for all-NaN rows."""
    all_nan = np.isnan(scores).all(-1)
    filled = np.where(np.isnan(scores), -np.inf, scores)
    best = filled.argmax(-1)
    value = np.take_along_axis(filled, best[..., None], -1)[..., 0]
    return np.where(all_nan, np.nan, value), np.where(all_nan, -1, best)


def grid_scores(
    ratemaps: np.ndarray,
    *,
    method: str = "mean",
    nbins: int | None = None,
    min_overlap: int = 20,
    return_sacs: bool = False,
) -> dict[str, np.ndarray]:
    """60- and 90-degree grid scores of a stack of rate maps (batched over units).

    Args:
        ratemaps: (u, h, w); NaN marks unvisited bins.
        method: "mean" (thesis / Langston 2010) or "minmax" (Banino et al. 2018).
        nbins: n setting the ring radii; defaults to min(h, w).
        min_overlap: minimum valid bin pairs per SAC lag (see spatial_autocorrelogram).
        return_sacs: also return the (u, 2h-1, 2w-1) autocorrelograms.

    Returns:
        Dict with "score60" and "score90" ((u,) float, max over rings, NaN if no ring
        gave a finite score), "mask60" and "mask90" ((u,) int index of the best ring
        in RING_OUTER, -1 if none), and "sacs" if requested.
    """
    ratemaps = _check_stack(ratemaps)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; received {method!r}.")
    nbins = min(ratemaps.shape[1:]) if nbins is None else nbins
    if int(nbins) != nbins or nbins < 2:
        raise ValueError(f"nbins must be an integer >= 2; received {nbins!r}.")
    u, h, w = ratemaps.shape
    rings = ring_masks((2 * h - 1, 2 * w - 1), nbins)
    out = {key: [] for key in ("score60", "score90", "mask60", "mask90", "sacs")}
    for start in range(0, u, _CHUNK):
        sacs = spatial_autocorrelogram(ratemaps[start : start + _CHUNK], min_overlap)
        r = _rotation_correlations(sacs, rings)  # {angle: (u, k)}
        if method == "mean":
            s60 = (r[60] + r[120]) / 2 - (r[30] + r[90] + r[150]) / 3
        else:
            s60 = np.minimum(r[60], r[120]) - np.maximum(np.maximum(r[30], r[90]), r[150])
        s90 = r[90] - (r[45] + r[135]) / 2
        for name, scores in (("60", s60), ("90", s90)):
            best, idx = _nanmax_argmax(scores)
            out["score" + name].append(best)
            out["mask" + name].append(idx)
        if return_sacs:
            out["sacs"].append(sacs)
    if not return_sacs:
        del out["sacs"]
    return {key: np.concatenate(value) for key, value in out.items()}


def grid_score(ratemap: np.ndarray, *, method: str = "mean", nbins: int | None = None) -> tuple[float, float]:
    """60- and 90-degree grid scores of one rate map.

    Args:
        ratemap: (h, w); NaN marks unvisited bins.
        method: "mean" (thesis) or "minmax" (Banino et al. 2018); see module docstring.
        nbins: n setting the ring radii; defaults to min(h, w).

    Returns:
        (score60, score90) as floats; NaN if the map is constant or too sparse.
    """
    ratemap = _check_map(ratemap, "grid_scores")
    scores = grid_scores(ratemap[None], method=method, nbins=nbins)
    return float(scores["score60"][0]), float(scores["score90"][0])


def border_scores(ratemaps: np.ndarray, *, field_threshold: float = 0.3, min_field_bins: int = 8) -> np.ndarray:
    """Solstad et al. (2008) border scores of a stack of rate maps (vectorised).

    Bins are assumed square (row = y, column = x); walls are the first/last row and
    column. Rates are used as given: a map whose peak is <= 0, or which is constant
    (no spatial modulation), or which has no field of >= min_field_bins bins gets NaN
    (not -1: "no field" is undefined rather than "anti-border"; fraction_above counts
    NaN as not above the threshold). NaN bins belong to no field and do not count as
    wall bins.

    Args:
        ratemaps: (u, h, w); NaN marks unvisited bins.
        field_threshold: a field bin has rate > field_threshold * peak rate.
        min_field_bins: smallest field, in bins (8 bins of 5 cm = 200 cm^2).

    Returns:
        (u,) float64 scores in [-1, 1], NaN where undefined.
    """
    maps = _check_stack(ratemaps)
    if not 0 <= field_threshold < 1:
        raise ValueError(f"field_threshold must be in [0, 1); received {field_threshold!r}.")
    if int(min_field_bins) != min_field_bins or min_field_bins < 1:
        raise ValueError(f"min_field_bins must be a positive integer; received {min_field_bins!r}.")
    u, h, w = maps.shape
    valid = np.isfinite(maps)
    filled = np.where(valid, maps, -np.inf)
    peak = filled.max((1, 2))  # (u,)
    low = np.where(valid, maps, np.inf).min((1, 2))
    defined = np.isfinite(peak) & (peak > 0) & (peak > low)
    above = valid & (filled > field_threshold * peak[:, None, None]) & defined[:, None, None]

    # Label all units at once; the structure connects 4-neighbours within a map only.
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = scipy.ndimage.generate_binary_structure(2, 1)
    labels, n_labels = scipy.ndimage.label(above, structure=structure)  # (u, h, w)
    sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)
    keep = sizes >= min_field_bins
    keep[0] = False
    unit_of = np.zeros(n_labels + 1, np.int64)
    unit_of[labels.ravel()] = np.repeat(np.arange(u), h * w)
    in_field = keep[labels]  # (u, h, w)

    # CM: best coverage of any single wall by any single field.
    cm = np.zeros(u)
    walls = (np.s_[:, :, 0], np.s_[:, :, -1], np.s_[:, 0, :], np.s_[:, -1, :])
    for wall in walls:
        n_wall = valid[wall].sum(1)  # (u,) valid bins on this wall
        covered = np.bincount(labels[wall].ravel(), minlength=n_labels + 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = covered / n_wall[unit_of]
        frac = np.where(keep & np.isfinite(frac), frac, 0.0)
        np.maximum.at(cm, unit_of, frac)

    # DM: rate-weighted distance of field bins to the nearest wall / half shorter side.
    iy = np.arange(h)[:, None] + 0.5
    ix = np.arange(w)[None, :] + 0.5
    dist = np.minimum(np.minimum(iy, h - iy), np.minimum(ix, w - ix)) / (min(h, w) / 2)
    weights = np.where(in_field, maps, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        dm = (weights * dist).sum((1, 2)) / weights.sum((1, 2))
        score = (cm - dm) / (cm + dm)
    return np.where(defined & in_field.any((1, 2)), score, np.nan)


def border_score(ratemap: np.ndarray, *, field_threshold: float = 0.3, min_field_bins: int = 8) -> float:
    """Solstad et al. (2008) border score of one rate map; see border_scores.

    Args:
        ratemap: (h, w); NaN marks unvisited bins.
        field_threshold: a field bin has rate > field_threshold * peak rate.
        min_field_bins: smallest field, in bins.

    Returns:
        Score in [-1, 1]; NaN if the map has no field (peak <= 0, constant map, or
        every supra-threshold region smaller than min_field_bins).
    """
    ratemap = _check_map(ratemap, "border_scores")
    return float(border_scores(ratemap[None], field_threshold=field_threshold, min_field_bins=min_field_bins)[0])


def fraction_above(scores: np.ndarray, threshold: float) -> float:
    """Fraction of units whose score is strictly above `threshold`.

    NaN scores (undefined: constant maps, no fields) count as not above but stay in
    the denominator, so the fraction is over all units scored.

    Args:
        scores: (u,) scores, e.g. grid_scores(...)["score60"].
        threshold: e.g. GRID_THRESHOLD (0.3) or BORDER_THRESHOLD (0.5).

    Returns:
        Fraction in [0, 1].
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array (u,); received shape {scores.shape}.")
    return float(np.mean(np.nan_to_num(scores, nan=-np.inf) > threshold))
