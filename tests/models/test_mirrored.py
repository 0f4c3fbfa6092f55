"""Plans and their mirrors (models/mirrored.py, argmax_pooling.py, mirrored_autoencoder.py): exact sizes of the
AlexNet plan at 64 px and of a DAG with a merge and a fan-out, the decoder as the exact adjoint of a linear encoder
(sums become splits, pools become scatter-adds), max-unpooling against NumPy, plan checks and learning rules."""

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import binding
from goaldriven.alignment import layers as aligned_layers
from goaldriven.models import argmax_pooling, mirrored, mirrored_autoencoder
from goaldriven.models.mirrored import INPUT, Conv, Edge, MaxPool, Plan

# Spec A3.2: torchvision AlexNet features 2,469,696 parameters + 2,304 conv-BN (gamma, beta) = AlexNet-BN's share.
ALEXNET_BN_FEATURE_PARAMS = 2_469_696 + 2_304


def _with_convs(plan: Plan, **changes) -> Plan:
    """The plan with `changes` applied to every Conv op."""
    change = lambda op: dataclasses.replace(op, **changes) if isinstance(op, Conv) else op  # noqa: E731
    edges = [Edge(e.source, e.target, tuple(change(op) for op in e.ops)) for e in plan.edges]
    return Plan(edges=tuple(edges), outputs=plan.outputs)


def _narrow(plan: Plan, width: int = 4) -> Plan:
    """The same geometry with `width` filters per conv (cheap to build)."""
    return _with_convs(plan, filters=width)


def _linear(plan: Plan) -> Plan:
    """The same plan without BN and ReLU: encoder and decoder are linear given the pools' switches."""
    return _with_convs(plan, batch_norm=False, relu=False)


def _two_deep_areas(width: int = 3) -> Plan:
    """A StreamNet-shaped DAG with two concatenated outputs (two streams, two deep areas, skips from shallow)."""
    stream = (Conv(width, 3, 1, 1), MaxPool(), Conv(width, 3, 1, 1))
    edges = [Edge(INPUT, "shallow", (Conv(width, 5, 2, 2), MaxPool()))]
    edges += [Edge("shallow", s, stream) for s in ("s1", "s2")]
    for deep, filters in (("deep1", 2), ("deep2", 3)):
        edges += [Edge(s, deep, (Conv(filters, 3, 1, 1),)) for s in ("s1", "s2")]
        edges.append(Edge("shallow", deep, (Conv(filters, 3, 2, 0),)))
    return Plan(edges=tuple(edges), outputs=("deep1", "deep2"))


def test_alexnet_plan_sizes_at_64px_and_parameter_count():
    plan = mirrored.alexnet_plan()
    shapes = plan.shapes((64, 64, 3))
    assert shapes.nodes == {
        INPUT: (64, 64, 3), "pool1": (7, 7, 64), "pool2": (3, 3, 192), "conv3": (3, 3, 384), "conv4": (3, 3, 256),
        "pool5": (1, 1, 256),
    }  # fmt: skip
    assert shapes.edges[0] == ((64, 64, 3), (15, 15, 64), (7, 7, 64))  # 64 -> pad 2, conv 11/4 -> 15 -> pool -> 7
    model = mirrored_autoencoder.build_sparse_autoencoder(plan, image_size=64)
    assert sum(int(np.prod(w.shape)) for w in model.encoder.trainable_weights) == ALEXNET_BN_FEATURE_PARAMS
    out = model(tf.random.normal([2, 64, 64, 3]), training=True)
    assert out["reconstruction"].shape == (2, 64, 64, 3) and out["embedding"].shape == (2, 128)
    assert {k: tuple(v.shape[1:]) for k, v in out["features"].items()} == {
        **{k: v for k, v in shapes.nodes.items() if k != INPUT},
        "pool": (6 * 6 * 256,),  # the 6 x 6 readout pool of pool5, flattened (the linear probe's input)
        "embedding": (128,),
    }
    first = model.decoder.deconvs[0][0]  # the mirror of conv1: 15 -> 4 * 14 + 11 + 1 = 68, cropped by 2 to 64
    assert first.output_padding == (1, 1) and tuple(first.compute_output_shape((None, 15, 15, 64))) == (None, 68, 68, 3)
    hourglass = mirrored_autoencoder.build_depth_hourglass(plan, image_size=64)
    assert hourglass(tf.zeros([1, 64, 64, 3]))["prediction"].shape == (1, 64, 64, 1)


