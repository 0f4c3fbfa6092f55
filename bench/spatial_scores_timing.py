"""Timing of rate-map accumulation, grid scores and border scores at thesis scale.

Usage: python bench/spatial_scores_timing.py [out.json]   (default bench/results/spatial_scores_timing.json)

Scale: 4096 units, 20 x 20 bins, 400,000 samples streamed in chunks of 20,000. Grid scores: the default
(sac="reference"), method="minmax", and sac="strict" (the Pearson SAC the evaluation also reports).
"""

import json
import os
import sys
import time

import numpy as np

from goaldriven import atomic_write
from goaldriven.spatial import scores as spatial_scores
from goaldriven.spatial.ratemaps import RateMapAccumulator

# n: samples, u: units, h/w: spatial bins

U, NBINS, N_SAMPLES, CHUNK, BOX = 4096, 20, 400_000, 20_000, 2.2


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(out_path: str) -> dict:
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((CHUNK, U)).astype(np.float32)  # (n, u), reused per chunk
    acc = RateMapAccumulator(U, BOX, BOX, NBINS)

    def accumulate():
        for _ in range(N_SAMPLES // CHUNK):
            acc.add(rng.uniform(-BOX / 2, BOX / 2, (CHUNK, 2)), acts)
        return acc.ratemaps()

    _, t_acc = _timed(accumulate)
    maps = np.maximum(rng.standard_normal((U, NBINS, NBINS)), 0.0)  # (u, h, w)
    maps[:, rng.random((NBINS, NBINS)) < 0.05] = np.nan
    _, t_grid_cold = _timed(lambda: spatial_scores.grid_scores(maps))  # builds rotation ops
    _, t_grid = _timed(lambda: spatial_scores.grid_scores(maps))  # the default: the reference GridScorer
    _, t_minmax = _timed(lambda: spatial_scores.grid_scores(maps, method="minmax"))
    _, t_strict_cold = _timed(lambda: spatial_scores.grid_scores(maps, sac="strict"))  # the evaluation's second
    _, t_strict = _timed(lambda: spatial_scores.grid_scores(maps, sac="strict"))
    _, t_border = _timed(lambda: spatial_scores.border_scores(maps))
    result = {
        "units": U,
        "nbins": NBINS,
        "samples": N_SAMPLES,
        "cpu_count": os.cpu_count(),
        "accumulate_400k_samples_s": round(t_acc, 3),
        "grid_scores_first_call_s": round(t_grid_cold, 3),
        "grid_scores_s": round(t_grid, 3),
        "grid_scores_minmax_s": round(t_minmax, 3),
        "grid_scores_strict_first_call_s": round(t_strict_cold, 3),
        "grid_scores_strict_s": round(t_strict, 3),
        "border_scores_s": round(t_border, 3),
        "grid_plus_border_first_call_s": round(t_grid_cold + t_border, 3),
    }
    atomic_write.write_json(out_path, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(
        sys.argv[1]
        if len(sys.argv) > 1
        else os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "spatial_scores_timing.json")
    )
