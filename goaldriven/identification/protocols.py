"""Rule-identification protocols of thesis Sections 6.3.4-6.3.6 and 6.3.9 (spec ch5_ch6 Sections 11.4-11.6).

* `evaluate`: 10 rule-balanced 75/25 splits (StratifiedShuffleSplit), grid search inside each training split, test
  accuracy mean +- s.e.m. over splits (s.e.m. = std(ddof=1) / sqrt(splits), 0 for one split), summed confusion matrix
  (rows: true rule, columns: predicted), random-forest Gini importances per statistic averaged over splits.
* `per_measure` (Fig. 6.4a), `pairwise` (6 pairs, chance 50%, Fig. 6.8), `holdout` (leave-one-architecture / task /
  curriculum-out, Figs. 6.4b, 6.10, 6.11), the trajectory-averaged control (`dataset.trajectory_average`, Fig. 6.9b).
* Trajectory subsampling (spec 11.5, Fig. 6.6): `periodic_indices` (period in epochs, sample count, one start position
  per example drawn from one seed, so the number of examples stays the same) and `portion_transfer` (consecutive thirds
  or sevenths: train on one portion, test on each portion, on the same splits).
* `unit_subsampling` (spec 11.6, Fig. 6.7): one set of runs per recorded (fraction, noise, seed) cell; accuracy per
  (fraction, noise) averaged over seeds and splits. A23 decision: each cell's dataset holds every layer of every run
  given (both tasks together); seeds are separate datasets averaged over, never extra examples.

Every result is a plain JSON-serialisable dict.
"""

# n: examples, T: time samples, S: statistics, R: rules, P: portions

import dataclasses
import itertools
import time

import numpy as np
from sklearn.metrics import confusion_matrix
from sklearn.model_selection import LeaveOneGroupOut, StratifiedShuffleSplit

from goaldriven.identification import classifiers, dataset

HOLDOUT_GROUPS = ("architecture", "task", "curriculum")
PARTS = ("measures", "averaged", "pairwise", "holdout", "subsampling", "portions")
REGIMES = {"dense": (5, (2, 4, 6, 9, 11, 13, 16, 18, 21)), "intermediate": (15, (2, 4, 6)), "sparse": (25, (2, 4))}


def balanced_splits(y, n_splits: int = 10, test_size: float = 0.25, seed: int = 0) -> list:
    """[(train indices, test indices)] of `n_splits` rule-balanced (stratified) random splits."""
    splitter = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def holdout_splits(examples: dataset.Examples, group: str) -> list:
    """[(held-out value, train indices, test indices)]: each value of groups[group] held out in turn (sorted; [] for
    a single value)."""
    labels = examples.groups[group]
    if len(set(labels)) < 2:
        return []  # nothing to hold out
    out = []
    for train, test in LeaveOneGroupOut().split(examples.X, examples.y, labels):
        out.append((str(labels[test[0]]), train, test))
    return out


def _sem(values) -> float:
    values = np.asarray(values, np.float64)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def _grid(grid, name):
    if isinstance(grid, dict) and name in grid:
        return grid[name]
    if isinstance(grid, dict) and set(grid) <= set(classifiers.CLASSIFIERS):
        raise ValueError(f"no grid for classifier {name!r} in {sorted(grid)}")
    return grid


def evaluate(
    examples: dataset.Examples,
    classifier: str,
    grid="scaled_down",
    splits=None,
    n_splits: int = 10,
    seed: int = 0,
    test_examples: dataset.Examples | None = None,
    standardize: bool = False,
) -> dict:
    """Fits `classifier` on each split's training rows and scores it on the test rows.

    test_examples: the same rows with other features (e.g. another trajectory portion); default `examples`.
    Returns {accuracy (per split), mean, sem, confusion (R, R), best_params, chance, rules, n_train, n_test
    [, importances {statistic: mean Gini importance, 'position': one-hot}]}.
    """
    test_sets = [examples if test_examples is None else test_examples]
    return _evaluate_many(examples, classifier, grid, splits, n_splits, seed, test_sets, standardize)[0]


