"""The five transfer tasks of thesis Fig. 3.11 scored on a model's features: every layer, every split, best layer.

Reference: thesis Section 3.6.8, spec ch3 A5 and Ambiguities 12-13; readouts.py (PCA, LinearSVC / ridge, C by CV).
  categorization  HvM, 8 categories, LinearSVC, accuracy on V6 (chance 1/8)
  position        HvM, ridge on (ty, tz), the object centre's vertical and horizontal coordinates, mean Pearson r
  pose            HvM, ridge on (rxy, rxz), the rotations about the z (vertical) and y (horizontal) axes, mean r
  size            HvM, ridge on s, the 3-D scale, Pearson r
  texture         DTD, 47 categories, LinearSVC, accuracy on each fold's test images (chance 1/47)
A layer's score is the mean over the splits (10); the task's result is its best layer by that mean. [C] fits pose
on all three rotations (rxy, rxz, ryz); the thesis names two, which `TASKS` follows (a TransferTask with other
targets is one line).

`evaluate` runs dataset by dataset and layer by layer: a layer's features are read once, each distinct train split
is projected once (the four HvM tasks share one train split, so one PCA serves them and all 10 splits), and each
(task, layer) result is handed to `on_result` as soon as it exists, so a caller can persist it and a rerun can skip
it (`done`).
"""

# n: images, p: features, q: targets
import dataclasses
import hashlib
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from goaldriven.transfer import readouts
from goaldriven.transfer.dtd import DTDImages
from goaldriven.transfer.hvm import HvMStimuli, hvm_splits


@dataclasses.dataclass(frozen=True)
class TransferTask:
    name: str
    dataset: str  # "hvm" | "dtd"
    kind: str  # "classification" | "regression"
    targets: tuple[str, ...] = ()  # HvM meta quantities (regression)
    label: str = ""  # axis label of the figure


TASKS = {
    "categorization": TransferTask("categorization", "hvm", "classification", label="accuracy"),
    "position": TransferTask("position", "hvm", "regression", ("ty", "tz"), label="Pearson r"),
    "pose": TransferTask("pose", "hvm", "regression", ("rxy", "rxz"), label="Pearson r"),
    "size": TransferTask("size", "hvm", "regression", ("s",), label="Pearson r"),
    "texture": TransferTask("texture", "dtd", "classification", label="accuracy"),
}
TASK_ORDER = tuple(TASKS)


@dataclasses.dataclass
class TaskData:
    """A task's targets ((n,) labels or (n, q) values) and its (train, test) index splits."""

    targets: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    chance: float


def task_data(
    task: TransferTask,
    *,
    hvm: HvMStimuli | None = None,
    dtd: DTDImages | None = None,
    n_splits: int = 10,
    seed: int = 0,
    shuffle_targets: bool = False,
) -> TaskData:
    """The targets and splits of `task` from its dataset; `shuffle_targets` permutes the targets (a control whose
    scores must sit at chance)."""
    if task.dataset == "hvm":
        if hvm is None:
            raise ValueError(f"task {task.name!r} needs the HvM stimuli (--hvm=<file.h5>).")
        splits = hvm_splits(hvm.category, hvm.variation, n_splits=n_splits, seed=seed)
        if task.kind == "classification":
            names = sorted(set(hvm.category.tolist()))
            targets, chance = np.searchsorted(names, hvm.category), 1.0 / len(names)
        else:
            targets, chance = hvm.targets(task.targets), 0.0
    elif task.dataset == "dtd":
        if dtd is None:
            raise ValueError(f"task {task.name!r} needs DTD (--dtd_data_dir=<TFDS folder holding dtd>).")
        splits, targets = dtd.splits[:n_splits], dtd.labels
        chance = 1.0 / max(1, len(np.unique(targets)))
    else:
        raise ValueError(f"task {task.name!r} has unknown dataset {task.dataset!r}.")
    if shuffle_targets:
        targets = targets[np.random.default_rng(seed + 7919).permutation(len(targets))]
    return TaskData(targets=np.asarray(targets), splits=list(splits), chance=chance)


def _train_key(train: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(train, np.int64).tobytes()).hexdigest()


