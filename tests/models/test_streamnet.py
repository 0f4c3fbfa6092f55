"""StreamNets (thesis Table 3.2, spec ch3 A3.1): Table 3.4's parameter and unit counts, sizes, the reference's graph,
and the forward pass against a NumPy implementation written from the spec's layer definitions."""

import keras
import numpy as np
import pytest

from goaldriven.models import encoder_plans, zoo
from goaldriven.models.streamnet import StreamNet
from tests.models import numpy_layers

# Thesis Table 3.4: parameters (without the loss head), units at 64 x 64 and at 64 x 81.
TABLE_3_4 = {
    "streamnet_single": (2_029_632, 8_896, 11_712),
    "streamnet_dual": (5_806_848, 14_656, 19_392),
    "streamnet_six": (16_780_800, 28_480, 37_824),
}


@pytest.fixture(scope="module")
def built():
    """The StreamNets at 64 px with their default head, each built once for the tests that only read them (shapes,
    counts, initial kernels, a forward pass): a name -> model dict filled on first use."""
    models = {}

    def get(name):
        if name not in models:
            keras.utils.set_random_seed(0)
            models[name] = zoo.build_model(name, image_size=64)
        return models[name]

    return get


def _units(model, size) -> int:
    out = model(keras.KerasTensor((None, *size, 3)))
    return sum(int(np.prod(out["features"][name].shape[1:])) for name in model.neural_fit_layers)


@pytest.mark.parametrize("name", sorted(TABLE_3_4))
def test_table_3_4_parameters_and_units(name, built):
    params, units_64, units_64x81 = TABLE_3_4[name]
    model = built(name)
    backbone = [w for w in model.trainable_weights if "/readout/" not in w.path]
    assert sum(int(np.prod(w.shape)) for w in backbone) == params
    assert _units(model, (64, 64)) == units_64
    assert _units(model, (64, 81)) == units_64x81


def test_feature_names_and_sizes_at_64_and_64x81(built):
    model = built("streamnet_six")
    streams = ("VISl", "VISrl", "VISal", "VISli", "VISpm", "VISpl")
    assert model.feature_names == ("VISp", *streams, "VISpor", "VISam", "pool")
    assert model.neural_fit_layers == ("VISp", *streams, "VISpor", "VISam")
    out = model(keras.KerasTensor((None, 64, 64, 3)))["features"]
    assert tuple(out["VISp"].shape[1:]) == (7, 7, 64)
    assert all(tuple(out[s].shape[1:]) == (3, 3, 384) for s in streams)
    assert tuple(out["VISam"].shape[1:]) == (3, 3, 256)
    assert tuple(out["pool"].shape[1:]) == (2 * 256 * 36,)
    wide = model(keras.KerasTensor((None, 64, 81, 3)))["features"]
    assert tuple(wide["VISp"].shape[1:3]) == (7, 9) and tuple(wide["VISpor"].shape[1:3]) == (3, 4)
    single = built("streamnet_single")
    assert single.feature_names == ("VISp", "ventral", "VISpor", "pool")


def test_reference_connection_order():
    # mouse-vision's model_conns: input_VISp, VISp_<stream>..., VISp_VISpor, VISp_VISam, then <s>_VISam, <s>_VISpor.
    names = [(e.source, e.target) for e in encoder_plans.streamnet_plan(2).edges]
    assert names == [
        ("image", "VISp"),
        ("VISp", "ventral"),
        ("VISp", "dorsal"),
        ("VISp", "VISpor"),
        ("VISp", "VISam"),
        ("ventral", "VISam"),
        ("ventral", "VISpor"),
        ("dorsal", "VISam"),
        ("dorsal", "VISpor"),
    ]
    single = [(e.source, e.target) for e in encoder_plans.streamnet_plan(1).edges]
    assert single == [("image", "VISp"), ("VISp", "ventral"), ("VISp", "VISpor"), ("ventral", "VISpor")]


@pytest.mark.parametrize("size", [32, 224, (64, 81)])
def test_accepts_32_to_224(size):
    model = zoo.build_model("streamnet_dual", image_size=size, num_classes=3)
    shape = (size, size) if isinstance(size, int) else size
    assert tuple(model(np.zeros((1, *shape, 3), np.float32))["logits"].shape) == (1, 3)


@pytest.mark.parametrize("size", [31, 225])
def test_rejects_sizes_outside_32_to_224(size):
    with pytest.raises(ValueError, match="32 to 224 px"):
        zoo.build_model("streamnet_single", image_size=size)


def test_rejects_unknown_stream_count():
    with pytest.raises(ValueError, match="streams must be one of"):
        encoder_plans.streamnet_plan(3)


