"""Example assembly: exact feature positions, layer-position one-hot, errors, the thesis count formula."""

import types

import numpy as np
import pytest

from goaldriven.identification import dataset

STATS = ["weights_abs_mean", "activations_raw_norm", "gradavg_abs"]


def _run(rule, n_layers, offset, epochs=(0, 5, 10, 15), is_head=None, task="imagenet", bs=256, ds=None):
    t, layer, s = np.meshgrid(np.arange(len(epochs)), np.arange(n_layers), np.arange(len(STATS)), indexing="ij")
    values = offset + 100.0 * layer + 10.0 * s + t  # (T, L, S), every entry distinct and decodable
    run = {"task": task, "architecture": f"net{n_layers}", "rule": rule, "batch_size": bs, "model_seed": 0,
           "dataset_seed": ds}  # fmt: skip
    is_head = np.zeros(n_layers, bool) if is_head is None else np.asarray(is_head)
    return dataset.RunObservables(run, [f"l{i}" for i in range(n_layers)], is_head, STATS, np.asarray(epochs), values)


def test_feature_positions_are_statistic_major_then_onehot():
    runs = [_run("sgdm", 7, 0.0), _run("adam", 5, 5000.0, is_head=[0, 0, 0, 1, 1], task="simclr", ds=0)]
    examples = dataset.assemble(runs)
    T, S = 4, 3
    assert examples.X.shape == (12, S * T + 3)
    assert examples.rules == ("adam", "sgdm")
    np.testing.assert_array_equal(examples.y, [1] * 7 + [0] * 5)
    for row, (offset, layer) in enumerate([(0.0, i) for i in range(7)] + [(5000.0, i) for i in range(5)]):
        for s in range(S):
            for t in range(T):
                assert examples.X[row, s * T + t] == offset + 100 * layer + 10 * s + t
    # 7 non-head layers: g = 2 -> early, early, middle, middle, deep x 3; 3 non-head + 2 heads: g = 1, heads deep.
    expected = np.eye(3)[[0, 0, 1, 1, 2, 2, 2, 0, 1, 2, 2, 2]]
    np.testing.assert_array_equal(examples.X[:, -3:], expected)
    assert examples.groups["position"].tolist()[:7] == ["early"] * 2 + ["middle"] * 2 + ["deep"] * 3
    assert examples.groups["curriculum"].tolist() == ["bs256/dsNone"] * 7 + ["bs256/ds0"] * 5
    assert examples.groups["model"][0] == "imagenet/net7/sgdm/bs256/ms0/dsNone"
    assert examples.groups["layer"][8] == "l1"


def test_statistic_and_epoch_selection():
    examples = dataset.assemble([_run("sgdm", 3, 0.0)], statistics=[STATS[2], STATS[0]], epochs=[5, 15])
    np.testing.assert_array_equal(examples.X[1, :4], [100 + 20 + 1, 100 + 20 + 3, 100 + 0 + 1, 100 + 0 + 3])
    only = dataset.select_statistics(dataset.assemble([_run("sgdm", 3, 0.0)]), "activations")
    assert only.statistics == ("activations_raw_norm",)
    np.testing.assert_array_equal(only.X[2], [210, 211, 212, 213, 0, 0, 1])
    assert dataset.measure_statistics(STATS, "activity_change") == ["gradavg_abs"]


def test_sequences_prepend_the_onehot_channels():
    examples = dataset.assemble([_run("sgdm", 4, 0.0)])
    seq = dataset.as_sequences(examples)
    assert seq.shape == (4, 4, 3 + 3)
    for i in range(4):
        for t in range(4):
            np.testing.assert_array_equal(seq[i, t, :3], examples.X[i, -3:])
            np.testing.assert_array_equal(seq[i, t, 3:], [100 * i + 10 * s + t for s in range(3)])


