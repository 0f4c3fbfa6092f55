"""The weighted kNN vote against a direct NumPy loop, and the monitor hook in a short loop run (one device and
MirroredStrategy)."""

import json
import os

import keras
import numpy as np
import pytest

from goaldriven.tasks import loop
from goaldriven.tasks.self_supervised import digits_data, knn, simclr
from tests import strategies
from tests.tasks.self_supervised.test_objectives import SIZE, TinyBackbone


def _loop_vote(memory, labels, queries, k, t, classes):
    """Per query: cosine similarities, the k largest (stable order), exp(s / t) summed per class, argmax."""
    out = []
    for q in queries:
        sims = [float(np.dot(q, m) / (np.linalg.norm(q) * np.linalg.norm(m))) for m in memory]
        nearest = sorted(range(len(sims)), key=lambda j: (-sims[j], j))[:k]
        votes = [0.0] * classes
        for j in nearest:
            votes[labels[j]] += np.exp(sims[j] / t)
        out.append(int(np.argmax(votes)))
    return np.array(out)


def test_weighted_vote_matches_a_direct_loop():
    rng = np.random.default_rng(0)
    memory, labels, queries = rng.normal(size=(40, 5)), rng.integers(0, 4, 40), rng.normal(size=(13, 5))
    for k, t in ((1, 0.07), (7, 0.5), (40, 10.0)):
        got = knn.weighted_knn_predict(memory, labels, queries, num_classes=4, k=k, temperature=t, chunk=4)
        np.testing.assert_array_equal(got, _loop_vote(memory, labels, queries, k, t, 4))


def test_weights_break_a_majority_when_the_near_neighbour_is_much_closer():
    memory = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])  # one class-0 row on the query, two class-1 rows away
    labels = np.array([0, 1, 1])
    query = np.array([[1.0, 0.05]])
    assert knn.weighted_knn_predict(memory, labels, query, num_classes=2, k=3, temperature=0.07)[0] == 0
    assert knn.weighted_knn_predict(memory, labels, query, num_classes=2, k=3, temperature=100.0)[0] == 1
    with pytest.raises(ValueError, match="labels must lie in"):
        knn.weighted_knn_predict(memory, np.array([0, 1, 2]), query, num_classes=2)


@pytest.mark.parametrize("strategy", [strategies.one_device, strategies.mirrored], ids=["one_device", "mirrored"])
def test_monitor_reports_at_its_steps_and_at_the_end(strategy, tmp_path):
    data = digits_data.DigitsSSLData(image_size=SIZE)

    def backbone():
        model = TinyBackbone(name="tiny")
        model(keras.KerasTensor((None, SIZE, SIZE, 3)))
        return model

    task = simclr.SimCLRTask(backbone_fn=backbone, feature="pool", dataset=data, hidden_dim=8, projection_dim=4)
    monitor = knn.KNNMonitor(data.memory(), data, num_classes=10, every_steps=2, k=5, global_batch_size=150)
    lines = []
    loop.run(task=task, strategy=strategy(), workdir=str(tmp_path), train_steps=3, global_batch_size=4,
             steps_per_loop=3, checkpoint_every=100, hooks=[monitor], log=lines.append)  # fmt: skip
    history = json.load(open(os.path.join(tmp_path, knn.RESULTS)))
    assert [entry["step"] for entry in history] == [2, 3]  # next_stop cut the 3-step loop at 2; then the end
    assert all(
        entry["memory"] == 1347 and entry["test"] == 450 and 0.0 <= entry["knn_top1"] <= 1.0 for entry in history
    )
    assert any("knn top-1" in line for line in lines)
    assert history[-1]["knn_top1"] > 0.3  # far above chance (0.1) even for a tiny random conv net
