"""How often do non-grid maps pass the grid-cell threshold (grid score > 0.3)? Reference vs Pearson vs strict SAC.

Null maps: smooth random fields (white noise filtered with a Gaussian of sigma = 2 bins, raw and rectified) on
20 x 20 bins, the thesis' rate-map size. Positive controls: rectified hexagonal patterns (three plane waves at 60
degrees) with random period (5-12 bins), phase and orientation. Prints the fraction above 0.3 for the default
scorer (sac="reference", the GridScorer the thesis used, no minimum overlap) and for the Pearson SAC with each
minimum overlap (20 bins; ...; 150 = 37.5% of the bins: sac="strict", STRICT_MIN_OVERLAP_FRACTION).

Usage: python bench/grid_score_null.py [--out bench/results/grid_score_null.json] [--maps 500]
"""

import argparse
import os

import numpy as np
import scipy.ndimage

from goaldriven import atomic_write
from goaldriven.spatial import scores as spatial_scores

N_BINS = 20


def null_maps(rng, count, sigma=2.0):
    return np.stack([scipy.ndimage.gaussian_filter(rng.normal(size=(N_BINS, N_BINS)), sigma) for _ in range(count)])


def hexagonal_maps(rng, count):
    y, x = np.mgrid[0:N_BINS, 0:N_BINS] + 0.5
    maps = []
    for _ in range(count):
        k = 2 * np.pi / rng.uniform(5, 12)
        phase, angle = rng.uniform(0, N_BINS, 2), rng.uniform(0, 60)
        waves = sum(
            np.cos(k * ((x - phase[0]) * np.cos(t) + (y - phase[1]) * np.sin(t)))
            for t in np.deg2rad(angle + np.array([0, 60, 120]))
        )
        maps.append(np.maximum(waves, 0))
    return np.stack(maps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "grid_score_null.json"))
    parser.add_argument("--maps", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    smooth = null_maps(rng, args.maps)
    sets = {
        "smooth_random_fields": smooth,
        "rectified_smooth_random_fields": np.maximum(smooth, 0),
        "hexagonal_period_5_12_bins": hexagonal_maps(rng, args.maps),
    }
    strict = int(np.ceil(spatial_scores.STRICT_MIN_OVERLAP_FRACTION * N_BINS * N_BINS))
    result = {"bins": N_BINS, "maps_per_set": args.maps, "threshold": spatial_scores.GRID_THRESHOLD, "rows": []}
    scorers = [("reference", None)] + [("pearson", m) for m in (20, 50, 100)] + [("strict", None)]
    for sac, min_overlap in scorers:
        row = {"sac": sac, "min_overlap": strict if sac == "strict" else min_overlap}
        for name, maps in sets.items():
            scores = spatial_scores.grid_scores(maps, sac=sac, min_overlap=min_overlap)["score60"]
            row[name] = spatial_scores.fraction_above(scores, spatial_scores.GRID_THRESHOLD)
        result["rows"].append(row)
        label = f"{sac} (min_overlap {row['min_overlap']})" if row["min_overlap"] else f"{sac} (no min_overlap)"
        print(f"{label:31s}: " + ", ".join(f"{k} {row[k]:.1%}" for k in sets))
    atomic_write.write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