def test_trajectory_average_and_time_selection():
    examples = dataset.assemble([_run("sgdm", 3, 0.0), _run("fa", 3, 7.0)])
    averaged = dataset.trajectory_average(examples)
    expected = np.stack([examples.X[:, s * 4 : (s + 1) * 4].mean(axis=1) for s in range(3)], axis=1)
    np.testing.assert_allclose(averaged.X[:, :3], expected)
    np.testing.assert_array_equal(averaged.X[:, 3:], examples.X[:, -3:])
    picked = dataset.select_time(examples, np.array([[0, 2]] * 3 + [[1, 3]] * 3))
    np.testing.assert_array_equal(picked.X[4, :6], [7 + 100 + 1, 7 + 100 + 3, 7 + 110 + 1, 7 + 110 + 3, 128, 130])


def test_incomplete_trajectories_are_an_error_naming_the_run():
    short = _run("fa", 3, 0.0, epochs=(0, 5, 10), task="wsn")
    with pytest.raises(ValueError, match="wsn/net3/fa/bs256/ms0/dsNone"):
        dataset.assemble([_run("sgdm", 3, 0.0), short])
    with pytest.raises(ValueError, match="missing some of epochs"):
        dataset.assemble([_run("sgdm", 3, 0.0), short], epochs=[0, 15])
    assert dataset.assemble([_run("sgdm", 3, 0.0), short], epochs=[0, 10]).X.shape == (6, 3 * 2 + 3)


def test_non_finite_values_are_an_error_and_finite_statistics_drops_them():
    bad = _run("fa", 3, 0.0)
    bad.values[2, 1, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        dataset.assemble([_run("sgdm", 3, 0.0), bad])
    assert dataset.finite_statistics([_run("sgdm", 3, 0.0), bad]) == [STATS[0], STATS[2]]


def test_from_storage_maps_the_contract_object():
    values = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    fake = types.SimpleNamespace(
        run=types.SimpleNamespace(
            task="cifar10", architecture="knet4", rule="ia", batch_size=128, model_seed=-1, dataset_seed=0
        ),  # fmt: skip
        layers=[
            types.SimpleNamespace(name="conv1", kind="conv", is_head=False),
            types.SimpleNamespace(name="fc", kind="dense", is_head=True),
        ],  # fmt: skip
        statistics=STATS,
        epochs=np.array([0, 5]),
        values=lambda fraction=1.0, noise=0.0, seed=0: values + noise,
    )
    run = dataset.from_storage(fake, noise=1.0)
    assert run.run["model_seed"] is None and run.run["dataset_seed"] == 0
    np.testing.assert_array_equal(run.is_head, [False, True])
    np.testing.assert_array_equal(run.values, values + 1.0)


def test_thesis_example_count():
    supervised = {"r18": 22, "r18v2": 22, "r34": 38, "r34v2": 38, "alexnet": 8, "alexnet_lrn": 8}
    layer_counts = {
        "imagenet": supervised,
        "wsn": supervised,
        "simclr": {"r18": 23, "r18v2": 23, "r34": 39, "r34v2": 39, "alexnet": 9, "alexnet_lrn": 9},
        "cifar10": {"knet4": 4, "knet4_lrn": 4, "knet5": 5, "knet5_lrn": 5},
    }
    counts = dataset.expected_example_count(layer_counts, ["sgdm", "adam", "fa", "ia"], [128, 256, 512], [None, 0],
                                            [None, 0])  # fmt: skip
    assert counts["per_combination"] == 432
    assert counts["per_rule"] == 5184
    assert counts["total"] == 20736
    assert counts["test_per_rule"] == 1296
    assert counts["models"] == 1056
    assert dataset.expected_example_count(**dataset.THESIS_GRID)["total"] == 20736


def test_count_formula_matches_an_assembled_grid():
    runs = [_run(rule, n, 0.0, task=task, bs=bs) for task, n in (("a", 3), ("b", 5)) for rule in ("fa", "ia")
            for bs in (128, 256)]  # fmt: skip
    counts = dataset.expected_example_count({"a": {"net3": 3}, "b": {"net5": 5}}, ["fa", "ia"], [128, 256], [0], [None])
    examples = dataset.assemble(runs)
    assert counts["total"] == len(examples.X) == 32
    assert counts["per_rule"] == np.sum(examples.y == 0) == 16
