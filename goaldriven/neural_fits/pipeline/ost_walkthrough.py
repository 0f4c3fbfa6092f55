"""The embedded OST walkthrough: planted per-image solution times found again by the OST fit, and lost when shuffled.

Reference: thesis Sections 2.3.2 and 2.5.8 (Figs. 2.3, 2.8); spec ch2 Section 9 and item 11 of Section 11. Nothing is
downloaded and no checkpoint is needed: the "model" is synthetic_ost.planted_ost, whose features carry each image's
object from a planted step on, and the primate side (behavioural d', IT OST = the planted time + jitter, V4/IT
responses) is built from the same truth. Steps:

  1. choose the IT-preferred layers from the V4/IT units (PLS-25, IT score > V4 score): must be it_a, it_b
  2. recurrent model: one-to-one steps 7..25, decoding, OST, consistency (+ PLS-OST)
  3. the same with the IT OSTs shuffled over images (consistency ~ 0)
  4. feedforward model (4 layers): uniform and graded mappings (+ PLS-OST)

  python -m goaldriven.neural_fits.pipeline.ost_walkthrough --workdir=/tmp/ost_walkthrough

prints one line per variant and writes the reports of steps 2 and 4 (recurrent/, feedforward/: ost_images.csv,
ost_summary.json, ost_scatter.png) and walkthrough.json (layers, consistencies, run time) into --workdir.
"""

import argparse
import dataclasses
import os
import time

import numpy as np

from goaldriven import atomic_write
from goaldriven.neural_fits.data import synthetic_ost
from goaldriven.neural_fits.pipeline import ost_fit, ost_report
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation


def run(workdir: str, n_splits: int = 5, per_object: int = 40, seed: int = 0, log=print, **overrides) -> dict:
    """Steps 1-4 of the module docstring; returns what walkthrough.json holds. `overrides`: OSTFitConfig fields."""
    began = time.time()
    planted = synthetic_ost.planted_ost(per_object=per_object, seed=seed)
    data = planted.recurrent_data
    n_train = per_object - int(np.ceil(per_object / n_splits))
    options = dict(n_splits=n_splits, n_train_per_class=n_train, selection_splits=5, selection_boot=20)
    base = ost_fit.OSTFitConfig(**{**options, **overrides})

    def store(arrays):
        return FeatureStore(arrays, stimulus_ids=data.stimulus_ids, presentation=Presentation())

    recurrent = ost_fit.fit_ost(store(planted.recurrent), data, planted.recurrent_targets, base, log=log)
    targets = planted.recurrent_targets
    ost = targets.it_ost_ms.copy()
    solved = np.flatnonzero(np.isfinite(ost))
    ost[solved] = ost[np.random.default_rng(seed + 1).permutation(solved)]
    shuffled_config = dataclasses.replace(base, layers=recurrent.layers, pls=False)
    shuffled = ost_fit.fit_ost(
        store(planted.recurrent), data, dataclasses.replace(targets, it_ost_ms=ost), shuffled_config, log=log
    )
    ff_config = dataclasses.replace(base, layers=tuple(planted.feedforward))
    feedforward = ost_fit.fit_ost(store(planted.feedforward), data, planted.feedforward_targets, ff_config, log=log)
    ost_report.write_all(recurrent, os.path.join(workdir, "recurrent"), base)
    ost_report.write_all(feedforward, os.path.join(workdir, "feedforward"), ff_config)
    out = {
        "it_preferred_layers": list(recurrent.layers),
        "consistency": {
            **{name: [r.mean, r.sem] for name, r in recurrent.variants.items()},
            "convrnn_shuffled_truth": [shuffled.variants["convrnn"].mean, shuffled.variants["convrnn"].sem],
            **{f"feedforward_{name}": [r.mean, r.sem] for name, r in feedforward.variants.items()},
        },
        "seconds": round(time.time() - began, 1),
    }
    atomic_write.write_json(os.path.join(workdir, "walkthrough.json"), out)
    for name, (mean, sem) in out["consistency"].items():
        log(f"{name:28s} OST consistency {mean:+.3f} +- {sem:.3f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--n_splits", type=int, default=5)
    parser.add_argument("--per_object", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.workdir, args.n_splits, args.per_object, args.seed)


if __name__ == "__main__":
    main()
