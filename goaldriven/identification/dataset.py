"""Identification examples from per-run observables (thesis Section 6.3.9; spec ch5_ch6 Sections 11.1 and 11.3).

One example = one layer of one trained run. Its features are the chosen statistics' trajectories over the T recorded
epochs, statistic-major (the first T values are statistic 1's trajectory), followed by the 3-dim layer-position one-hot
(early / middle / deep: g = n // 3 over the n non-head layers, the first g early, the next g middle, the rest deep;
head layers, e.g. SimCLR's contrastive layers, always deep). The label is the run's learning rule; the groups
(task, architecture, curriculum = (batch size, dataset seed), model, layer position) drive the held-out protocols.

At full size: 24 statistics x 21 epochs + 3 = 507 features, 20,736 examples (5,184 per rule), see
`expected_example_count`.
"""

# n: examples, T: recorded epochs, L: layers of a run, S: statistics, R: rules

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

N_POSITIONS = 3  # early, middle, deep
POSITIONS = ("early", "middle", "deep")
MEASURE_PREFIXES = {"weights": "weights_", "activations": "activations_", "activity_change": "gradavg_"}
MEASURES = ("weights", "activations", "activity_change", "all")
RUN_KEYS = ("task", "architecture", "rule", "batch_size", "model_seed", "dataset_seed")

# The thesis grid (spec 11.1 and 11.3): layer counts per task and architecture, 4 rules, 3 x 2 x 2 hyperparameters.
_SUPERVISED = {"resnet18": 22, "resnet18v2": 22, "resnet34": 38, "resnet34v2": 38, "alexnet": 8, "alexnet_lrn": 8}
THESIS_GRID = {
    "layer_counts": {
        "imagenet": dict(_SUPERVISED),
        "wsn": dict(_SUPERVISED),
        "simclr": {name: count + 1 for name, count in _SUPERVISED.items()},  # two contrastive layers replace the fc
        "cifar10": {"knet4": 4, "knet4_lrn": 4, "knet5": 5, "knet5_lrn": 5},
    },
    "rules": ["sgdm", "adam", "fa", "ia"],
    "batch_sizes": [128, 256, 512],
    "model_seeds": [None, 0],
    "dataset_seeds": [None, 0],
}


@dataclasses.dataclass(frozen=True)
class RunObservables:
    """The observables of one training run at one (fraction, noise, seed) recording cell.

    run: {task, architecture, rule, batch_size, model_seed, dataset_seed} (seeds None = unseeded).
    layer_names: (L,) in model order; is_head: (L,) bool; statistics: (S,) names; epochs: (T,) increasing ints;
    values: (T, L, S) float.
    """

    run: Mapping
    layer_names: Sequence[str]
    is_head: np.ndarray
    statistics: Sequence[str]
    epochs: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        missing = [key for key in RUN_KEYS if key not in self.run]
        if missing:
            raise ValueError(f"RunObservables.run lacks {missing}; give all of {list(RUN_KEYS)}")
        shape = (len(self.epochs), len(self.layer_names), len(self.statistics))
        if np.shape(self.values) != shape or np.shape(self.is_head) != (len(self.layer_names),):
            raise ValueError(
                f"run {run_id(self.run)}: values {np.shape(self.values)} and is_head {np.shape(self.is_head)} do not "
                f"match (epochs, layers, statistics) = {shape}"
            )

    @property
    def name(self) -> str:
        return run_id(self.run)


def run_id(run: Mapping) -> str:
    """'task/architecture/rule/bs<batch>/ms<model seed>/ds<dataset seed>': one trained model."""
    return "/".join(
        [str(run["task"]), str(run["architecture"]), str(run["rule"])]
        + [f"bs{run['batch_size']}", f"ms{run['model_seed']}", f"ds{run['dataset_seed']}"]
    )


def _seed(value):
    return None if value is None or int(value) < 0 else int(value)


def from_storage(observables, fraction: float = 1.0, noise: float = 0.0, seed: int = 0) -> RunObservables:
    """Maps a `storage.Observables` (ch6 contract) onto a RunObservables for one recording cell."""
    run, layers = observables.run, observables.layers
    return RunObservables(
        run={
            "task": run.task,
            "architecture": run.architecture,
            "rule": run.rule,
            "batch_size": int(run.batch_size),
            "model_seed": _seed(run.model_seed),
            "dataset_seed": _seed(run.dataset_seed),
        },
        layer_names=[layer.name for layer in layers],
        is_head=np.array([bool(layer.is_head) for layer in layers]),
        statistics=list(observables.statistics),
        epochs=np.asarray(observables.epochs),
        values=np.asarray(observables.values(fraction=fraction, noise=noise, seed=seed), np.float64),
    )