def evaluate_layer(
    tasks: Sequence[TransferTask],
    features: np.ndarray,
    data: Mapping[str, TaskData],
    config: readouts.ReadoutConfig,
    log: Callable[[str], None] = print,
    layer: str = "",
) -> dict[str, dict]:
    """{task name: layer result} of one layer's (n, p) features for tasks sharing a dataset (module docstring)."""
    features = np.asarray(features, np.float32).reshape(len(features), -1)
    projections: dict[str, tuple[readouts.Projection, np.ndarray]] = {}
    results = {}
    for task in tasks:
        d = data[task.name]
        fitted: dict[str, tuple[object, float, float]] = {}  # train key -> (model, C, train score)
        scores, per_target, cs, train_scores = [], [], [], []
        began = time.time()
        for train, test in d.splits:
            key = _train_key(train)
            if key not in projections:
                projection = readouts.fit_projection(features[train], config.max_components, config.seed)
                projections[key] = (projection, projection(features[train]))
            projection, train_x = projections[key]
            if key not in fitted:
                fit = readouts.fit_classifier if task.kind == "classification" else readouts.fit_regressor
                model, c = fit(train_x, d.targets[train], config)
                fitted[key] = (model, c, readouts.score_readout(task.kind, model, train_x, d.targets[train])[0])
            model, c, train_score = fitted[key]
            score, values = readouts.score_readout(task.kind, model, projection(features[test]), d.targets[test])
            scores.append(score)
            per_target.append(values)
            cs.append(c)
            train_scores.append(train_score)
        mean = float(np.mean(scores))
        sem = float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0
        results[task.name] = {
            "mean": mean,
            "sem": sem,
            "per_split": scores,
            "per_target": per_target,
            "c": cs,
            "train_score": train_scores,
            "features": int(features.shape[1]),
            "components": int(projection.components),
            "seconds": round(time.time() - began, 2),
        }
        log(
            f"transfer: {task.name:<14} {layer:<16} {mean:.3f} +- {sem:.3f} (C {_c_text(cs)}, "
            f"{features.shape[1]} -> {projection.components} dims, {time.time() - began:.1f} s)"
        )
    return results


def _c_text(cs: Sequence[float]) -> str:
    distinct = sorted(set(cs))
    return ", ".join(f"{c:g}" for c in distinct[:3]) + ("..." if len(distinct) > 3 else "")


def best_layers(layer_results: Mapping[str, Mapping[str, dict]]) -> dict[str, dict]:
    """{task: {"layer", "mean", "sem"}}: the layer with the highest mean over splits (the first one on ties, in the
    model's layer order, which `evaluate` keeps)."""
    out = {}
    for task, by_layer in layer_results.items():
        if by_layer:
            layer = max(by_layer, key=lambda name: by_layer[name]["mean"])
            out[task] = {"layer": layer, "mean": by_layer[layer]["mean"], "sem": by_layer[layer]["sem"]}
    return out


def evaluate(
    features: Mapping[str, Mapping[str, Callable[[], np.ndarray]]],
    data: Mapping[str, TaskData],
    *,
    tasks: Sequence[str] = TASK_ORDER,
    config: readouts.ReadoutConfig | None = None,
    done: Mapping[str, Mapping[str, dict]] | None = None,
    on_result: Callable[[str, str, dict], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, dict]]:
    """{task: {layer: result}} for `tasks`, from `features` = {dataset: {layer: () -> (n, p) array}} (read lazily,
    one layer at a time) and `data` = {task: TaskData}. Results in `done` are kept, not refitted; every new one is
    passed to `on_result(task, layer, result)` when it exists."""
    config = config or readouts.ReadoutConfig()
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown transfer tasks {unknown}; known: {list(TASKS)}.")
    results = {t: dict((done or {}).get(t, {})) for t in tasks}
    for dataset in dict.fromkeys(TASKS[t].dataset for t in tasks):
        layers = features.get(dataset)
        if not layers:
            raise ValueError(
                f"no features for dataset {dataset!r} (tasks {[t for t in tasks if TASKS[t].dataset == dataset]})."
            )
        for layer, load in layers.items():
            todo = [TASKS[t] for t in tasks if TASKS[t].dataset == dataset and layer not in results[t]]
            if not todo:
                continue
            for name, result in evaluate_layer(todo, load(), data, config, log, layer).items():
                results[name][layer] = result
                if on_result is not None:
                    on_result(name, layer, result)
    for t in tasks:  # the model's layer order (results read back from JSON come sorted by name): ties go to the first
        order = list(features[TASKS[t].dataset])
        results[t] = {
            layer: results[t][layer]
            for layer in sorted(results[t], key=lambda n: (n not in order, order.index(n) if n in order else 0))
        }
    return results
