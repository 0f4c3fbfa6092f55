"""The primate baselines of thesis Chapter 3 (spec ch3 A3.2): Table 3.4's counts, torchvision's padding, the forward
pass of AlexNet-BN against NumPy, and the lab AlexNet of Chapter 2 kept apart."""

import keras
import numpy as np
import pytest

from goaldriven.models import zoo
from tests.models import numpy_layers

# Thesis Table 3.4 (parameters without the last dense layer; units at 64 px and 224 px, None: not in the table).
TABLE_3_4 = {
    "alexnet_tv": (57_003_840, 19_072, 204_672),
    "alexnet_bn": (57_022_528, 19_072, None),
    "vgg16": (134_260_544, 133_120, 1_538_560),
    "resnet18_tv": (11_176_512, 143_872, None),
}
LAST = {"alexnet_tv": "fc8", "alexnet_bn": "fc8", "vgg16": "fc8", "resnet18_tv": "fc"}


def _units(model, size) -> int:
    out = model(keras.KerasTensor((None, size, size, 3)))
    return sum(int(np.prod(out["features"][name].shape[1:])) for name in model.neural_fit_layers)


@pytest.mark.parametrize("name", sorted(TABLE_3_4))
def test_table_3_4_parameters_and_units(name):
    params, units_64, units_224 = TABLE_3_4[name]
    model = zoo.build_model(name, image_size=64)
    backbone = [w for w in model.trainable_weights if f"/{LAST[name]}/" not in w.path]
    assert sum(int(np.prod(w.shape)) for w in backbone) == params
    assert _units(model, 64) == units_64
    if units_224 is not None:
        assert _units(model, 224) == units_224  # the same weights serve 224 px (adaptive pool before fc6)


def test_feature_names():
    assert zoo.build_model("alexnet_bn", image_size=64).neural_fit_layers == (
        "pool1",
        "pool2",
        "conv3",
        "conv4",
        "pool5",
        "fc6",
        "fc7",
    )
    resnet = zoo.build_model("resnet18_tv", image_size=64)
    blocks = tuple(f"layer{i}_{j}" for i in range(1, 5) for j in range(2))
    assert resnet.feature_names == ("conv1", "maxpool", *blocks, "avgpool")
    assert zoo.build_model("alexnet", image_size=224).name == "alexnet"  # the Chapter 2 lab AlexNet is unchanged


def test_alexnet_needs_64_px():
    with pytest.raises(ValueError, match="at least 64 px"):
        zoo.build_model("alexnet_tv", image_size=32)


def _np_conv_bn_relu(x, conv, norm, padding):
    x = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    y = numpy_layers.conv2d(x, conv.kernel.numpy(), conv.bias.numpy(), conv.strides[0], padding="valid")
    if norm is not None:
        gamma, beta, mean, var = (v.numpy() for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
        y = (y - mean) / np.sqrt(var + 1e-5) * gamma + beta
    return numpy_layers.relu(y)


def _np_maxpool(x, k=3, s=2, pad=0):
    x = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)], constant_values=-np.inf)
    oh, ow = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    rows = [
        np.stack([x[:, s * i : s * i + k, s * j : s * j + k].max(axis=(1, 2)) for j in range(ow)], 1) for i in range(oh)
    ]
    return np.stack(rows, 1)


def _randomize(norm, rng):
    c = norm.gamma.shape[0]
    norm.gamma.assign(rng.uniform(0.5, 1.5, c))
    norm.beta.assign(rng.normal(0, 0.1, c))
    norm.moving_mean.assign(rng.normal(0, 0.1, c))
    norm.moving_variance.assign(rng.uniform(0.5, 2.0, c))


def test_alexnet_bn_matches_numpy_torchvision_layout():
    rng = np.random.default_rng(1)
    model = zoo.build_model("alexnet_bn", image_size=64, num_classes=3)
    for norm in [*model.norms, *model.fc_norms]:
        _randomize(norm, rng)
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    out = model(x, training=False)["features"]
    h = _np_maxpool(_np_conv_bn_relu(x, model.convs[0], model.norms[0], 2))
    np.testing.assert_allclose(out["pool1"], h, rtol=1e-4, atol=1e-4)
    h = _np_maxpool(_np_conv_bn_relu(h, model.convs[1], model.norms[1], 2))
    np.testing.assert_allclose(out["pool2"], h, rtol=1e-4, atol=1e-4)
    h = _np_conv_bn_relu(h, model.convs[2], model.norms[2], 1)
    h = _np_conv_bn_relu(h, model.convs[3], model.norms[3], 1)
    np.testing.assert_allclose(out["conv4"], h, rtol=1e-4, atol=1e-4)
    h = _np_maxpool(_np_conv_bn_relu(h, model.convs[4], model.norms[4], 1))  # (2, 1, 1, 256)
    flat = np.tile(h, (1, 6, 6, 1)).reshape(2, -1)  # adaptive pool 1 -> 6 replicates; (h, w, c) flattening
    fc6 = flat @ model.fc6.kernel.numpy() + model.fc6.bias.numpy()
    norm = model.fc_norms[0]
    fc6 = numpy_layers.relu(
        (fc6 - norm.moving_mean.numpy()) / np.sqrt(norm.moving_variance.numpy() + 1e-5) * norm.gamma.numpy()
        + norm.beta.numpy()
    )
    np.testing.assert_allclose(out["fc6"], fc6, rtol=1e-3, atol=1e-3)


def test_resnet18_stem_uses_torchvision_padding():
    rng = np.random.default_rng(2)
    model = zoo.build_model("resnet18_tv", image_size=64, num_classes=3)
    _randomize(model.bn1, rng)
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    out = model(x, training=False)["features"]
    conv = model.conv1
    y = numpy_layers.conv2d(np.pad(x, [(0, 0), (3, 3), (3, 3), (0, 0)]), conv.kernel.numpy(), 0.0, 2, padding="valid")
    norm = model.bn1
    y = numpy_layers.relu(
        (y - norm.moving_mean.numpy()) / np.sqrt(norm.moving_variance.numpy() + 1e-5) * norm.gamma.numpy()
        + norm.beta.numpy()
    )
    np.testing.assert_allclose(out["conv1"], y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["maxpool"], _np_maxpool(y, pad=1), rtol=1e-4, atol=1e-4)  # PyTorch: -inf padding


@pytest.mark.parametrize("name", ["alexnet_bn", "resnet18_tv"])
def test_learning_rule_gives_aligned_layers(name):
    model = zoo.build_model(name, image_size=64, num_classes=2, learning_rule="fa")
    kinds = {type(layer).__name__ for layer in model._flatten_layers() if hasattr(layer, "kernel")}
    assert kinds <= {"AlignedConv2D", "AlignedDense"} and kinds, kinds


def test_layers_start_from_independent_draws():
    model = zoo.build_model("alexnet_tv", image_size=64)
    assert not np.allclose(model.convs[3].kernel.numpy()[:, :, :256], model.convs[4].kernel.numpy())
    assert not np.allclose(model.fc6.kernel.numpy()[:4096], model.fc7.kernel.numpy())