@dataclasses.dataclass(frozen=True)
class Examples:
    """X: (n, S*T + 3) statistic-major trajectories then the position one-hot; y: (n,) index into `rules`.

    groups: {"task", "architecture", "curriculum", "model", "layer", "position"} -> (n,) str arrays.
    epochs: (T,) the epochs of the trajectory columns (relative offsets after per-example subsampling).
    """

    X: np.ndarray
    y: np.ndarray
    rules: tuple
    statistics: tuple
    epochs: np.ndarray
    groups: dict

    @property
    def n_time(self) -> int:
        return len(self.epochs)

    def trajectories(self) -> np.ndarray:
        """(n, S, T) view of the continuous features."""
        return self.X[:, : len(self.statistics) * self.n_time].reshape(len(self.X), len(self.statistics), self.n_time)

    def onehot(self) -> np.ndarray:
        return self.X[:, -N_POSITIONS:]

    def subset(self, index) -> "Examples":
        """The examples at `index` (labels keep the same rule indices)."""
        groups = {key: value[index] for key, value in self.groups.items()}
        return dataclasses.replace(self, X=self.X[index], y=self.y[index], groups=groups)


def layer_positions(is_head) -> np.ndarray:
    """(L,) int in {0: early, 1: middle, 2: deep}: thirds (g = n // 3) of the non-head layers; heads are deep."""
    is_head = np.asarray(is_head, bool)
    positions = np.full(len(is_head), 2)
    n = int((~is_head).sum())
    g = n // 3
    rank = np.arange(n)
    positions[~is_head] = np.where(rank < g, 0, np.where(rank < 2 * g, 1, 2))
    return positions


def measure_statistics(statistics: Sequence[str], measure: str) -> list:
    """The statistics of one measure ('weights', 'activations', 'activity_change' or 'all'), by name prefix."""
    if measure == "all":
        return list(statistics)
    if measure not in MEASURE_PREFIXES:
        raise ValueError(f"unknown measure {measure!r}; use one of {list(MEASURES)}")
    return [name for name in statistics if name.startswith(MEASURE_PREFIXES[measure])]


def finite_statistics(runs: Sequence[RunObservables]) -> list:
    """The statistics (first run's order) finite for every run, layer and epoch (spec 11.3: the admissible rule)."""
    names = list(runs[0].statistics)
    for run in runs:
        finite = np.isfinite(run.values).all(axis=(0, 1))
        bad = {name for name, ok in zip(run.statistics, finite) if not ok}
        names = [name for name in names if name in run.statistics and name not in bad]
    return names


def _common_epochs(runs, epochs):
    if epochs is not None:
        epochs = np.asarray(epochs)
        short = [run.name for run in runs if not np.isin(epochs, run.epochs).all()]
        if short:
            raise ValueError(f"runs missing some of epochs {epochs.tolist()}: {short}; finish or re-record them")
        return epochs
    longest = max(runs, key=lambda run: len(run.epochs)).epochs
    short = [
        f"{run.name} ({len(run.epochs)} < {len(longest)} epochs)" for run in runs if len(run.epochs) < len(longest)
    ]
    if short:
        raise ValueError(f"incomplete trajectories: {short}; finish these runs or pass `epochs=` explicitly")
    different = [run.name for run in runs if not np.array_equal(run.epochs, longest)]
    if different:
        raise ValueError(f"runs recorded at other epochs than {np.asarray(longest).tolist()}: {different}")
    return np.asarray(longest)


def assemble(
    runs: Sequence[RunObservables], statistics: Sequence[str] | None = None, epochs=None, rules=None
) -> Examples:
    """Examples (one per layer of each run) with the chosen statistics' trajectories at the chosen epochs.

    statistics: default all of the first run's (pass `statistics.ADMISSIBLE` for the thesis' 24).
    epochs: default every recorded epoch, which must be the same for all runs (runs with fewer are an error).
    rules: the label order; default the sorted rules present.
    """
    if not runs:
        raise ValueError("assemble needs at least one run")
    statistics = list(runs[0].statistics if statistics is None else statistics)
    epochs = _common_epochs(runs, epochs)
    rules = tuple(sorted({run.run["rule"] for run in runs}) if rules is None else rules)
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate runs: {sorted({n for n in names if names.count(n) > 1})}")
    X, y, groups = [], [], {key: [] for key in ("task", "architecture", "curriculum", "model", "layer", "position")}
    for run in runs:
        missing = [name for name in statistics if name not in run.statistics]
        if missing or run.run["rule"] not in rules:
            raise ValueError(f"run {run.name}: statistics {missing} or rule {run.run['rule']!r} not in {rules}")
        t_index = np.searchsorted(run.epochs, epochs) if not np.array_equal(run.epochs, epochs) else slice(None)
        s_index = [list(run.statistics).index(name) for name in statistics]
        values = np.asarray(run.values, np.float64)[t_index][:, :, s_index]  # (T, L, S)
        if not np.isfinite(values).all():
            raise ValueError(f"run {run.name}: non-finite values; drop those statistics (dataset.finite_statistics)")
        positions = layer_positions(run.is_head)
        onehot = np.eye(N_POSITIONS)[positions]  # (L, 3)
        X.append(np.concatenate([values.transpose(1, 2, 0).reshape(len(positions), -1), onehot], axis=1))
        y += [rules.index(run.run["rule"])] * len(positions)
        for layer, position in zip(run.layer_names, positions):
            groups["task"].append(str(run.run["task"]))
            groups["architecture"].append(str(run.run["architecture"]))
            groups["curriculum"].append(f"bs{run.run['batch_size']}/ds{run.run['dataset_seed']}")
            groups["model"].append(run.name)
            groups["layer"].append(str(layer))
            groups["position"].append(POSITIONS[position])
    return Examples(
        X=np.concatenate(X),
        y=np.asarray(y),
        rules=rules,
        statistics=tuple(statistics),
        epochs=np.asarray(epochs),
        groups={key: np.asarray(value) for key, value in groups.items()},
    )


