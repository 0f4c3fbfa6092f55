"""Observed layers (counts, heads, call order, capture in any model) and the HDF5 observables file."""

import os

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import layers as aligned
from goaldriven.models import heads
from goaldriven.observables import layers as observed
from goaldriven.observables import storage


def _functional_backbone():
    images = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(images)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.SeparableConv2D(4, 3, name="sep")(x)  # not observed
    x = aligned.AlignedConv2D(5, 1, rule="feedback_alignment", name="c2")(x)
    pool = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(1, name="readout")(pool)
    return keras.Model(images, {"logits": logits, "features": {"pool": pool}}, name="backbone")


def test_counts_kinds_and_heads_of_a_self_supervised_model():
    backbone = _functional_backbone()
    plain = observed.observed_layers(backbone)
    assert [(o.layer.name, o.kind, o.is_head) for o in plain] == [
        ("c1", "conv", False),
        ("c2", "conv", False),
        ("readout", "dense", False),
    ]
    spec = heads.HeadSpec(hidden=(6,), output=3)
    model = heads.SelfSupervisedModel(backbone, "pool", {"proj": spec})
    images = tf.random.stateless_normal([2, 8, 8, 3], [0, 1])
    model(images)
    found = observed.order_by_calls(model, images, observed.observed_layers(model))  # (tracking order differs)
    # 2 backbone convs (its unused readout dropped) + the head's 2 dense layers.
    assert [(o.layer.name, o.kind, o.is_head) for o in found] == [
        ("c1", "conv", False),
        ("c2", "conv", False),
        ("dense0", "dense", True),
        ("dense1", "dense", True),
    ]
    assert len({o.name for o in found}) == 4
    assert {o.layer.name for o in observed.observed_layers(model, exclude=("c2",))} == {"c1", "dense0", "dense1"}


class _Reordered(keras.Model):
    """Attributes in the opposite order of the calls."""

    def __init__(self):
        super().__init__(name="reordered")
        self.last = keras.layers.Dense(2, name="last")
        self.first = keras.layers.Conv2D(3, 3, activation="relu", name="first")

    def call(self, x, training=False):
        return self.last(tf.reshape(self.first(x), [tf.shape(x)[0], -1]))


def test_call_order_and_capture_in_a_subclassed_model_inside_tf_function():
    model = _Reordered()
    x = tf.random.stateless_normal([2, 4, 4, 1], [0, 0])
    model(x)
    found = observed.observed_layers(model)
    assert [o.layer.name for o in found] == ["last", "first"]
    ordered = observed.order_by_calls(model, x, found)
    assert [o.layer.name for o in ordered] == ["first", "last"]

    @tf.function
    def outputs(images):
        rec = observed.layer_io(model, images, ordered)
        return [calls[0] for calls in rec.calls]

    with observed.installed(ordered):
        (x0, y0, v0), (x1, y1, v1) = outputs(x)
    first_out = model.first(x).numpy()  # the wrapper is gone again: plain calls
    assert "call" not in model.first.__dict__
    np.testing.assert_allclose(y0.numpy(), first_out, rtol=1e-6)
    np.testing.assert_allclose(x1.numpy(), first_out.reshape(2, -1), rtol=1e-6)
    np.testing.assert_allclose(y1.numpy(), model(x).numpy(), rtol=1e-6)
    assert v0.shape == x.shape and v1.shape == (2, 12)  # Jacobian column sums have the input's shape
    np.testing.assert_allclose(v1.numpy(), np.tile(model.last.kernel.numpy().sum(1), (2, 1)), rtol=1e-5)


RUN = storage.RunInfo("cifar10", "knet4", "adam", 128, model_seed=0, dataset_seed=None, extra={"lr": 0.001})
LAYERS = [storage.LayerInfo("conv1", "conv"), storage.LayerInfo("fc", "dense", True)]
STATS = ["weights_raw_mean", "gradavg_raw"]


