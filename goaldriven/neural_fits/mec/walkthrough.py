"""The embedded MEC walkthrough: simulated grid, border and place-like cells with known tuning, fitted by Chapter 4's
estimators, with two models whose answer is known.

Reference: thesis Sections 4.3, 4.8 (spec ch3_ch4 B1-B4). Nothing is downloaded:

  box     n_animals animals x cells_per_animal cells in a 1 m box (5 cm bins, 20 x 20): a third grid cells (three
          plane waves 60 degrees apart, spacing 0.3 or 0.45 m, random phase, orientation per animal and module), a
          quarter border cells (exponential decay from one wall, 5 cm), the rest place-like cells (1-3 Gaussian
          fields); observed map = true map + Gaussian noise of s.d. noise x (per-animal factor in [0.7, 1.3]) x the
          map's s.d., and 2% of the bins of each animal left unvisited (NaN)
  track   sessions x cells on a 4 m track (5 cm bins, 80), two maps per session (every cell remaps: a new place-like
          tuning), 10 trials per map, trial noise s.d. noise x the tuning's s.d.
  models  "true_tuning": the noise-free tuning curves of every simulated cell (and map) as model units, so each cell
          is one of the features: its predictivity must reach its noise ceiling (box: Corr(true, observed); track:
          the 1.0 of eq. 4.2 up to the Spearman-Brown factor sqrt((1 + rho_half) / 2)); "shuffled": the same units with
          the bins permuted, which must score near 0

  python -m goaldriven.neural_fits.mec.walkthrough --workdir=/tmp/mec_walkthrough [--kind=track] [--grid=full]
      [--compare=one_to_one,ridge,elasticnet_cv] [--n_splits=10] [--n_boot=20]

writes mec_rate_maps.h5, the fit's report (fit.write_report) and walkthrough.json (ceilings and ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from goaldriven.neural_fits.mec import fit as fit_lib
from goaldriven.neural_fits.mec import transforms
from goaldriven.neural_fits.mec.ratemap_file import Environment, Recording, write_ratemaps

# u: cells, h/w: box bins, n: track bins, r: trials, m: maps


def _grid_map(xy, spacing, orientation, phase):
    k = 4 * np.pi / (np.sqrt(3) * spacing)
    waves = sum(
        np.cos(k * ((xy[..., 0] - phase[0]) * np.cos(a) + (xy[..., 1] - phase[1]) * np.sin(a)))
        for a in orientation + np.array([0, np.pi / 3, 2 * np.pi / 3])
    )
    return 10 * ((waves + 1.5) / 4.5) ** 2


def _fields(xy, rng, box):
    out = np.zeros(xy.shape[:-1])
    for _ in range(rng.integers(1, 4)):
        centre, width = rng.uniform(-box / 2, box / 2, xy.shape[-1]), rng.uniform(0.08, 0.2)
        out += rng.uniform(4, 10) * np.exp(-((xy - centre) ** 2).sum(-1) / (2 * width**2))
    return out


def box_tuning(kind: str, xy: np.ndarray, rng: np.random.Generator, box: float, orientations) -> np.ndarray:
    """One cell's true rate map on bin centres xy (h, w, 2): "grid", "border" or "place"."""
    if kind == "grid":
        module = rng.integers(2)
        return _grid_map(xy, (0.3, 0.45)[module], orientations[module], rng.uniform(-box / 2, box / 2, 2))
    if kind == "border":
        wall = rng.integers(4)
        d = (box / 2 - xy[..., 0], box / 2 + xy[..., 0], box / 2 - xy[..., 1], box / 2 + xy[..., 1])[wall]
        return 8 * np.exp(-d / 0.05)
    return _fields(xy, rng, box)


