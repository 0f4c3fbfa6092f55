"""Weighted k-nearest-neighbour accuracy of a representation, and a loop hook that reports it during SSL training.

Reference: Wu et al. (2018), the kNN monitor of instance recognition (thesis Section 3.6.5 trains IR with it):

    r = l2n(model(x, training=False)[feature])            for every labelled memory and test example
    s_j = r_test . r_memory_j;  N_k = the k memory examples of largest s_j (ties: lower index first)
    vote_c = sum_{j in N_k, y_j = c} exp(s_j / t);   prediction = argmax_c vote_c;   k = 200, t = 0.07

Representations are computed where the weights live (`runtime.ReplicatedRunner` through the strategy, evaluation mode,
padded examples of weight 0 dropped); the search runs on the host in chunks of test examples, so a 1.28M x 128 memory
needs chunk x 1.28M similarities at a time (64 x 1.28M float32 = 330 MB), never the full test x memory matrix.

`KNNMonitor` is a `hooks.LoopHook`: every `every_steps` steps (the loop stops exactly there through `next_stop`) and
at the end of training it logs "knn top-1" and appends {"step", "knn_top1", "k", "temperature", "feature",
"memory", "test"} to `<workdir>/knn.json` (atomic rewrite, chief only). A run with 0 training steps reports the
untrained network (the thesis' "untrained" controls).
"""

# n: examples, d: representation width, c: classes
import json
import os
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from goaldriven import atomic_write, hooks, runtime

K, TEMPERATURE = 200, 0.07
RESULTS = "knn.json"


def weighted_knn_predict(
    memory: np.ndarray,
    memory_labels: np.ndarray,
    queries: np.ndarray,
    *,
    num_classes: int,
    k: int = K,
    temperature: float = TEMPERATURE,
    chunk: int = 64,
) -> np.ndarray:
    """Predicted classes (n,) of `queries` (n, d) by the weighted vote of their k nearest `memory` rows (cosine)."""
    memory = _unit(np.asarray(memory, np.float32))
    queries = _unit(np.asarray(queries, np.float32))
    labels = np.asarray(memory_labels, np.int64)
    if memory.shape[0] != labels.shape[0]:
        raise ValueError(f"memory has {memory.shape[0]} rows but {labels.shape[0]} labels.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"memory labels must lie in [0, {num_classes}); found [{labels.min()}, {labels.max()}].")
    k = min(k, memory.shape[0])
    if k < 1 or temperature <= 0:
        raise ValueError(f"need k >= 1 memory examples and temperature > 0. Received k={k}, temperature={temperature}")
    predictions = np.empty(queries.shape[0], np.int64)
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start : start + chunk] @ memory.T  # (chunk, n_memory)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # ties: lower memory index first
        weights = np.exp(np.take_along_axis(sims, order, axis=1).astype(np.float64) / temperature)
        votes = np.zeros((sims.shape[0], num_classes))
        np.add.at(votes, (np.arange(sims.shape[0])[:, None], labels[order]), weights)
        predictions[start : start + chunk] = votes.argmax(axis=1)
    return predictions


def representations(
    model, data: Any, *, strategy: tf.distribute.Strategy, feature: str, global_batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, d) float32, labels (n,)) of every weight-1 example of `data.eval_dataset(...)`."""

    def fn(batch):
        out = model(batch["images"], training=False)
        values = out["features"][feature] if feature in out.get("features", {}) else out[feature]
        flat = tf.reshape(tf.cast(values, tf.float32), [tf.shape(values)[0], -1])
        return {"features": flat, "labels": batch["labels"], "weight": batch["weight"]}

    runtime.check_global_batch_size(global_batch_size, strategy.num_replicas_in_sync)
    runner = runtime.ReplicatedRunner(strategy, fn)
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: data.eval_dataset(global_batch_size=global_batch_size, input_context=ctx)
    )
    parts = list(runner.run(dataset))
    keep = np.concatenate([p["weight"] for p in parts]) > 0
    features = np.concatenate([p["features"] for p in parts])[keep]
    labels = np.concatenate([p["labels"] for p in parts])[keep]
    return features, labels


class KNNMonitor(hooks.LoopHook):
    """Weighted kNN top-1 during and after SSL training (module docstring).

    Args:
      memory_data: labelled training examples (the memory), with `eval_dataset(*, global_batch_size, input_context)`
        giving {"images", "labels", "weight"} (e.g. `DigitsSSLData.memory()`, `ImageNetData` on its train split).
      test_data: labelled held-out examples in the same contract (e.g. the SSL dataset itself).
      num_classes: classes of the labels.
      every_steps: also evaluate every this many steps (0: only at the end).
      feature: model output or feature read ("representation": the backbone's, before the heads).
      k, temperature: the vote.
      global_batch_size: examples per evaluation step (a multiple of the replica count).
    """

    def __init__(
        self,
        memory_data: Any,
        test_data: Any,
        *,
        num_classes: int,
        every_steps: int = 0,
        feature: str = "representation",
        k: int = K,
        temperature: float = TEMPERATURE,
        global_batch_size: int = 256,
    ):
        if not isinstance(every_steps, int) or every_steps < 0:
            raise ValueError(f"every_steps must be an int >= 0 (0: only at the end). Received: {every_steps!r}")
        self.memory_data, self.test_data = memory_data, test_data
        self.num_classes, self.every_steps, self.feature = num_classes, every_steps, feature
        self.k, self.temperature, self.global_batch_size = k, temperature, global_batch_size
        self._done: set[int] = set()

    def next_stop(self, step: int) -> int | None:
        if not self.every_steps:
            return None
        return (step // self.every_steps + 1) * self.every_steps

    def on_loop_end(self, state: hooks.LoopState, step: int) -> None:
        if self.every_steps and step % self.every_steps == 0 and step < state.train_steps:
            self.evaluate(state, step)

    def on_train_end(self, state: hooks.LoopState, step: int) -> None:
        self.evaluate(state, step)

    def evaluate(self, state: hooks.LoopState, step: int, log: Callable[[str], None] | None = None) -> float:
        """Computes, logs and records the kNN top-1 of the model at `step`."""
        if step in self._done:
            return float("nan")
        self._done.add(step)
        common = dict(strategy=state.strategy, feature=self.feature, global_batch_size=self.global_batch_size)
        memory, memory_labels = representations(state.model, self.memory_data, **common)
        test, test_labels = representations(state.model, self.test_data, **common)
        predicted = weighted_knn_predict(
            memory, memory_labels, test, num_classes=self.num_classes, k=self.k, temperature=self.temperature
        )
        top1 = float(np.mean(predicted == test_labels))
        (log or state.log)(
            f"step {step}: knn top-1 {top1:.4f} (k={self.k}, {len(memory):,} memory, {len(test):,} test, "
            f"feature {self.feature})"
        )
        if state.is_chief and state.workdir:
            path = os.path.join(state.workdir, RESULTS)
            history = []
            if tf.io.gfile.exists(path):
                with tf.io.gfile.GFile(path) as f:
                    history = json.load(f)
            history = [entry for entry in history if entry["step"] != step]
            history.append(
                {"step": step, "knn_top1": top1, "k": self.k, "temperature": self.temperature,
                 "feature": self.feature, "memory": len(memory), "test": len(test)}
            )  # fmt: skip
            atomic_write.write_json(path, sorted(history, key=lambda entry: entry["step"]))
        return top1


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
