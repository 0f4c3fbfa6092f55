"""Benchmark: PLS-25 over 10 train/test splits on 5120 stimuli x 50000 features, ours vs a plain scikit-learn loop.

Reference: issue target "PLS-25 over 10 splits on 5120 x 50000 features; compare with a plain scikit-learn loop
doing the same splits in the same run; at least 5x faster with identical scores" (thesis Fig. 2.12a, ch3 3.6.2).

Data (synthetic, seeded): features x = z A + noise (float32), z (N, 64) latent, targets y = z B + noise (N, units),
i.e. noisy linear readouts of the same latent. Splits: `--splits` random 75/25 permutations.
    ours     goaldriven.neural_fits.mappings.pls.pls_splits: one N x N float64 Gram of all stimuli, then kernel PLS per
             split (timed end to end, Gram included)
    sklearn  PLSRegression(25, scale=False).fit(x[tr], y[tr]).predict(x[te]) per split
At full size the sklearn loop is slow (per component, tens to hundreds of NIPALS iterations, each two passes over
a 3840 x 50000 float64 matrix: likely tens of minutes per split); `--sklearn-splits K` runs it on the first K
splits and extrapolates its time (reported as such). Scores: per-unit Pearson r on the test stimuli of each split. Reported: both times, their ratio (sklearn / ours),
max |r_ours - r_sklearn| and max |prediction difference| relative to the prediction scale, the median r.

`--part factored|all` also runs bench/neural_fits_factored.py (the factored readout benchmark) in a fresh process,
passing --stimuli --units --seed and every option this script does not know (e.g. --epochs 1 --bins 4); its JSON
is copied under "factored". Results of the part not run are kept in --out.

Usage: python bench/neural_fits.py [--part pls|factored|all] [--stimuli 5120] [--features 50000] [--units 256]
       [--splits 10] [--components 25] [--skip-sklearn | --sklearn-splits K] [--out bench/results/neural_fits.json]
Small run (seconds): python bench/neural_fits.py --stimuli 512 --features 2000
"""

# n: stimuli, p: features, u: units
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from goaldriven import atomic_write
from goaldriven.neural_fits.mappings import pls
from goaldriven.neural_fits.metrics.correlation import pearson

HERE = os.path.dirname(os.path.abspath(__file__))
LATENT = 64


def synthetic(n: int, p: int, u: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x (n, p) float32 = z A + noise, y (n, u) = z B + noise; built in column blocks (no float64 (n, p) copy)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, LATENT)).astype(np.float32)
    x = np.empty((n, p), np.float32)
    for s in range(0, p, 4096):
        k = min(4096, p - s)
        x[:, s : s + k] = z @ rng.standard_normal((LATENT, k), dtype=np.float32) / np.sqrt(LATENT)
        x[:, s : s + k] += 2.0 * rng.standard_normal((n, k), dtype=np.float32)
    y = z.astype(np.float64) @ rng.standard_normal((LATENT, u)) / np.sqrt(LATENT) + rng.standard_normal((n, u))
    return x, y


def sklearn_splits(x, y, splits, n_components: int) -> list[np.ndarray]:
    from sklearn.cross_decomposition import PLSRegression  # pylint: disable=g-import-not-at-top

    out, began = [], time.perf_counter()
    for i, (tr, te) in enumerate(splits):
        out.append(PLSRegression(n_components, scale=False).fit(x[tr], y[tr]).predict(x[te]))
        print(f"  sklearn split {i + 1}/{len(splits)}: {time.perf_counter() - began:.1f} s", flush=True)
    return out