def _np_block(model, x, edge_index, op_index, padding):
    conv = model.encoder.convs[edge_index][op_index]
    norm = model.encoder.norms[edge_index][op_index]
    x = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    y = numpy_layers.conv2d(x, conv.kernel.numpy(), conv.bias.numpy(), conv.strides[0], padding="valid")
    gamma, beta, mean, var = (v.numpy() for v in (norm.gamma, norm.beta, norm.moving_mean, norm.moving_variance))
    return numpy_layers.relu((y - mean) / np.sqrt(var + 1e-5) * gamma + beta)


def _np_maxpool(x):  # 3 x 3 stride 2, valid (PyTorch's MaxPool2d(3, 2))
    oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    return np.stack(
        [
            np.stack([x[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(1, 2)) for j in range(ow)], 1)
            for i in range(oh)
        ],
        1,
    )


def _randomize_batch_norms(model, rng):
    for layer in model.encoder.norms:
        for norm in layer:
            if norm is not None:
                c = norm.gamma.shape[0]
                norm.gamma.assign(rng.uniform(0.5, 1.5, c))
                norm.beta.assign(rng.normal(0, 0.1, c))
                norm.moving_mean.assign(rng.normal(0, 0.1, c))
                norm.moving_variance.assign(rng.uniform(0.5, 2.0, c))


@pytest.mark.parametrize("name", ["streamnet_single", "streamnet_dual"])
def test_forward_matches_numpy_reference(name):
    rng = np.random.default_rng(0)
    model = zoo.build_model(name, image_size=64, num_classes=5)
    _randomize_batch_norms(model, rng)
    x = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    out = model(x, training=False)
    streams = model.stream_names
    # Edge indices follow the reference order (test_reference_connection_order).
    visp = _np_maxpool(_np_block(model, x, 0, 0, 2))
    values = {}
    for k, s in enumerate(streams):
        hidden = _np_maxpool(_np_block(model, visp, 1 + k, 0, 2))
        values[s] = _np_block(model, hidden, 1 + k, 2, 1)
    deep = ("VISpor",) if len(streams) == 1 else ("VISpor", "VISam")
    first_stream_edge = 1 + len(streams) + len(deep)
    for a, area in enumerate(deep):
        total = _np_block(model, visp, 1 + len(streams) + a, 0, 0)
        for k, s in enumerate(streams):
            edge = first_stream_edge + k * len(deep) + (len(deep) - 1 - a)  # <s>_VISam comes before <s>_VISpor
            assert model.plan.edges[edge].target == area and model.plan.edges[edge].source == s
            total = total + _np_block(model, values[s], edge, 0, 1)
        values[area] = total
    np.testing.assert_allclose(out["features"]["VISp"], visp, rtol=1e-4, atol=1e-4)
    for name_ in (*streams, *deep):
        np.testing.assert_allclose(out["features"][name_], values[name_], rtol=1e-4, atol=1e-4)
    code = np.concatenate([values[a] for a in deep], axis=-1)  # (b, 3, 3, D * 256)
    pooled = code.repeat(2, axis=1).repeat(2, axis=2)  # PyTorch's adaptive pool 3 -> 6 replicates each pixel twice
    np.testing.assert_allclose(out["features"]["pool"], pooled.reshape(2, -1), rtol=1e-4, atol=1e-4)
    readout = model.readout
    expected = pooled.reshape(2, -1) @ readout.kernel.numpy() + readout.bias.numpy()
    np.testing.assert_allclose(out["logits"], expected, rtol=1e-3, atol=1e-3)


def test_config_round_trip_and_learning_rule():
    model = zoo.build_model("streamnet_single", image_size=64, num_classes=4, weight_decay=1e-3)
    clone = StreamNet.from_config(model.get_config())
    clone(keras.KerasTensor((None, 64, 64, 3)))
    assert clone.count_params() == model.count_params() and clone.weight_decay == 1e-3
    aligned = zoo.build_model("streamnet_single", image_size=64, num_classes=4, learning_rule="fa")
    assert type(aligned.encoder.convs[0][0]).__name__ == "AlignedConv2D"
    assert type(aligned.readout).__name__ == "AlignedDense"


def test_kernels_start_as_pytorch_defaults(built):
    model = built("streamnet_dual")
    kernel = model.encoder.convs[1][0].kernel.numpy()  # VISp -> ventral conv 5x5, 64 -> 192
    bound = 1.0 / np.sqrt(5 * 5 * 64)
    assert np.abs(kernel).max() <= bound and np.isclose(kernel.std(), bound / np.sqrt(3), rtol=0.02)
    assert np.all(model.encoder.convs[1][0].bias.numpy() == 0)


def test_parallel_layers_start_from_independent_draws(built):
    model = built("streamnet_dual")
    ventral, dorsal = model.encoder.convs[1][0].kernel.numpy(), model.encoder.convs[2][0].kernel.numpy()
    assert not np.allclose(ventral, dorsal)
    out = model(np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype(np.float32))["features"]
    assert not np.allclose(out["VISpor"], out["VISam"])