@pytest.mark.parametrize("size", [(64, 64), (65, 66), (67, 81), (70, 68)])
def test_alexnet_geometry_decodes_to_the_exact_input_size(size):
    # Every residue of the size modulo the strides needs its own output padding (4 for conv1, 2 for the pools).
    model = mirrored_autoencoder.build_depth_hourglass(_narrow(mirrored.alexnet_plan()), image_size=size)
    assert model(tf.zeros([1, *size, 3]))["reconstruction"].shape == (1, *size, 3)


def test_dag_plan_with_merge_and_fan_out_has_exact_sizes():
    plan = mirrored.tiny_plan(width=4)
    assert plan.nodes == ("shallow", "stream1", "stream2", "deep")
    assert [plan.edges[i].source for i in plan.incoming("deep")] == ["stream1", "stream2", "shallow"]  # the merge
    shapes = plan.shapes((32, 32, 3))
    assert shapes.nodes["shallow"] == (7, 7, 4) and shapes.nodes["deep"] == (3, 3, 8) and shapes.code == (3, 3, 8)
    assert shapes.edges[1] == ((7, 7, 4), (7, 7, 4), (3, 3, 4), (3, 3, 8))
    model = mirrored_autoencoder.build_sparse_autoencoder(plan, image_size=32, embedding_dim=16)
    out = model(tf.random.normal([2, 32, 32, 3]))
    assert out["reconstruction"].shape == (2, 32, 32, 3)
    assert {k: tuple(v.shape[1:]) for k, v in out["features"].items()} == {
        "shallow": (7, 7, 4), "stream1": (3, 3, 8), "stream2": (3, 3, 8), "deep": (3, 3, 8), "pool": (288,),
        "embedding": (16,),
    }  # fmt: skip
    assert model.neural_fit_layers == plan.nodes
    two = _two_deep_areas()
    assert two.shapes((32, 32, 3)).code == (3, 3, 5)  # the outputs are concatenated


@pytest.mark.parametrize(
    "plan, size",
    [(mirrored.tiny_plan(3), (32, 32)), (_two_deep_areas(), (33, 35)), (_narrow(mirrored.alexnet_plan(), 3), (67, 66))],
    ids=["merge_fan_out", "two_outputs", "alexnet"],
)
def test_linear_decoder_with_tied_kernels_is_the_adjoint_of_the_encoder(plan, size):
    # Given the pools' switches the linear encoder is a matrix A and the mirror must be exactly A^T: transposed convs
    # with the encoder's kernels, crops for pads, scatter-adds for pools, sums at fan-outs, copies down merges and a
    # split of the concatenated outputs. <E x, y> = <x, D y> fails for any wrong piece.
    keras.mixed_precision.set_global_policy("float64")
    plan = _linear(plan)
    image_shape = (*size, 3)
    encoder = mirrored.PlanEncoder(plan)
    decoder = mirrored.MirroredDecoder(plan, image_shape)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(2, *image_shape)))
    encoded = encoder(x)
    y = tf.constant(rng.normal(size=encoded["code"].shape))
    decoder(y, encoded["switches"])  # builds
    for convs, deconvs in zip(encoder.convs, decoder.deconvs):
        for conv, deconv in zip(convs, deconvs):
            if conv is not None:
                assert deconv.kernel.shape == conv.kernel.shape  # (k, k, c_in, filters) in both layouts
                deconv.kernel.assign(conv.kernel)
                conv.bias.assign(tf.zeros_like(conv.bias))
                deconv.bias.assign(tf.zeros_like(deconv.bias))
    encoded = encoder(x)
    decoded = decoder(y, encoded["switches"])
    assert decoded.shape == x.shape
    lhs = float(tf.reduce_sum(encoded["code"] * y))
    rhs = float(tf.reduce_sum(x * decoded))
    assert abs(lhs) > 1e-3
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)


def _numpy_pool_with_argmax(x, k, s):
    b, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    values, indices = np.zeros((b, oh, ow, c)), np.zeros((b, oh, ow, c), np.int64)
    for n, i, j, ch in np.ndindex(b, oh, ow, c):
        window = x[n, i * s : i * s + k, j * s : j * s + k, ch]
        dy, dx = np.unravel_index(np.argmax(window), window.shape)  # first maximum in row-major order
        values[n, i, j, ch] = window[dy, dx]
        indices[n, i, j, ch] = ((n * h + i * s + dy) * w + j * s + dx) * c + ch
    return values, indices