def _evaluate_many(examples, classifier, grid, splits, n_splits, seed, test_sets, standardize=False):
    """evaluate() for several test feature sets of the same rows, fitting once per split."""
    splits = balanced_splits(examples.y, n_splits, seed=seed) if splits is None else splits
    n_rules = len(examples.rules)
    accuracy = [[] for _ in test_sets]
    confusion = [np.zeros((n_rules, n_rules), np.int64) for _ in test_sets]
    best, importances = [], []
    for k, (train, test) in enumerate(splits):
        model, params = classifiers.fit(
            classifier,
            examples.X[train],
            examples.y[train],
            n_time=examples.n_time,
            grid=_grid(grid, classifier),
            seed=seed + k,
            standardize=standardize,
        )
        for i, test_examples in enumerate(test_sets):
            predicted = model.predict(test_examples.X[test])
            accuracy[i].append(float(np.mean(predicted == test_examples.y[test])))
            confusion[i] += confusion_matrix(test_examples.y[test], predicted, labels=np.arange(n_rules))
        best.append(params)
        if classifier == "rf":
            importances.append(classifiers.importances_per_statistic(model, examples.statistics, examples.n_time))
    out = []
    for acc, conf in zip(accuracy, confusion):
        result = {
            "accuracy": acc,
            "mean": float(np.mean(acc)),
            "sem": _sem(acc),
            "confusion": conf.tolist(),
            "best_params": best,
            "chance": 1.0 / n_rules,
            "rules": list(examples.rules),
            "n_train": int(len(splits[0][0])),
            "n_test": int(len(splits[0][1])),
        }
        if importances:
            result["importances"] = {key: float(np.mean([imp[key] for imp in importances])) for key in importances[0]}
        out.append(result)
    return out


def per_measure(
    examples: dataset.Examples,
    classifier_names=classifiers.CLASSIFIERS,
    measures=dataset.MEASURES,
    grid="scaled_down",
    n_splits: int = 10,
    seed: int = 0,
    standardize: bool = False,
) -> dict:
    """{classifier: {measure: evaluate(...)}} on the same splits (Fig. 6.4a, c and 6.5); measures absent are skipped."""
    splits = balanced_splits(examples.y, n_splits, seed=seed)
    out = {}
    for name in classifier_names:
        out[name] = {}
        for measure in measures:
            if not dataset.measure_statistics(examples.statistics, measure):
                continue
            subset = dataset.select_statistics(examples, measure)
            out[name][measure] = evaluate(subset, name, grid, splits=splits, seed=seed, standardize=standardize)
    return out


def restrict_rules(examples: dataset.Examples, rules) -> dataset.Examples:
    """The examples of the given rules only, relabelled 0..len(rules)-1 in the given order."""
    rules = tuple(rules)
    index = np.flatnonzero(np.isin(examples.y, [examples.rules.index(rule) for rule in rules]))
    subset = examples.subset(index)
    y = np.asarray([rules.index(examples.rules[label]) for label in subset.y])
    return dataclasses.replace(subset, y=y, rules=rules)


def pairwise(
    examples: dataset.Examples, classifier: str, grid="scaled_down", n_splits: int = 10, seed: int = 0, **kwargs
) -> dict:
    """{'a_vs_b': evaluate(...)} for each of the rule pairs (chance 50%, Fig. 6.8)."""
    out = {}
    for a, b in itertools.combinations(examples.rules, 2):
        out[f"{a}_vs_{b}"] = evaluate(
            restrict_rules(examples, (a, b)), classifier, grid, None, n_splits, seed, **kwargs
        )
    return out


def holdout(examples: dataset.Examples, group: str, classifier: str, grid="scaled_down", seed: int = 0, **kwargs):
    """Leave-one-`group`-out: {group, held_out: {value: evaluate on that single split}, mean, sem over values}.

    A group with one value only cannot be held out: the result is {group, skipped: reason}.
    """
    splits = holdout_splits(examples, group)
    if len(splits) < 2:
        return {"group": group, "skipped": f"only one {group}: {sorted(set(examples.groups[group]))}"}
    held_out = {value: evaluate(examples, classifier, grid, [(train, test)], seed=seed, **kwargs)
                for value, train, test in splits}  # fmt: skip
    means = [result["mean"] for result in held_out.values()]
    return {"group": group, "held_out": held_out, "mean": float(np.mean(means)), "sem": _sem(means)}


