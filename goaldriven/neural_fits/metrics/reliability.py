"""Split-half reliability of every unit (Spearman-Brown corrected internal consistency), chunked for memory.

Reference: A. Nayebi, PhD thesis (Stanford, 2022): Section 2.5.6 (reliability, eq. 2.15), Section 3.6.3.

    reliability:      rho_n = < SB( Corr(s_1, s_2) ) >_bootstraps       s_j = mean of the j-th random half of trials

The halves come from splits.trial_halves (shared by every stimulus, unit and time bin). Half averages are one matrix
product with splits.half_weights, so the reliability is chunked over columns (units x bins) and bootstraps and never
copies the whole trial array (see `split_half_reliability` for the cost).
"""

from __future__ import annotations

import numpy as np

from goaldriven.neural_fits.metrics import correlation
from goaldriven.neural_fits.metrics.correlation import centered_corr
from goaldriven.neural_fits.metrics.splits import half_weights, trial_halves

# n: stimuli, u: units, t: time bins, r: trials, b: bootstraps


def split_half_reliability(trials, n_boot: int, seed, spearman_brown: bool = True, chunk_bytes: int = 2**28):
    """Split-half internal consistency per unit (ch2 Section 8.6 / eq. 2.15's rho_n; ch3 Section 3.6.3).

    For each bootstrap, the trials are split into two random halves (the same halves for every stimulus, unit and
    time bin; one random trial is left out when r is odd), each half is averaged, the Pearson correlation over
    stimuli of the two half averages is Spearman-Brown corrected (if `spearman_brown`) and the bootstraps are
    averaged (bootstraps giving NaN, e.g. a half with zero variance, are skipped; all NaN gives NaN).

    Cost: one BLAS product of (n * columns, r) by (r, b) per chunk (even r: s_2 = 2 mean - s_1; odd r: (r, 2 b)),
    i.e. ~2 r flops per stimulus x column x bootstrap, plus three einsum reductions. Measured: 2.4 s for 5120
    stimuli x 256 columns x 50 trials x 64 bootstraps on 2 busy CPU cores, so (5120, 256, 25, 50) with 900
    bootstraps takes ~15 min. Memory beyond the input: about `chunk_bytes` (columns are copied to float64 one
    chunk at a time) plus the (r, 2 b) weights; the trial array is never copied whole (a non-contiguous input is
    reshaped, which may copy it once).

    Args:
        trials: (n, u, r) or (n, u, t, r) responses; any float dtype.
        n_boot: number of bootstrap split halves (thesis: 900 in ch2, 100 in ch3/4).
        seed: int or np.random.Generator; the same seed draws the same halves as `trial_halves`.
        spearman_brown: apply SB (factor 2) to each bootstrap's correlation.
        chunk_bytes: working-memory budget of one chunk.

    Returns:
        (u,) or (u, t) float64 reliabilities.
    """
    trials = np.asarray(trials)
    if trials.ndim not in (3, 4):
        raise ValueError(f"trials must be (n, u, r) or (n, u, t, r); received shape {trials.shape}.")
    halves = trial_halves(trials.shape[-1], n_boot, seed)
    return reliability_from_halves(trials, halves, spearman_brown=spearman_brown, chunk_bytes=chunk_bytes)


def reliability_from_halves(trials, halves: np.ndarray, spearman_brown: bool = True, chunk_bytes: int = 2**28):
    """`split_half_reliability` with given (b, 2, h) halves (shared with the predictivity estimators)."""
    trials = np.asarray(trials)
    n, r = trials.shape[0], trials.shape[-1]
    if n < 3:
        raise ValueError(f"reliability needs >= 3 stimuli (Pearson over stimuli); received shape {trials.shape}.")
    halves = np.asarray(halves)
    if halves.ndim != 3 or halves.shape[1] != 2 or halves.size == 0 or halves.min() < 0 or halves.max() >= r:
        raise ValueError(f"halves must be (b, 2, h) trial indices in [0, {r}); received shape {halves.shape}.")
    # When every bootstrap's halves partition the trials, s_2 = 2 mean - s_1 halves the matrix product.
    partition = 2 * halves.shape[2] == r and np.array_equal(
        np.sort(halves.reshape(len(halves), r), axis=1), np.broadcast_to(np.arange(r), (len(halves), r))
    )
    flat = trials.reshape(n, -1, r)  # (n, m, r); a view for C-contiguous input
    m, n_boot = flat.shape[1], halves.shape[0]
    weights = half_weights(halves, r)  # (r, 2 b)
    boot_chunk = min(n_boot, 64)
    col_chunk = max(1, int(chunk_bytes // (8 * n * (r + 8 * boot_chunk))))
    total = np.zeros(m)
    count = np.zeros(m)
    for c0 in range(0, m, col_chunk):
        block = np.array(flat[:, c0 : c0 + col_chunk, :], dtype=np.float64)  # (n, cu, r), a copy
        cu = block.shape[1]
        scale = np.abs(block).max(axis=(0, 2))[:, None]  # (cu, 1) >= max |half average|
        # Centre over stimuli once: half averages are linear in the trials, so they come out centred too.
        block -= block.mean(axis=0, keepdims=True)
        twice_mean = 2.0 * block.mean(axis=2, keepdims=True) if partition else None  # (n, cu, 1)
        block2d = block.reshape(n * cu, r)
        for b0 in range(0, n_boot, boot_chunk):
            b1 = min(b0 + boot_chunk, n_boot)
            if partition:
                s1 = (block2d @ weights[:, b0:b1]).reshape(n, cu, b1 - b0)
                s2 = twice_mean - s1
            else:
                w = np.concatenate([weights[:, b0:b1], weights[:, n_boot + b0 : n_boot + b1]], axis=1)
                out = (block2d @ w).reshape(n, cu, 2 * (b1 - b0))  # one BLAS product for both halves
                s1, s2 = out[..., : b1 - b0], out[..., b1 - b0 :]
            rho = centered_corr(s1, s2, 0, scale, scale)  # (cu, cb)
            if spearman_brown:
                rho = correlation.spearman_brown(rho)  # the module's name: `spearman_brown` is an argument here
            ok = ~np.isnan(rho)
            total[c0 : c0 + cu] += np.where(ok, rho, 0.0).sum(axis=1)
            count[c0 : c0 + cu] += ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return mean.reshape(trials.shape[1:-1])
