"""KNet4 / KNet5 (+-LRN) of thesis Chapter 6 (spec ch5 6.3, A21): golden counts, shapes, the conv1-ReLU quirk,
forward pass against NumPy, initialisers, weight decay, learning rules, zoo names."""

import json

import keras
import numpy as np
import pytest

from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import knet, zoo
from tests.models import numpy_layers as ref

# Trainable parameters at 32 x 32 x 3, 10 classes. Every conv is 5x5 SAME; the pools (3x3/2 SAME) give 32 -> 16 -> 8
# -> 4 (-> 2 for KNet5); LRN has no weights, so the LRN variants have the same counts.
KNET4 = (
    (5 * 5 * 3 * 32 + 32)  # conv1: 2,432
    + (5 * 5 * 32 * 32 + 32)  # conv2: 25,632
    + (5 * 5 * 32 * 64 + 64)  # conv3: 51,264
    + (4 * 4 * 64 * 10 + 10)  # fc4 on the 4 x 4 x 64 = 1,024 flattened conv3: 10,250
)
KNET5 = (
    (5 * 5 * 3 * 32 + 32)  # conv1: 2,432
    + (5 * 5 * 32 * 32 + 32)  # conv2: 25,632
    + (5 * 5 * 32 * 64 + 64)  # conv3: 51,264
    + (5 * 5 * 64 * 128 + 128)  # conv4: 204,928
    + (2 * 2 * 128 * 10 + 10)  # fc5 on the 2 x 2 x 128 = 512 flattened conv4: 5,130
)
GOLDEN = {"knet4": 89_578, "knet4_lrn": 89_578, "knet5": 289_386, "knet5_lrn": 289_386}
NAMES = tuple(GOLDEN)


def test_hand_arithmetic_equals_the_golden_numbers():
    assert (KNET4, KNET5) == (89_578, 289_386)


@pytest.mark.parametrize("name", NAMES)
def test_golden_parameter_counts_and_layers(name):
    model = zoo.build_model(name, num_classes=10, image_size=32)
    assert model.count_params() == GOLDEN[name]
    assert not model.non_trainable_weights
    depth = int(name[4])
    convs = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dense)]
    assert [c.name for c in convs] == [f"conv{i}" for i in range(1, depth)] and [d.name for d in dense] == [
        f"fc{depth}"
    ]
    assert [c.kernel.shape[:2] for c in convs] == [(5, 5)] * (depth - 1)
    lrns = [layer.name for layer in model._flatten_layers() if layer.__class__.__name__ == "LocalResponseNormalization"]
    assert lrns == (["lrn1", "lrn2"] if name.endswith("_lrn") else [])
    assert model.name == name


@pytest.mark.parametrize("depth", [4, 5])
def test_feature_shapes_square_and_non_square_single_channel(depth):
    model = knet.build_knet(depth, num_classes=10)
    out = model(np.zeros((2, 32, 32, 3), "float32"))
    sizes = [16, 8, 4, 2][: depth - 1]
    widths = list(knet.WIDTHS[depth])
    assert model.feature_names == tuple(f"conv{i}" for i in range(1, depth))
    for i, (size, width) in enumerate(zip(sizes, widths)):
        assert tuple(out["features"][f"conv{i + 1}"].shape) == (2, size, size, width)
    assert out["logits"].shape == (2, 10) and out["logits"].dtype == "float32"
    # Non-square, single channel (the WSN cochleagram layout): every SAME pool gives ceil(n / 2).
    model = zoo.build_model(f"knet{depth}", num_classes=7, image_size=(21, 38), channels=1)
    out = model(np.zeros((1, 21, 38, 1), "float32"))
    h, w = [11, 6, 3, 2][depth - 2], [19, 10, 5, 3][depth - 2]
    assert tuple(out["features"][f"conv{depth - 1}"].shape) == (1, h, w, widths[-1])
    assert model.get_layer(f"fc{depth}").kernel.shape == (h * w * widths[-1], 7)


def _numpy_knet(images, model, use_lrn, relu_after_conv1):
    """The module docstring's equations in NumPy with the model's weights."""
    x = np.asarray(images, np.float64)
    for i, conv in enumerate(model.convs):
        kernel, bias = (np.asarray(w) for w in conv.get_weights())
        x = ref.conv2d(x, kernel, bias)
        if i == 0:
            x = ref.pool_same(x, "max")
            x = ref.relu(x) if relu_after_conv1 else x
        else:
            x = ref.pool_same(ref.relu(x), "avg")
        if use_lrn and i < 2:
            x = ref.lrn(x, depth_radius=3, bias=1.0, alpha=5e-5, beta=0.75)
    kernel, bias = model.readout.get_weights()
    return x.reshape(x.shape[0], -1) @ kernel + bias