def periodic_indices(epochs, period: int, count: int, n_examples: int, seed: int = 0) -> np.ndarray:
    """(n_examples, count) time indices: `count` samples `period` epochs apart from a random start per example.

    epochs: (T,) evenly spaced recorded epochs; `period` must be a multiple of their spacing. The start index is
    uniform over the positions where the whole subsample fits, one draw per example from one generator.
    """
    epochs = np.asarray(epochs)
    spacing = np.diff(epochs)
    if len(epochs) < 2 or not np.all(spacing == spacing[0]) or period % spacing[0]:
        raise ValueError(f"periodic subsampling needs evenly spaced epochs dividing {period}; got {epochs.tolist()}")
    step = period // int(spacing[0])
    last_start = len(epochs) - 1 - (count - 1) * step
    if last_start < 0:
        raise ValueError(f"{count} samples {period} epochs apart do not fit in epochs {epochs.tolist()}")
    starts = np.random.default_rng(seed).integers(0, last_start + 1, size=n_examples)
    return starts[:, None] + step * np.arange(count)[None, :]


def trajectory_subsampling(
    examples: dataset.Examples,
    classifier: str,
    grid="scaled_down",
    regimes=None,
    n_splits: int = 10,
    seed: int = 0,
    **kwargs,
) -> dict:
    """{regime: {period, counts: {count: evaluate(...)}, skipped: [counts that do not fit]}} (Fig. 6.6a)."""
    regimes = REGIMES if regimes is None else regimes
    splits = balanced_splits(examples.y, n_splits, seed=seed)
    out = {}
    for regime, (period, counts) in regimes.items():
        out[regime] = {"period": period, "counts": {}, "skipped": []}
        for count in counts:
            if (count - 1) * period > examples.epochs[-1] - examples.epochs[0]:
                out[regime]["skipped"].append(count)
                continue
            index = periodic_indices(examples.epochs, period, count, len(examples.X), seed=seed)
            subset = dataset.select_time(examples, index, epochs=np.arange(count) * period)
            out[regime]["counts"][str(count)] = evaluate(subset, classifier, grid, splits, seed=seed, **kwargs)
    return out


def portion_indices(n_time: int, n_portions: int) -> list:
    """Consecutive equal portions of T // n_portions samples each (a remainder at the end is left out)."""
    size = n_time // n_portions
    if size < 1:
        raise ValueError(f"cannot cut {n_time} time samples into {n_portions} portions")
    return [np.arange(p * size, (p + 1) * size) for p in range(n_portions)]


def portion_transfer(
    examples: dataset.Examples,
    classifier: str,
    n_portions: int = 3,
    grid="scaled_down",
    n_splits: int = 10,
    seed: int = 0,
    **kwargs,
) -> dict:
    """Train on portion a, test on portion b (same splits): {portions, mean (P, P), sem (P, P)}; rows = train."""
    splits = balanced_splits(examples.y, n_splits, seed=seed)
    portions = [dataset.select_time(examples, index) for index in portion_indices(examples.n_time, n_portions)]
    mean = np.zeros((n_portions, n_portions))
    sem = np.zeros((n_portions, n_portions))
    for a in range(n_portions):
        results = _evaluate_many(portions[a], classifier, grid, splits, n_splits, seed, portions, **kwargs)
        mean[a] = [result["mean"] for result in results]
        sem[a] = [result["sem"] for result in results]
    return {"portions": n_portions, "samples_per_portion": portions[0].n_time, "mean": mean.tolist(),
            "sem": sem.tolist()}  # fmt: skip


