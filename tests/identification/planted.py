"""Planted observables for the identification tests: runs whose rules differ by a mean shift of one statistic."""

import numpy as np

from goaldriven.identification import dataset

ADMISSIBLE = (  # spec 11.3 order (observables.statistics.ADMISSIBLE, restated here)
    [f"weights_abs_{s}" for s in ("mean", "median", "norm", "thirdquartile", "var")]
    + [f"weights_raw_{s}" for s in ("mean", "median", "norm", "thirdquartile", "var")]
    + [f"weights_sq_{s}" for s in ("mean", "median", "thirdquartile")]
    + [f"activations_abs_{s}" for s in ("mean", "median", "norm", "thirdquartile")]
    + [f"activations_raw_{s}" for s in ("mean", "median", "norm", "thirdquartile")]
    + ["gradavg_raw", "gradavg_abs", "gradavg_sq"]
)
RULES = ("adam", "fa", "ia", "sgdm")


def planted_runs(
    n_layers=(4, 5),
    tasks=("imagenet", "cifar10"),
    batch_sizes=(128, 256),
    model_seeds=(None,),
    dataset_seeds=(None, 0),
    statistics=ADMISSIBLE,
    epochs=tuple(range(0, 101, 5)),
    shift=1.5,
    signal=None,
    seed=0,
):
    """Runs over tasks x architectures (one per entry of n_layers) x RULES x hyperparameters.

    Values are N(0, 1); rule r adds `shift` to statistic `signal[r]` (default: statistic r) at every epoch.
    """
    rng = np.random.default_rng(seed)
    signal = list(range(len(RULES))) if signal is None else signal
    runs = []
    for task in tasks:
        for a, layers in enumerate(n_layers):
            for r, rule in enumerate(RULES):
                for bs in batch_sizes:
                    for ms in model_seeds:
                        for ds in dataset_seeds:
                            values = rng.normal(size=(len(epochs), layers, len(statistics)))
                            values[:, :, signal[r]] += shift
                            run = {"task": task, "architecture": f"arch{a}", "rule": rule, "batch_size": bs,
                                   "model_seed": ms, "dataset_seed": ds}  # fmt: skip
                            runs.append(dataset.RunObservables(run, [f"layer{i}" for i in range(layers)],
                                                               np.zeros(layers, bool), list(statistics),
                                                               np.asarray(epochs), values))  # fmt: skip
    return runs