def run_pls(args) -> dict:
    print(f"data: {args.stimuli} stimuli x {args.features} features (float32), {args.units} units", flush=True)
    x, y = synthetic(args.stimuli, args.features, args.units, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    n_train = int(round(0.75 * args.stimuli))
    perms = [rng.permutation(args.stimuli) for _ in range(args.splits)]
    splits = [(np.sort(perm[:n_train]), np.sort(perm[n_train:])) for perm in perms]
    print("ours (pls_splits):", flush=True)
    began = time.perf_counter()
    ours = pls.pls_splits(x, y, splits, args.components, verbose=True)
    t_ours = time.perf_counter() - began
    r_ours = np.stack([pearson(p, y[te]) for p, (_, te) in zip(ours, splits)])  # (splits, u)
    result = dict(
        stimuli=args.stimuli,
        features=args.features,
        units=args.units,
        splits=args.splits,
        components=args.components,
        train_stimuli=n_train,
        ours_seconds=t_ours,
        median_r_ours=float(np.median(r_ours)),
    )
    print(f"ours: {t_ours:.1f} s, median test r {result['median_r_ours']:.4f}", flush=True)
    if args.skip_sklearn:
        return result
    k = min(args.sklearn_splits or args.splits, args.splits)
    print(f"scikit-learn loop ({k} of {args.splits} splits):", flush=True)
    began = time.perf_counter()
    theirs = sklearn_splits(x, y, splits[:k], args.components)
    t_sk = time.perf_counter() - began
    r_sk = np.stack([pearson(p, y[te]) for p, (_, te) in zip(theirs, splits)])
    scale = max(np.abs(p - p.mean(axis=0)).max() for p in theirs)
    result.update(
        sklearn_splits_run=k,
        sklearn_seconds=t_sk,
        sklearn_seconds_all_splits=t_sk * args.splits / k,  # measured when k == splits, else extrapolated
        speedup=t_sk * args.splits / k / t_ours,
        median_r_sklearn=float(np.median(r_sk)),
        max_abs_r_difference=float(np.abs(r_ours[:k] - r_sk).max()),
        max_rel_prediction_difference=float(max(np.abs(a - b).max() for a, b in zip(ours, theirs)) / scale),
    )
    print(
        f"sklearn: {t_sk:.1f} s for {k} split(s) ({result['sklearn_seconds_all_splits']:.1f} s for {args.splits}"
        f"{'' if k == args.splits else ', extrapolated'}) -> speedup {result['speedup']:.1f}x (target >= 5x); "
        f"max |r_ours - r_sklearn| = {result['max_abs_r_difference']:.2e}; "
        f"max |pred diff| / pred scale = {result['max_rel_prediction_difference']:.2e}",
        flush=True,
    )
    return result


def run_factored(args) -> dict | None:
    """Runs bench/neural_fits_factored.py (its main() parses its own options) in a fresh process with the shared
    options (--stimuli --units --seed) and any options this script did not recognise; returns its JSON."""
    script = os.path.join(HERE, "neural_fits_factored.py")
    if not os.path.exists(script):
        print("factored part skipped: bench/neural_fits_factored.py is missing", flush=True)
        return None
    out = os.path.join(os.path.dirname(args.out), "neural_fits_factored.json")
    shared = ["--stimuli", str(args.stimuli), "--units", str(args.units), "--seed", str(args.seed), "--out", out]
    print(f"factored: python {script} {' '.join(shared + args.extra)}", flush=True)
    proc = subprocess.run([sys.executable, script, *shared, *args.extra], check=False)
    if proc.returncode:
        print(f"factored part failed (exit code {proc.returncode}); see its output above", flush=True)
        return None
    with open(out) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["pls", "factored", "all"], default="pls")
    parser.add_argument("--stimuli", type=int, default=5120)
    parser.add_argument("--features", type=int, default=50000)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--components", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sklearn", action="store_true", help="time ours only (no comparison)")
    parser.add_argument(
        "--sklearn-splits",
        type=int,
        default=None,
        help="run the sklearn loop on the first K splits only (its time is "
        "then extrapolated to all splits; each split costs the same); default: all",
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results", "neural_fits.json"))
    args, args.extra = parser.parse_known_args()
    if args.extra and args.part == "pls":  # unknown options are only for the factored benchmark
        parser.error(f"unrecognized arguments: {' '.join(args.extra)}")
    result = {}
    if os.path.exists(args.out):  # keep the other part's results
        with open(args.out) as f:
            result = json.load(f)
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()}
    if args.part in ("pls", "all"):
        result["pls"] = run_pls(args)
    if args.part in ("factored", "all"):
        factored = run_factored(args)
        if factored is not None:
            result["factored"] = factored
    atomic_write.write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