def unit_subsampling(
    cells,
    classifier: str,
    grid="scaled_down",
    measures=dataset.MEASURES,
    statistics=None,
    n_splits: int = 10,
    seed: int = 0,
    **kwargs,
) -> dict:
    """cells: {(fraction, noise, seed): [RunObservables]} -> accuracy per (fraction, noise) and measure.

    Returns {fractions, noises, mean: {measure: (F, N) nested lists}, sem: same (over every seed x split accuracy),
    seeds: {"fraction,noise": [seeds]}}; a (fraction, noise) without any recorded seed is None.
    """
    fractions = sorted({float(key[0]) for key in cells})
    noises = sorted({float(key[1]) for key in cells})
    accuracies = {}  # (measure, fraction, noise) -> [accuracy per seed and split]
    seeds = {}
    for (fraction, noise, cell_seed), runs in sorted(cells.items()):
        examples = dataset.assemble(runs, statistics=statistics)
        splits = balanced_splits(examples.y, n_splits, seed=seed)  # the same splits for every cell
        seeds.setdefault(f"{float(fraction)},{float(noise)}", []).append(int(cell_seed))
        for measure in measures:
            if not dataset.measure_statistics(examples.statistics, measure):
                continue
            subset = dataset.select_statistics(examples, measure)
            result = evaluate(subset, classifier, grid, splits, seed=seed, **kwargs)
            accuracies.setdefault((measure, float(fraction), float(noise)), []).extend(result["accuracy"])
    out = {"fractions": fractions, "noises": noises, "mean": {}, "sem": {}, "seeds": seeds}
    for measure in measures:
        if not any(key[0] == measure for key in accuracies):
            continue
        cell = lambda f, n, fn: fn(accuracies[(measure, f, n)]) if (measure, f, n) in accuracies else None
        out["mean"][measure] = [[cell(f, n, lambda a: float(np.mean(a))) for n in noises] for f in fractions]
        out["sem"][measure] = [[cell(f, n, _sem) for n in noises] for f in fractions]
    return out


def full_protocol(
    examples: dataset.Examples,
    classifier_names=classifiers.CLASSIFIERS,
    analysis_classifiers=("svm", "rf"),
    grid="scaled_down",
    n_splits: int = 10,
    seed: int = 0,
    holdout_groups=HOLDOUT_GROUPS,
    regimes=None,
    portions=(3, 7),
    standardize: bool = False,
    log=None,
    parts=PARTS,
) -> dict:
    """Every Chapter 6 analysis of one dataset, keyed by figure: measures (6.4a/c, 6.5: all `classifier_names`), then
    with `analysis_classifiers` only (the thesis shows SVM and RF there): averaged (6.9b), pairwise (6.8), holdout
    (6.4b, 6.10, 6.11; per measure), subsampling (6.6a), portions (6.6b, 6.13; all measures); plus seconds per part.
    parts: the subset of PARTS to run; log: a callable taking progress lines.
    """
    log = log or (lambda message: None)
    kwargs = {"grid": grid, "n_splits": n_splits, "seed": seed, "standardize": standardize}
    measures = [m for m in dataset.MEASURES if dataset.measure_statistics(examples.statistics, m)]
    out = {"n_examples": len(examples.X), "rules": list(examples.rules), "statistics": list(examples.statistics),
           "epochs": examples.epochs.tolist(), "timings": {}}  # fmt: skip

    def part(name, fn):
        if name not in parts:
            return
        start = time.perf_counter()
        log(f"identification: {name} ...")
        out[name] = fn()
        out["timings"][name] = time.perf_counter() - start
        log(f"identification: {name} done in {out['timings'][name]:.1f} s")

    part("measures", lambda: per_measure(examples, classifier_names, measures, **kwargs))
    averaged = dataset.trajectory_average(examples)
    part("averaged", lambda: per_measure(averaged, analysis_classifiers, measures, **kwargs))
    by_measure = {m: dataset.select_statistics(examples, m) for m in measures}
    part("pairwise", lambda: {c: {m: pairwise(by_measure[m], c, **kwargs) for m in measures}
                              for c in analysis_classifiers})  # fmt: skip
    holdout_kwargs = {"grid": grid, "seed": seed, "standardize": standardize}
    part("holdout", lambda: {c: {g: {m: holdout(by_measure[m], g, c, **holdout_kwargs) for m in measures}
                                 for g in holdout_groups} for c in analysis_classifiers})  # fmt: skip
    part("subsampling", lambda: {c: trajectory_subsampling(examples, c, regimes=regimes, **kwargs)
                                 for c in analysis_classifiers})  # fmt: skip
    fits = [p for p in portions if examples.n_time // p >= 1]
    part("portions", lambda: {c: {str(p): portion_transfer(examples, c, p, **kwargs) for p in fits}
                              for c in analysis_classifiers})  # fmt: skip
    return out