def test_max_pool_indices_and_unpool_match_numpy_and_tf():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 3, size=(2, 15, 13, 3)).astype(np.float32)  # many ties
    values, indices = argmax_pooling.max_pool_with_argmax(tf.constant(x), 3, 2)
    ref_values, ref_indices = _numpy_pool_with_argmax(x, 3, 2)
    np.testing.assert_array_equal(values.numpy(), ref_values)
    np.testing.assert_array_equal(indices.numpy(), ref_indices)
    _, tf_indices = tf.nn.max_pool_with_argmax(x, 3, 2, "VALID", include_batch_in_index=True)
    np.testing.assert_array_equal(indices.numpy(), tf_indices.numpy())
    decoded = rng.normal(size=values.shape).astype(np.float32)
    expected = np.zeros(x.size, np.float32)
    np.add.at(expected, ref_indices.ravel(), decoded.ravel())  # overlapping windows picking one position add up
    assert len(np.unique(ref_indices)) < ref_indices.size  # the case exercises the sums
    unpooled = argmax_pooling.max_unpool(tf.constant(decoded), indices, (15, 13, 3))
    np.testing.assert_allclose(unpooled.numpy(), expected.reshape(x.shape), rtol=1e-6)
    compiled = tf.function(
        lambda t, v: argmax_pooling.max_unpool(v, argmax_pooling.max_pool_with_argmax(t)[1], (15, 13, 3)),
        jit_compile=True,
    )  # XLA has no MaxPoolWithArgmax kernel: this path must not use it
    np.testing.assert_allclose(compiled(tf.constant(x), tf.constant(decoded)).numpy(), unpooled.numpy(), rtol=1e-6)


def test_plan_checks_and_config_round_trip():
    plan = mirrored.tiny_plan()
    assert Plan.from_config(plan.get_config()) == plan
    with pytest.raises(ValueError, match="earlier edge"):
        Plan(edges=(Edge("a", "b", (MaxPool(),)), Edge(INPUT, "a", (MaxPool(),))), outputs=("b",))
    with pytest.raises(ValueError, match=r"\['a'\] feed no edge"):
        Plan(edges=(Edge(INPUT, "a", (MaxPool(),)), Edge(INPUT, "b", (MaxPool(),))), outputs=("b",))
    merge = (Edge(INPUT, "a", (Conv(4, 3),)), Edge(INPUT, "b", (Conv(4, 3, 2),)), Edge("a", "c", (Conv(4, 1),)),
             Edge("b", "c", (Conv(4, 1),)))  # fmt: skip
    with pytest.raises(ValueError, match=r"edges into 'c' give different shapes \(\(14, 14, 4\) and \(7, 7, 4\)"):
        Plan(edges=merge, outputs=("c",)).shapes((16, 16, 3))
    with pytest.raises(ValueError, match="too small"):
        mirrored.alexnet_plan().shapes((40, 40, 3))
    with pytest.raises(ValueError, match="each \\(source, target\\) once"):
        Plan(edges=(Edge(INPUT, "a", (MaxPool(),)), Edge(INPUT, "a", (MaxPool(),))), outputs=("a",))


def test_encoder_trains_under_any_rule_but_the_decoder_needs_backprop():
    def encoder():
        layer = mirrored.PlanEncoder(mirrored.tiny_plan())
        layer(keras.KerasTensor((None, 32, 32, 3)))
        return layer

    aligned = binding.build_under_rule(encoder, "fa")  # the rule check passes: every conv is aligned
    assert len(aligned_layers.aligned_layers(aligned)) == 8  # 1 shallow + 2 x 2 stream + 3 deep convs
    with pytest.raises(ValueError, match="Conv2DTranspose, which has no aligned layer.*'feedback_alignment'"):
        mirrored_autoencoder.build_sparse_autoencoder(mirrored.tiny_plan(), image_size=32, learning_rule="fa")
    with pytest.raises(ValueError, match="no aligned layer.*'symmetric_alignment'"):
        mirrored_autoencoder.build_depth_hourglass(mirrored.tiny_plan(), image_size=32, learning_rule="sa")
