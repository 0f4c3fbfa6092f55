"""Protocols: balanced splits, leak-free holdouts, subsampling indices, pairwise, unit-subsampling cells."""

import json

import numpy as np
import pytest

from goaldriven.identification import dataset, protocols
from tests.identification import planted

FAST = {"svm": {"svc__C": [1.0], "pca__n_components": [None]}, "rf": {"n_estimators": [30], "max_features": ["sqrt"]}}


@pytest.fixture(scope="module")
def examples():
    runs = planted.planted_runs(statistics=planted.ADMISSIBLE[::3], epochs=tuple(range(0, 101, 5)), seed=2)
    return dataset.assemble(runs)  # 288 examples: 2 tasks x 2 architectures x 4 rules x 2 batch x 2 dataset seeds


def test_balanced_splits_hold_a_quarter_of_each_rule(examples):
    splits = protocols.balanced_splits(examples.y, n_splits=10, seed=0)
    assert len(splits) == 10
    for train, test in splits:
        assert np.bincount(examples.y[test]).tolist() == [18] * 4
        assert np.intersect1d(train, test).size == 0 and len(train) + len(test) == len(examples.y)
    assert not np.array_equal(splits[0][1], splits[1][1])


@pytest.mark.parametrize("group", ["architecture", "task", "curriculum"])
def test_holdout_splits_never_leak_the_held_out_group(examples, group):
    labels = examples.groups[group]
    splits = protocols.holdout_splits(examples, group)
    assert sorted(value for value, _, _ in splits) == sorted(set(labels))
    for value, train, test in splits:
        assert set(labels[test]) == {value}
        assert value not in set(labels[train])
        assert sorted(np.concatenate([train, test])) == list(range(len(labels)))


def test_evaluate_counts_and_importances(examples):
    result = protocols.evaluate(examples, "rf", FAST, n_splits=3, seed=0)
    assert np.sum(result["confusion"]) == 3 * result["n_test"] == 3 * 72
    assert result["mean"] > 0.9 and len(result["accuracy"]) == 3
    assert result["sem"] == pytest.approx(np.std(result["accuracy"], ddof=1) / np.sqrt(3))
    assert set(result["importances"]) == set(examples.statistics) | {"position"}
    json.dumps(result)


def test_holdout_and_pairwise(examples):
    held = protocols.holdout(examples, "task", "svm", FAST)
    assert set(held["held_out"]) == {"imagenet", "cifar10"}
    assert held["held_out"]["imagenet"]["n_test"] == 144
    one = examples.subset(np.flatnonzero(examples.groups["task"] == "imagenet"))
    assert "skipped" in protocols.holdout(one, "task", "svm", FAST)
    pairs = protocols.pairwise(examples, "svm", FAST, n_splits=2)
    assert list(pairs) == ["adam_vs_fa", "adam_vs_ia", "adam_vs_sgdm", "fa_vs_ia", "fa_vs_sgdm", "ia_vs_sgdm"]
    assert pairs["fa_vs_ia"]["chance"] == 0.5 and pairs["fa_vs_ia"]["rules"] == ["fa", "ia"]
    assert pairs["fa_vs_ia"]["n_test"] == 36 and pairs["fa_vs_ia"]["mean"] > 0.9


def test_restrict_rules_relabels():
    runs = planted.planted_runs(n_layers=(3,), tasks=("a",), batch_sizes=(1,), dataset_seeds=(0,), epochs=(0, 5))
    ex = dataset.assemble(runs)
    sub = protocols.restrict_rules(ex, ("sgdm", "adam"))
    assert sub.rules == ("sgdm", "adam") and sub.y.tolist() == [1, 1, 1, 0, 0, 0]
    np.testing.assert_array_equal(sub.X, ex.X[np.r_[0:3, 9:12]])


def test_periodic_indices():
    epochs = np.arange(0, 101, 5)
    index = protocols.periodic_indices(epochs, period=15, count=6, n_examples=500, seed=3)
    assert index.shape == (500, 6)
    np.testing.assert_array_equal(np.diff(index, axis=1), 3)  # 15 epochs = 3 samples apart
    assert index.min() == 0 and index.max() == 20  # starts 0..5 all drawn, the last sample fits
    assert sorted(set(index[:, 0])) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(index, protocols.periodic_indices(epochs, 15, 6, 500, seed=3))
    np.testing.assert_array_equal(protocols.periodic_indices(epochs, 5, 21, 2, seed=0), [list(range(21))] * 2)
    with pytest.raises(ValueError, match="do not fit"):
        protocols.periodic_indices(epochs, 25, 6, 1)
    with pytest.raises(ValueError, match="evenly spaced"):
        protocols.periodic_indices(epochs, 7, 2, 1)


def test_portion_indices():
    assert [p.tolist() for p in protocols.portion_indices(21, 3)] == [list(range(0, 7)), list(range(7, 14)),
                                                                      list(range(14, 21))]  # fmt: skip
    assert [p.tolist() for p in protocols.portion_indices(21, 7)][-1] == [18, 19, 20]
    assert len(protocols.portion_indices(22, 7)[0]) == 3


def test_trajectory_subsampling_and_portions(examples):
    regimes = {"dense": (5, (2, 21)), "sparse": (25, (2, 6))}
    result = protocols.trajectory_subsampling(examples, "svm", FAST, regimes, n_splits=2)
    assert list(result["dense"]["counts"]) == ["2", "21"] and result["sparse"]["skipped"] == [6]
    assert result["dense"]["counts"]["21"]["mean"] > 0.9
    portions = protocols.portion_transfer(examples, "svm", 3, FAST, n_splits=2)
    assert np.shape(portions["mean"]) == (3, 3) and portions["samples_per_portion"] == 7
    assert np.min(portions["mean"]) > 0.8  # the planted shift is present at every epoch
    json.dumps({"a": result, "b": portions})


def test_unit_subsampling_cells():
    cells = {}
    for fraction in (0.01, 1.0):
        for noise in (0.0, 10.0):
            for seed in (0, 1):
                # signal only survives at full fraction without noise; elsewhere labels carry no information
                shift = 3.0 if (fraction, noise) == (1.0, 0.0) else 0.0
                cells[(fraction, noise, seed)] = planted.planted_runs(
                    statistics=planted.ADMISSIBLE[::4], epochs=(0, 5, 10), shift=shift, seed=seed, n_layers=(4,)
                )
    result = protocols.unit_subsampling(cells, "svm", FAST, measures=("weights", "all"), n_splits=2)
    assert result["fractions"] == [0.01, 1.0] and result["noises"] == [0.0, 10.0]
    assert result["seeds"]["1.0,0.0"] == [0, 1]
    assert result["mean"]["all"][1][0] > 0.9
    assert result["mean"]["all"][0][1] < 0.5 and result["mean"]["weights"][0][0] < 0.5
    json.dumps(result)


def test_trajectory_average_control_runs(examples):
    averaged = dataset.trajectory_average(examples)
    result = protocols.per_measure(averaged, ("svm",), ("weights", "activity_change"), FAST, n_splits=2)
    assert set(result["svm"]) == {"weights", "activity_change"}


def test_full_protocol_selected_parts(examples):
    small = examples.subset(np.arange(0, len(examples.X), 2))
    result = protocols.full_protocol(small, ("svm",), ("svm",), FAST, n_splits=2, parts=("measures", "holdout"))
    assert set(result["timings"]) == {"measures", "holdout"}
    assert set(result["holdout"]["svm"]) == set(protocols.HOLDOUT_GROUPS)
    assert set(result["measures"]["svm"]) == set(dataset.MEASURES)
    json.dumps(result)