def _rows(epoch, fraction=1.0, noise=0.0, seed=0, offset=0.0):
    layer, stat = np.meshgrid(np.arange(2), np.arange(2), indexing="ij")
    n = layer.size
    return {
        "epoch": np.full(n, epoch),
        "layer": layer.ravel(),
        "statistic": stat.ravel(),
        "fraction": np.full(n, fraction),
        "noise": np.full(n, noise),
        "seed": np.full(n, seed),
        "value": 100.0 * epoch + 10 * layer.ravel() + stat.ravel() + offset,
    }


def test_round_trip_perturbations_and_missing_rows(tmp_path):
    path = str(tmp_path / "observables.h5")
    storage.create(path, RUN, LAYERS, STATS)
    storage.create(path, RUN, LAYERS, STATS)  # the same header again: fine
    assert storage.recorded_epochs(path) == []
    storage.append(path, _rows(0))
    storage.append(path, _rows(5))
    storage.append(path, _rows(5, fraction=0.5, noise=1.0, seed=3, offset=0.5))
    obs = storage.read(path)
    assert obs.run == RUN and obs.layers == LAYERS and obs.statistics == STATS
    np.testing.assert_array_equal(obs.epochs, [0, 5])
    values = obs.values()
    assert values.shape == (2, 2, 2)
    np.testing.assert_array_equal(values[1], [[500, 501], [510, 511]])
    part = obs.values(fraction=0.5, noise=1.0, seed=3)
    assert np.isnan(part[0]).all() and part[1, 1, 0] == 510.5
    assert obs.perturbations() == [(0.5, 1.0, 3), (1.0, 0.0, 0)]
    with pytest.raises(KeyError, match="no rows for fraction=0.25"):
        obs.values(fraction=0.25)
    with h5py.File(path, "r") as f:  # the contract's layout
        assert f.attrs["format"] == "goaldriven-observables" and f.attrs["dataset_seed"] == -1
        assert f["table/epoch"].dtype == np.int32 and f["table/value"].dtype == np.float64
        assert list(f["layers/is_head"][()]) == [False, True]
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp.h5")]


def test_header_mismatch_and_bad_rows_are_refused(tmp_path):
    path = str(tmp_path / "observables.h5")
    storage.create(path, RUN, LAYERS, STATS)
    other = storage.RunInfo("cifar10", "knet4", "sgdm", 128, model_seed=0)
    with pytest.raises(ValueError, match="another run or setting .*run"):
        storage.create(path, other, LAYERS, STATS)
    with pytest.raises(ValueError, match="different statistics"):
        storage.create(path, RUN, LAYERS, STATS[:1])
    with pytest.raises(ValueError, match="different layers"):
        storage.create(path, RUN, LAYERS[:1], STATS)
    bad = _rows(0)
    bad["layer"] = bad["layer"] + 1
    with pytest.raises(ValueError, match="outside the file's 2 layers"):
        storage.append(path, bad)
    with pytest.raises(ValueError, match="exactly the columns"):
        storage.append(path, {k: v for k, v in _rows(0).items() if k != "seed"})


def test_drop_epochs_after_logs_and_keeps_the_rest(tmp_path):
    path = str(tmp_path / "observables.h5")
    storage.create(path, RUN, LAYERS, STATS)
    for epoch in (0, 5, 10, 15):
        storage.append(path, _rows(epoch))
    lines = []
    assert storage.drop_epochs_after(path, 5, lines.append) == [10, 15]
    assert storage.recorded_epochs(path) == [0, 5] and "epochs [10, 15]" in lines[0]
    assert storage.drop_epochs_after(path, 5, lines.append) == [] and len(lines) == 1
    np.testing.assert_array_equal(storage.read(path).values()[:, 1, 1], [11, 511])
    assert storage.drop_epochs_after(str(tmp_path / "none.h5"), 0) == []