def select_statistics(examples: Examples, measure_or_names) -> Examples:
    """The same examples restricted to a measure ('weights', ..., 'all') or an explicit list of statistics."""
    if isinstance(measure_or_names, str):
        names = measure_statistics(examples.statistics, measure_or_names)
    else:
        names = list(measure_or_names)
    if not names:
        raise ValueError(f"no statistics of {measure_or_names!r} among {list(examples.statistics)}")
    index = [examples.statistics.index(name) for name in names]
    trajectories = examples.trajectories()[:, index].reshape(len(examples.X), -1)
    return dataclasses.replace(
        examples, X=np.concatenate([trajectories, examples.onehot()], axis=1), statistics=tuple(names)
    )


def select_time(examples: Examples, index, epochs=None) -> Examples:
    """Trajectories restricted to time indices: `index` (k,) for all examples or (n, k) per example."""
    index = np.asarray(index)
    trajectories = examples.trajectories()  # (n, S, T)
    if index.ndim == 1:
        kept = trajectories[:, :, index]
        epochs = examples.epochs[index] if epochs is None else epochs
    else:
        kept = np.take_along_axis(trajectories, index[:, None, :], axis=2)
        epochs = np.arange(index.shape[1]) if epochs is None else epochs
    X = np.concatenate([kept.reshape(len(examples.X), -1), examples.onehot()], axis=1)
    return dataclasses.replace(examples, X=X, epochs=np.asarray(epochs))


def trajectory_average(examples: Examples) -> Examples:
    """The trajectory-averaged control (spec 11.4, Fig. 6.9b): each statistic's mean over time, T = 1."""
    mean = examples.trajectories().mean(axis=2)  # (n, S)
    X = np.concatenate([mean, examples.onehot()], axis=1)
    return dataclasses.replace(examples, X=X, epochs=np.asarray([-1]))


def as_sequences(examples: Examples) -> np.ndarray:
    """(n, T, 3 + S) Conv1D input: the position one-hot channels first, then the statistics, at every time step."""
    return flat_to_sequences(examples.X, examples.n_time)


def flat_to_sequences(X: np.ndarray, n_time: int) -> np.ndarray:
    """(n, S*T + 3) flat features -> (n, T, 3 + S) sequences."""
    n = len(X)
    trajectories = X[:, :-N_POSITIONS].reshape(n, -1, n_time).transpose(0, 2, 1)  # (n, T, S)
    onehot = np.broadcast_to(X[:, None, -N_POSITIONS:], (n, n_time, N_POSITIONS))
    return np.concatenate([onehot, trajectories], axis=2)


def expected_example_count(
    layer_counts: Mapping[str, Mapping[str, int]],
    rules: Sequence,
    batch_sizes: Sequence,
    model_seeds: Sequence,
    dataset_seeds: Sequence,
    test_fraction: float = 0.25,
) -> dict:
    """Example counts of a grid: {per_combination, models, per_rule, total, test_per_rule}.

    layer_counts: {task: {architecture: number of recorded layers}}. per_combination is the summed layer count per
    (rule, hyperparameter) combination (432 for the thesis); test_per_rule = ceil(per_rule * test_fraction).
    """
    per_combination = sum(sum(archs.values()) for archs in layer_counts.values())
    hyper = len(batch_sizes) * len(model_seeds) * len(dataset_seeds)
    per_rule = per_combination * hyper
    n_models = sum(len(archs) for archs in layer_counts.values()) * len(rules) * hyper
    return {
        "per_combination": per_combination,
        "hyperparameter_combinations": hyper,
        "models": n_models,
        "per_rule": per_rule,
        "total": per_rule * len(rules),
        "test_per_rule": math.ceil(per_rule * test_fraction - 1e-9),
    }