def simulate_box(n_animals=4, cells_per_animal=12, box=1.0, bin_size=0.05, noise=0.3, seed=0):
    """(Environment, true maps (U, h, w) of every cell in file order, ceilings (U,) = Corr(true, observed))."""
    rng = np.random.default_rng(seed)
    n = int(round(box / bin_size))
    centres = -box / 2 + bin_size * (np.arange(n) + 0.5)
    xy = np.stack(np.meshgrid(centres, centres), axis=-1)  # (h, w, 2): rows = y
    recordings, truth, ceilings = {}, [], []
    for a in range(n_animals):
        orientations = rng.uniform(0, np.pi / 3, 2)
        kinds = ["grid"] * (cells_per_animal // 3) + ["border"] * (cells_per_animal // 4)
        kinds += ["place"] * (cells_per_animal - len(kinds))
        true = np.stack([box_tuning(k, xy, rng, box, orientations) for k in kinds])  # (u, h, w)
        level = noise * rng.uniform(0.7, 1.3)
        observed = true + level * true.std(axis=(1, 2), keepdims=True) * rng.standard_normal(true.shape)
        unvisited = rng.random((n, n)) < 0.02
        observed[:, unvisited] = np.nan
        ok = ~unvisited.reshape(-1)
        flat_t, flat_o = true.reshape(len(kinds), -1)[:, ok], observed.reshape(len(kinds), -1)[:, ok]
        ceilings.extend(np.corrcoef(t, o)[0, 1] for t, o in zip(flat_t, flat_o))
        ids = np.array([f"{k}{i}" for i, k in enumerate(kinds)])
        recordings[f"animal{a}"] = Recording(f"animal{a}", ids, rate_maps=observed.astype(np.float32))
        truth.append(true)
    env = Environment("box100_simulated", "box", (box, box), recordings, bin_size, 0.0, "walkthrough.simulate_box")
    return env.check(), np.concatenate(truth), np.array(ceilings)


def simulate_track(n_sessions=3, cells=8, length=4.0, bin_size=0.05, n_maps=2, trials_per_map=10, noise=0.5, seed=0):
    """(Environment, true tuning (U * M, n) of every cell and map, expected eq. 4.2 values (U,) of a perfect model)."""
    rng = np.random.default_rng(seed)
    n = int(round(length / bin_size))
    x = (-length / 2 + bin_size * (np.arange(n) + 0.5))[:, None]  # (n, 1) as 1-D "xy"
    recordings, truth, expected = {}, [], []
    for s in range(n_sessions):
        tuning = np.stack([[_fields(x, rng, length) + 0.5 for _ in range(cells)] for _ in range(n_maps)])  # (m, u, n)
        sd = noise * tuning.std(axis=-1, keepdims=True)
        labels = np.repeat(np.arange(n_maps), trials_per_map)
        trials = tuning[labels] + sd[labels] * rng.standard_normal((len(labels), cells, n))  # (r, u, n)
        # a perfect model scores sqrt((1 + rho_half) / 2) (eq. 4.2 with SB), rho_half = var_t / (var_t + 2 sd^2 / r)
        h = trials_per_map // 2
        rho = tuning.var(axis=-1) / (tuning.var(axis=-1) + sd[..., 0] ** 2 / h)  # (m, u)
        expected.extend(np.sqrt((1 + rho) / 2).mean(axis=0))
        ids = np.array([f"cell{i}" for i in range(cells)])
        recordings[f"session{s}"] = Recording(
            f"mouse{s}", ids, trials=np.transpose(trials, (1, 0, 2)).astype(np.float32), trial_maps=labels
        )
        truth.append(tuning.reshape(-1, n))
    env = Environment("track_simulated", "track", (length,), recordings, bin_size, 0.0, "walkthrough.simulate_track")
    return env.check(), np.concatenate(truth), np.array(expected)


def known_models(truth: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """{"true_tuning": truth, "shuffled": truth with the bins permuted (one permutation for every unit)}."""
    flat = truth.reshape(truth.shape[0], -1)
    perm = np.random.default_rng(seed + 1).permutation(flat.shape[1])
    return {"true_tuning": truth, "shuffled": flat[:, perm].reshape(truth.shape)}


def run(workdir: str, kind: str = "box", spec: fit_lib.MECFit | None = None, log=print, **simulation) -> dict:
    """Simulates, fits and writes the walkthrough; returns walkthrough.json's content."""
    began = time.time()
    os.makedirs(workdir, exist_ok=True)
    env, truth, ceiling = (simulate_box if kind == "box" else simulate_track)(**simulation)
    write_ratemaps(os.path.join(workdir, "mec_rate_maps.h5"), env)
    spec = spec or fit_lib.MECFit(grid="short", consistency_transforms=("one_to_one", "ridge", "elasticnet_cv"))
    result = fit_lib.fit_environment(env, known_models(truth), spec, log)
    paths = fit_lib.write_report(result, workdir)
    pred = {k: v.values for k, v in result.predictivity.items()}
    out = {
        "kind": kind,
        "median_ceiling": float(np.median(ceiling)),
        "median_true_tuning": float(np.nanmedian(pred["true_tuning"])),
        "median_true_tuning_over_ceiling": float(np.nanmedian(pred["true_tuning"] / ceiling)),
        "median_shuffled": float(np.nanmedian(pred["shuffled"])),
        "median_inter_animal": float(np.nanmedian(result.consistency[spec.transform].values)),  # no tanh here
        "seconds": time.time() - began,
        "files": paths,
    }
    with open(os.path.join(workdir, "walkthrough.json"), "w") as f:
        json.dump(out, f, indent=1)
    log(json.dumps({k: v for k, v in out.items() if k != "files"}, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--kind", choices=("box", "track"), default="box")
    parser.add_argument("--grid", choices=("short", "full"), default="short")
    parser.add_argument("--n_splits", type=int, default=10)
    parser.add_argument("--n_boot", type=int, default=20)
    parser.add_argument("--compare", default=",".join(transforms.TRANSFORMS), help="transforms of Fig. 4.1a")
    args = parser.parse_args()
    compare = tuple(name for name in args.compare.split(",") if name)
    spec = fit_lib.MECFit(grid=args.grid, n_splits=args.n_splits, n_boot=args.n_boot, consistency_transforms=compare)
    run(args.workdir, args.kind, spec)


if __name__ == "__main__":
    main()
