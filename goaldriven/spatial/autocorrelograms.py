"""Spatial autocorrelograms (SACs), their rotations and ring correlations: the pieces of the grid scores.

The formulas are in scores.py's docstring; this module says how they are computed fast for a stack of maps.

Reference SAC (`reference_autocorrelogram`): the window sums S1, S11 of each lag are corner-anchored rectangle
sums, taken with cumulative sums running from that corner (so an all-zero window sums to exactly 0, as in the
reference's direct sums, and the rounding is relative to the window's own values); S12 is a cross-correlation
done by FFT on the map minus its global mean (covariances do not change under that shift), except at the lags
whose windows have so little variance that the FFT's rounding could show: those are summed directly.

Reference rotation: scipy.ndimage.rotate(order=3, prefilter=True) is a cubic B-spline prefilter (separable,
spline_filter1d along each axis) followed by a 4 x 4-tap interpolation. Both are linear: the prefilter is applied
to the whole stack, and the interpolation is a sparse operator (cached per shape, angle and nbins) measured by
rotating images of well-separated deltas with prefilter=False, keeping only the lags inside the outermost ring.

Pearson SAC (`spatial_autocorrelogram`): every sum of the NaN-aware per-lag Pearson r is an FFT
cross-correlation (see `_pearson_sacs`); its rotation is bilinear (order=1) with a validity mask.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.sparse
import scipy.special

# u: units, h/w: spatial bins, H/W = 2h-1/2w-1: SAC lags, k: ring masks, P = H*W, Q: lags used by the rings

RING_INNER = 0.2  # inner ring radius, in units of n bins (reference: starts = [0.2] * 10)
RING_OUTER = np.linspace(0.4, 1.0, 10)  # outer ring radii, in units of n bins (reference: linspace(0.4, 1, 10))
ANGLES = (30, 45, 60, 90, 120, 135, 150)
REFERENCE_VARIANCE_FLOOR = 1e-5  # added to the ring variance by the reference correlation
_ZERO_VARIANCE = 1e-12  # a lag window whose variance is below this fraction of its mean square counts as constant
_FFT_ROUNDING = 1e-15  # bound on an FFT cross-correlation's error, relative to the map's sum of squares
_SAC_TOLERANCE = 1e-9  # reference SAC lags whose FFT error could exceed this are summed directly
_BASIS_BLOCK = 256
_COMB = 7  # delta spacing for building rotation operators (> twice the reach of cubic interpolation)


def _xcorr_plan(h: int, w: int):
    """Returns xcorr(fa, fb) = sum_p a(p) b(p + l) on the lag grid (2h-1, 2w-1), and the FFT shape."""
    shape = (scipy.fft.next_fast_len(2 * h - 1, real=True), scipy.fft.next_fast_len(2 * w - 1, real=True))
    rows = np.r_[shape[0] - (h - 1) : shape[0], 0:h]  # lags -(h-1)..h-1
    cols = np.r_[shape[1] - (w - 1) : shape[1], 0:w]

    def xcorr(fa, fb):
        full = scipy.fft.irfft2(np.conj(fa) * fb, s=shape)
        return full[:, rows][:, :, cols]

    return xcorr, shape


def _pearson_sacs(maps: np.ndarray, min_overlap: int) -> np.ndarray:
    """NaN-aware Pearson autocorrelograms of a (u, h, w) stack -> (u, 2h-1, 2w-1).

    With m the validity mask and x = r * m: N = m*m, S1 = x*m, S2 = m*x, S11 = x^2*m, S22 = m*x^2, S12 = x*x
    (cross-correlations), SAC = (N S12 - S1 S2) / sqrt((N S11 - S1^2)(N S22 - S2^2)), NaN where N < min_overlap.
    """
    u, h, w = maps.shape
    valid = np.isfinite(maps)
    # Standardise each map first: Pearson is invariant to it, and it keeps the moment differences well conditioned.
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = np.where(valid, maps, 0.0)
        n_valid = valid.sum((1, 2), keepdims=True)
        mean = filled.sum((1, 2), keepdims=True) / n_valid
        centred = np.where(valid, maps - mean, 0.0)
        scale = np.sqrt((centred**2).sum((1, 2), keepdims=True) / n_valid)
        x = np.where(scale > 0, centred / scale, 0.0)  # (u, h, w)
    m = valid.astype(np.float64)
    xcorr, shape = _xcorr_plan(h, w)
    fm, fx, fxx = (scipy.fft.rfft2(a, s=shape) for a in (m, x, x * x))
    n = np.rint(xcorr(fm, fm))
    s1, s2 = xcorr(fx, fm), xcorr(fm, fx)
    s11, s22, s12 = xcorr(fxx, fm), xcorr(fm, fxx), xcorr(fx, fx)
    var1, var2 = n * s11 - s1 * s1, n * s22 - s2 * s2
    with np.errstate(invalid="ignore", divide="ignore"):
        sac = (n * s12 - s1 * s2) / np.sqrt(var1 * var2)
    tiny = 1e-10 * np.maximum(n, 1) ** 2
    sac[(n < min_overlap) | (var1 <= tiny) | (var2 <= tiny)] = np.nan
    return np.clip(sac, -1.0, 1.0)


def _lag_window_sums(v: np.ndarray, axis: int) -> np.ndarray:
    """Along `axis` (length n) -> length 2n-1: at lag d (index d + n - 1), the sum of v[p] over p with p + d in range.

    Lag d >= 0 sums the prefix v[0 : n-d], lag d < 0 the suffix v[-d : n]; each comes from a cumulative sum that
    starts at its own end, so it only ever adds the values it reports.
    """
    n = v.shape[axis]
    prefix = np.cumsum(v, axis)  # prefix[k] = v[0] + ... + v[k]
    suffix = np.cumsum(np.flip(v, axis), axis)  # suffix[k] = v[n-1-k] + ... + v[n-1]
    negative = np.take(suffix, np.arange(n - 1), axis)  # lags -(n-1)..-1: suffixes of length 1..n-1
    positive = np.take(prefix, np.arange(n - 1, -1, -1), axis)  # lags 0..n-1: prefixes of length n..1
    return np.concatenate([negative, positive], axis)


def _windows(x: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The bins p and p + (dy, dx) of the lag's overlap, as two (u, h - |dy|, w - |dx|) views."""
    h, w = x.shape[1:]
    first = x[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    second = x[:, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
    return first, second


def _reference_sacs(maps: np.ndarray) -> np.ndarray:
    """The reference scorer's autocorrelograms of a (u, h, w) stack -> (u, 2h-1, 2w-1); see scores.py."""
    u, h, w = maps.shape
    x = np.where(np.isnan(maps), 0.0, maps)  # the reference: unvisited bins are zero-rate bins, and count
    n = np.outer(h - np.abs(np.arange(1 - h, h)), w - np.abs(np.arange(1 - w, w))).astype(np.float64)  # (H, W)
    s1 = _lag_window_sums(_lag_window_sums(x, 1), 2)  # sum of x(p) over the lag's window
    s11 = _lag_window_sums(_lag_window_sums(x * x, 1), 2)
    var1 = s11 / n - (s1 / n) ** 2  # the reference's one-pass variance of the window of p
    # 0/0 (a window of one pair, or of equal values) is 0 in the reference (np.nan_to_num).
    constant = var1 <= _ZERO_VARIANCE * s11 / n
    # The window of p + l at lag l is the window of p at lag -l: S2(l) = S1(-l), var2(l) = var1(-l).
    constant |= constant[:, ::-1, ::-1]
    with np.errstate(invalid="ignore"):
        scale = np.sqrt(var1 * var1[:, ::-1, ::-1])

    # Covariances do not change when the map is shifted by its mean, which keeps the FFT's rounding small:
    # cov = S12'/N - S1' S2'/N^2 on x' = x - mean, with S1' = S1 - N mean.
    mean = x.mean((1, 2), keepdims=True)
    xc = x - mean
    xcorr, shape = _xcorr_plan(h, w)
    fx = scipy.fft.rfft2(xc, s=shape)
    s1c = s1 - n * mean
    cov = xcorr(fx, fx) / n - s1c * s1c[:, ::-1, ::-1] / n**2
    # The FFT's rounding of S12' is <= ~1e-15 of the map's sum of x'^2 (measured 5.5e-16). Where, divided by N, it
    # could exceed _SAC_TOLERANCE of s1 s2 (a window of tiny rates, e.g. 1e-7 next to zeros, in a map of rates ~1),
    # the covariance is summed directly (two-pass) instead.
    energy = (xc * xc).sum((1, 2), keepdims=True)
    redo = ~constant & (scale * n * _SAC_TOLERANCE < _FFT_ROUNDING * energy)
    for iy, ix in zip(*np.nonzero(redo.any(0))):
        units = np.flatnonzero(redo[:, iy, ix])
        first, second = _windows(x[units], iy - (h - 1), ix - (w - 1))
        first = first - first.mean((1, 2), keepdims=True)
        second = second - second.mean((1, 2), keepdims=True)
        cov[units, iy, ix] = (first * second).mean((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        sac = cov / scale
    return np.where(constant, 0.0, sac)


def _check_sac_input(ratemap) -> np.ndarray:
    ratemap = np.asarray(ratemap, dtype=np.float64)
    if ratemap.ndim not in (2, 3) or min(ratemap.shape[-2:]) < 2:
        raise ValueError(f"ratemap must be 2-D (h, w) or 3-D (u, h, w) with >= 2x2 bins; received {ratemap.shape}.")
    return ratemap


def spatial_autocorrelogram(ratemap: np.ndarray, min_overlap: int = 20) -> np.ndarray:
    """NaN-aware Pearson spatial autocorrelogram of one rate map or a stack (the "pearson"/"strict" grid scores).

    Args:
        ratemap: (h, w) or (u, h, w); NaN marks unvisited bins.
        min_overlap: lags whose overlap has fewer valid bin pairs are NaN.

    Returns:
        (2h-1, 2w-1) or (u, 2h-1, 2w-1) float64; zero lag at index (h-1, w-1) is 1 (NaN for a constant map).
    """
    ratemap = _check_sac_input(ratemap)
    if int(min_overlap) != min_overlap or min_overlap < 2:
        raise ValueError(f"min_overlap must be an integer >= 2; received {min_overlap!r}.")
    if ratemap.ndim == 2:
        return _pearson_sacs(ratemap[None], min_overlap)[0]
    return _pearson_sacs(ratemap, min_overlap)


def reference_autocorrelogram(ratemap: np.ndarray) -> np.ndarray:
    """The reference scorer's spatial autocorrelogram (the default grid score's); formulas in scores.py.

    Args:
        ratemap: (h, w) or (u, h, w); NaN bins are read as rate 0 (as the reference does).

    Returns:
        (2h-1, 2w-1) or (u, 2h-1, 2w-1) float64, no NaN; 0 at lags whose window has zero variance.
    """
    ratemap = _check_sac_input(ratemap)
    return _reference_sacs(ratemap[None])[0] if ratemap.ndim == 2 else _reference_sacs(ratemap)


def ring_masks(sac_shape: tuple[int, int], nbins: int) -> np.ndarray:
    """The ten annuli used for grid scores, shape (k=10, H, W) bool.

    Annulus i holds the lags at distance d = sqrt(dy^2 + dx^2) (in bins) from the zero lag with
    RING_INNER * nbins < d <= RING_OUTER[i] * nbins (the reference's circle_mask difference).
    """
    H, W = sac_shape
    dy = np.arange(H)[:, None] - (H - 1) // 2
    dx = np.arange(W)[None, :] - (W - 1) // 2
    d = np.sqrt(dy**2 + dx**2)
    return np.stack([(d > RING_INNER * nbins) & (d <= outer * nbins) for outer in RING_OUTER])


def _rotate_plain(images: np.ndarray, angle: float, order: int) -> np.ndarray:
    """scipy.ndimage.rotate of a (b, H, W) stack without the spline prefilter (the interpolation step alone)."""
    return scipy.ndimage.rotate(
        images, angle, axes=(1, 2), reshape=False, order=order, mode="constant", prefilter=False
    )


def _rotated_basis(shape: tuple[int, int], angle: float, order: int) -> scipy.sparse.csr_matrix:
    """Sparse (P, P) R with R @ img.ravel() == rotate(img, angle, reshape=False, order, prefilter=False).ravel().

    Interpolation of order <= 3 reads the input within 3 bins of each output's source coordinate (rotate's own
    matrix [[cos, sin], [-sin, cos]] about the centre), so an image of deltas _COMB bins apart gives the weights of
    all its deltas at once, each output being charged to the one delta near its source: _COMB^2 rotations instead
    of P. The operator is checked against scipy on a random image, and built from P basis images if it differs.
    """
    H, W = shape
    c, s = scipy.special.cosdg(angle), scipy.special.sindg(angle)
    centre = (np.array(shape) - 1) / 2
    offset = centre - np.array([[c, s], [-s, c]]) @ centre
    oy, ox = np.mgrid[0:H, 0:W]
    src_y, src_x = c * oy + s * ox + offset[0], -s * oy + c * ox + offset[1]  # (H, W) source coordinates
    rows, cols, vals = [], [], []
    for a in range(_COMB):
        combs = np.zeros((_COMB, H, W))
        for b in range(_COMB):
            combs[b, a::_COMB, b::_COMB] = 1.0
        rotated = _rotate_plain(combs, angle, order)  # (b, H, W)
        delta_y = a + _COMB * np.round((src_y - a) / _COMB)
        for b in range(_COMB):
            delta_x = b + _COMB * np.round((src_x - b) / _COMB)
            hit = rotated[b] != 0
            rows.append(np.flatnonzero(hit))
            cols.append((delta_y[hit] * W + delta_x[hit]).astype(np.int64))
            vals.append(rotated[b][hit])
    rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    probe = np.random.default_rng(0).random((1, H, W))
    if cols.min() >= 0 and cols.max() < H * W:
        op = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(H * W, H * W))
        if np.allclose(op @ probe.ravel(), _rotate_plain(probe, angle, order).ravel(), rtol=0, atol=1e-12):
            return op
    blocks = []  # fallback: one basis image per input lag
    for start in range(0, H * W, _BASIS_BLOCK):
        stop = min(start + _BASIS_BLOCK, H * W)
        basis = np.zeros((stop - start, H * W))
        basis[np.arange(stop - start), np.arange(start, stop)] = 1.0
        rotated = _rotate_plain(basis.reshape(-1, H, W), angle, order)
        blocks.append(scipy.sparse.csr_matrix(rotated.reshape(stop - start, H * W)))
    return scipy.sparse.vstack(blocks).T.tocsr()  # (P out, P in)


@functools.lru_cache(maxsize=32)
def _bilinear_rotation(shape: tuple[int, int], angle: float, nbins: int) -> scipy.sparse.csr_matrix:
    """Bilinear rotation (order 1 needs no prefilter), rows restricted to the lags of the widest ring, (Q, P)."""
    return _rotated_basis(shape, angle, order=1)[_ring_lags(shape, nbins)[0]]


@functools.lru_cache(maxsize=32)
def _spline_interpolation(shape: tuple[int, int], angle: float, nbins: int) -> scipy.sparse.csr_matrix:
    """Cubic-spline interpolation half of rotate(order=3), rows restricted to the lags of the widest ring, (Q, P)."""
    return _rotated_basis(shape, angle, order=3)[_ring_lags(shape, nbins)[0]]


def pearson_ring_correlations(sacs: np.ndarray, nbins: int) -> dict[int, np.ndarray]:
    """Pearson r over each ring between a SAC and its bilinear rotations, valid lags only: {angle: (u, k)}."""
    u, H, W = sacs.shape
    used, rings = _ring_lags((H, W), nbins)  # (Q,), sparse (k, Q)
    flat = sacs.reshape(u, -1).T  # (P, u)
    valid = np.isfinite(flat)
    filled = np.where(valid, flat, 0.0)
    valid_used = valid[used]  # (Q, u)
    corrs = {}
    for angle in ANGLES:
        op = _bilinear_rotation((H, W), angle, nbins)  # (Q, P)
        # A rotated lag is valid only if all the lags it interpolates from are valid (rotated mask > 0.99), so the
        # zeros standing in for NaN never leak into the values used.
        rot = op @ filled  # (Q, u)
        joint = valid_used & (op @ valid.astype(np.float64) > 0.99)
        a = np.where(joint, filled[used], 0.0)
        b = np.where(joint, rot, 0.0)
        n = rings @ joint.astype(np.float64)  # (k, u)
        sa, sb = rings @ a, rings @ b
        saa, sbb, sab = rings @ (a * a), rings @ (b * b), rings @ (a * b)
        var_a, var_b = n * saa - sa * sa, n * sbb - sb * sb
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (n * sab - sa * sb) / np.sqrt(var_a * var_b)
        r[(n < 3) | (var_a <= 1e-12 * n * n) | (var_b <= 1e-12 * n * n)] = np.nan
        corrs[angle] = r.T
    return corrs


@functools.lru_cache(maxsize=32)
def _ring_lags(shape: tuple[int, int], nbins: int) -> tuple[np.ndarray, scipy.sparse.csr_matrix]:
    """The lags of the widest ring (Q,) and the rings over them as a sparse (k, Q) 0/1 matrix.

    Sparse, because small dense GEMMs stall OpenBLAS threads on a busy machine; the sparse product is one thread.
    """
    rings = ring_masks(shape, nbins).reshape(len(RING_OUTER), -1)
    used = np.flatnonzero(rings[-1])
    return used, scipy.sparse.csr_matrix(rings[:, used].astype(np.float64))


def reference_ring_correlations(sacs: np.ndarray, nbins: int) -> dict[int, np.ndarray]:
    """The reference's normalised correlation over each ring of a SAC and its cubic rotations: {angle: (u, k)}.

    c_a = [sum_ring (S - mu)(R_a - mu) / A] / [sum_ring (S - mu)^2 / A + 1e-5], mu = sum_ring S / A; computed as
    (sum_ring S R_a - mu sum_ring R_a) / A / v, which is the same sum since sum_ring (S - mu) = 0.
    """
    u, H, W = sacs.shape
    used, rings = _ring_lags((H, W), nbins)
    area = np.asarray(rings.sum(1))  # (k, 1)
    s = np.ascontiguousarray(sacs.reshape(u, -1)[:, used].T)  # (Q, u)
    mu = rings @ s / area  # (k, u)
    variance = rings @ (s * s) / area - mu * mu + REFERENCE_VARIANCE_FLOOR
    coeffs = scipy.ndimage.spline_filter1d(sacs, order=3, axis=1, mode="constant", output=np.float64)
    coeffs = scipy.ndimage.spline_filter1d(coeffs, order=3, axis=2, mode="constant", output=np.float64)
    coeffs = np.ascontiguousarray(coeffs.reshape(u, -1).T)  # (P, u)
    corrs = {}
    for angle in ANGLES:
        rot = _spline_interpolation((H, W), angle, nbins) @ coeffs  # (Q, u)
        corrs[angle] = ((rings @ (s * rot) - mu * (rings @ rot)) / area / variance).T  # (u, k)
    return corrs