@pytest.mark.parametrize(
    "depth, use_lrn, conv1_relu", [(4, False, None), (4, True, None), (5, True, None), (4, False, True)]
)
def test_forward_matches_numpy(depth, use_lrn, conv1_relu):
    model = knet.build_knet(depth, use_lrn=use_lrn, num_classes=6, image_size=(12, 10), conv1_relu=conv1_relu)
    rng = np.random.default_rng(depth)
    # Large weights, so that LRN's denominator and the missing ReLU both change the output.
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    images = rng.normal(size=(2, 12, 10, 3)).astype("float32")
    relu_after_conv1 = use_lrn if conv1_relu is None else conv1_relu
    expected = _numpy_knet(images, model, use_lrn, relu_after_conv1)
    np.testing.assert_allclose(model(images)["logits"], expected, rtol=2e-4, atol=2e-4)
    if not use_lrn:  # A21: the other choice of the conv1 ReLU gives a different network
        other = _numpy_knet(images, model, use_lrn, not relu_after_conv1)
        assert np.abs(other - expected).max() > 1e-2


def test_a21_quirk_conv1_features_are_linear_without_lrn():
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    plain = knet.build_knet(4)(images)["features"]["conv1"]
    assert np.min(plain) < 0  # no ReLU after conv1 + max pool (the reference code)
    for model in (knet.build_knet(4, conv1_relu=True), knet.build_knet(4, use_lrn=True)):
        assert np.min(model(images)["features"]["conv1"]) >= 0


def test_initialisers_follow_the_spec():
    model = knet.build_knet(5)
    stds = [float(np.std(conv.kernel)) for conv in model.convs] + [float(np.std(model.readout.kernel))]
    np.testing.assert_allclose(stds[0], 1e-4, rtol=0.1)  # conv1 N(0, 1e-4^2): 2,400 draws
    np.testing.assert_allclose(stds[1:], 0.01, rtol=0.1)
    assert all(not np.any(layer.bias) for layer in model.convs + [model.readout])


def test_weight_decay_is_half_tf1_lambda_on_kernels():
    model = knet.build_knet(4, weight_decay=1e-5)
    kernels = [conv.kernel for conv in model.convs] + [model.readout.kernel]
    expected = 1e-5 / 2 * sum(float(np.sum(np.square(k))) for k in kernels)
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)
    assert zoo.DEFAULT_WEIGHT_DECAY["knet4_lrn"] == 1e-5
    built = zoo.build_model("knet5", num_classes=10, image_size=32)
    assert built.weight_decay == 1e-5


@pytest.mark.parametrize("use_lrn", [False, True])
def test_learning_rule_gives_aligned_layers(use_lrn):
    model = zoo.build_model("knet4_lrn" if use_lrn else "knet4", num_classes=10, image_size=32, learning_rule="fa")
    aligned = aligned_layers.aligned_layers(model)
    assert [layer.name for layer in aligned] == ["conv1", "conv2", "conv3", "fc4"]
    assert [layer.alignment_relu for layer in aligned] == [use_lrn, False, False, False]
    assert len(aligned_layers.backward_kernels(model)) == 4


def test_config_round_trip_and_invalid_arguments():
    model = knet.build_knet(5, use_lrn=True, num_classes=3, conv1_relu=False)
    config = json.loads(json.dumps(model.get_config()))
    clone = knet.KNet.from_config(config)
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    clone(images)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(images)["logits"], model(images)["logits"], rtol=1e-5, atol=1e-7)
    assert clone.relu_after_conv1 is False
    with pytest.raises(ValueError, match="KNet4"):
        knet.KNet(depth=3)
    with pytest.raises(ValueError, match="conv1_relu"):
        knet.KNet(conv1_relu="yes")
    with pytest.raises(ValueError, match=r"\(h, w\) pair"):
        knet.build_knet(4, image_size=(32, 32, 3))
    with pytest.raises(ValueError, match="channels must be a positive int"):
        knet.build_knet(4, channels=0)
