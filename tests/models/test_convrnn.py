"""The biological unroller: resize and harbor order, arrival times, blanks, decoders, FF equivalence, remat; the
ConvRNN node and readout under the shared layer harness."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven import cells
from goaldriven.models import convrnn, convrnn_nodes, convrnn_zoo
from tests import layer_testing
from tests.cells.test_reciprocal_gated import _output_and_cell as rgc_output_and_cell


def _images(seed, size=16, batch=2):
    return tf.random.stateless_normal([batch, size, size, 3], [seed, 0])


def test_bilinear_resize_matches_tf_align_corners():
    x = tf.random.stateless_normal([2, 4, 7, 3], [1, 2])
    for size in [(28, 28), (7, 4), (4, 7), (1, 1)]:
        expected = tf.compat.v1.image.resize_bilinear(x, size, align_corners=True)
        np.testing.assert_allclose(convrnn_nodes.bilinear_resize(x, size), expected, atol=1e-5)


def test_harbor_concatenates_resized_others_in_given_order():
    ff = tf.zeros([1, 4, 4, 2])
    a = tf.fill([1, 2, 2, 1], 1.0)
    b = tf.fill([1, 1, 1, 3], 2.0)
    out_ff, fb = convrnn_nodes.harbor(ff, [a, b])
    assert out_ff is ff and fb.shape == (1, 4, 4, 4)
    np.testing.assert_array_equal(fb[0, :, :, 0], 1.0)
    np.testing.assert_array_equal(fb[0, :, :, 1:], 2.0)


def _node_case(kind):
    """(node kwargs, call args (feedforward, others, states), feedback channels, output shape, trainable weights)."""
    ff, fb = tf.random.normal((2, 8, 8, 4)), [tf.random.normal((2, 4, 4, 3))]  # feedback at half size: resized
    if kind == "plain_pool":  # pre conv (kernel, bias), stride 2 then the 2x2 pool: 8 -> 4 -> 2
        return {"filters": 4, "strides": 2, "activation": "relu", "pool": True}, (ff,), 0, (2, 2, 2, 4), 2
    if kind == "residual_ugrnn":  # pre conv 2 + cell 2 + post conv 2 + projection of the 7 harbor channels 1
        cell = cells.ConvUGRNNCell(4, weight_decay=1e-3, name="conv4_cell")
        kwargs = {"filters": 4, "block": "residual", "cell": cell, "weight_decay": 1e-3}
        return kwargs, (ff, fb, [tf.random.normal((2, 8, 8, 4))]), 3, (2, 8, 8, 4), 7
    # RGC Median node: pre conv 2 + the cell's 18: feedback 2, input_to_cell 2, tau_cell 3, gate_cell 3, input_to_out 2,
    # gate_out 3, tau_out 3 (no projection: the residual input has the output's depth)
    cell = cells.ReciprocalGatedCell.median(4, residual_channels=4, feedback_channels=3, cell_depth=3)
    kwargs = {"filters": 4, "activation": None, "cell": cell, "rgc_inputs": True}
    states = [tf.random.normal((2, 8, 8, 3)), tf.random.normal((2, 8, 8, 4))]
    return kwargs, (ff, fb, states), 3, (2, 8, 8, 4), 20


@pytest.mark.parametrize("kind", ["plain_pool", "residual_ugrnn", "rgc"])
def test_node_harness(kind):
    kwargs, call_args, other_channels, out_shape, n_weights = _node_case(kind)
    node = layer_testing.run_layer_test(
        convrnn_nodes.ConvNode,
        kwargs,
        call_args,
        expected_output_shape=out_shape,
        expected_num_trainable_weights=n_weights,
        # a node's build needs its feedback channels, which are not a call shape (ConvRNN.build passes them)
        build_fn=lambda layer: layer.build(tuple(call_args[0].shape), other_channels=other_channels),
        output_fn=(lambda out: rgc_output_and_cell(out)) if kind == "rgc" else (lambda out: out[0]),
    )
    assert node.output_size == out_shape[1:3] and node.output_channels == out_shape[3]


@pytest.mark.parametrize("kind", ["conv", "fc"])
def test_readout_harness(kind):
    layer_testing.run_layer_test(
        convrnn_nodes.Readout,
        {"num_classes": 5, "kind": kind, "weight_decay": 1e-3},
        (tf.random.normal((2, 4, 4, 8)),),
        expected_output_shape=(2, 5),
        expected_num_trainable_weights=2,  # the conv's or the dense layer's kernel and bias
    )


def test_feedback_order_is_plain_string_sort_with_feedforward_first():
    nodes = [convrnn_nodes.ConvNode(2, name=n, pool=False) for n in ("conv1", "conv2", "conv5", "conv10", "conv7")]
    model = convrnn.ConvRNN(
        nodes,
        convrnn_nodes.Readout(3, name="imnetds"),
        edges=[("conv7", "conv2"), ("conv10", "conv2"), ("conv5", "conv2")],
        times=8,
    )
    assert model.others["conv2"] == ["conv10", "conv5", "conv7"]  # "conv10" < "conv5" (reference sort)
    rgc = convrnn_zoo.build_convrnn("rgc_intermediate", width_multiplier=1 / 16, image_size=16, unroll_length=13)
    assert rgc.others["conv6"] == ["conv7", "conv9"] and rgc.others["conv5"] == ["conv8"]


def _feature_difference(model, times, image_off):
    a = model(_images(0), times=times, image_off=image_off, feature_layers="all")["features"]
    b = model(_images(1), times=times, image_off=image_off, feature_layers="all")["features"]
    return {
        name: np.abs(np.asarray(a[name]) - np.asarray(b[name])).reshape(2, times, -1).max(axis=(0, 2)) for name in a
    }


@pytest.mark.parametrize("name", ["basenet6", "ugrnn_shallow", "rgc_intermediate"])
def test_node_k_first_sees_the_image_at_step_k_minus_1(name):
    unroll = "biological" if name == "basenet6" else None
    model = convrnn_zoo.build_convrnn(
        name, num_classes=5, width_multiplier=1 / 16, image_size=16, unroll_length=13, unroll=unroll
    )
    diff = _feature_difference(model, times=13, image_off=13)
    for k, layer in enumerate(model.feature_names, start=1):
        assert np.all(diff[layer][: k - 1] == 0), (layer, diff[layer])
        assert diff[layer][k - 1] > 0, (layer, diff[layer])
        assert model.start_time(layer, "arrival") == k - 1 and model.start_time(layer) == k


def test_feedback_reaches_conv5_one_step_after_conv8():
    """Spec 11.3 item 2: conv5 depends on conv8's output at t-1; conv8 sees the image at t=7, so feedback at t=8."""
    model = convrnn_zoo.build_convrnn("rgc_intermediate", num_classes=5, width_multiplier=1 / 16, image_size=16)
    images = _images(0)
    base = model(images, times=13, image_off=13, feature_layers=("conv5",))["features"]["conv5"]
    fb_conv = model.graph_nodes[4].cell  # zero the conv8 -> conv5 feedback conv: only steps >= 8 may change
    weights = fb_conv.get_weights()
    names = [w.path for w in fb_conv.weights]
    fb_index = [i for i, n in enumerate(names) if "feedback" in n]
    assert fb_index, names
    fb_conv.set_weights([np.zeros_like(w) if i in fb_index else w for i, w in enumerate(weights)])
    cut = model(images, times=13, image_off=13, feature_layers=("conv5",))["features"]["conv5"]
    diff = np.abs(np.asarray(base) - np.asarray(cut)).reshape(2, 13, -1).max(axis=(0, 2))
    assert np.all(diff[:8] == 0) and np.all(diff[8:] > 0), diff


def test_blank_frames_follow_the_schedule():
    model = convrnn_zoo.build_convrnn("basenet6", num_classes=5, width_multiplier=1 / 16, image_size=16, build=False)
    frames = model._frames(_images(0), times=6, image_off=2)  # pylint: disable=protected-access
    np.testing.assert_array_equal(frames[1], _images(0))
    for t in range(2, 6):  # one blank frame shared by the batch
        np.testing.assert_array_equal(frames[t], np.full((1, 16, 16, 3), 0.5, np.float32))


def test_conv1_output_after_image_off_is_the_blank_response():
    model = convrnn_zoo.build_convrnn(
        "basenet6", num_classes=5, width_multiplier=1 / 16, image_size=16, unroll="biological"
    )
    feats = model(_images(0), times=8, image_off=3, feature_layers=("conv1",))["features"]["conv1"]
    blank = model(tf.fill([2, 16, 16, 3], 0.5), times=8, image_off=8, feature_layers=("conv1",))["features"]["conv1"]
    np.testing.assert_allclose(feats[:, 3:], blank[:, 3:], atol=1e-6)
    assert np.abs(np.asarray(feats[:, 2]) - np.asarray(blank[:, 2])).max() > 0


def _decode(decoder, window, beta=1.0):
    model = convrnn.ConvRNN([convrnn_nodes.ConvNode(2, name="conv1")], convrnn_nodes.Readout(3), decoder=decoder)
    if decoder == "max_conf":
        model.beta = tf.Variable(beta)
    return np.asarray(model._decode(tf.constant(window, tf.float32)))  # pylint: disable=protected-access


def test_decoders():
    # Example 0: step 1 crosses 0.9 first (softmax of [4, 0, 0] = 0.96), step 2 is more confident.
    # Example 1: no step crosses 0.9; step 0 is the most confident.
    window = np.array(
        [
            [[0.0, 0.1, 0.0], [4.0, 0.0, 0.0], [9.0, 0.0, 0.0]],
            [[1.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.2]],
        ],
        np.float32,
    )
    np.testing.assert_array_equal(_decode("last", window), window[:, -1])
    np.testing.assert_array_equal(_decode("thresh", window), np.stack([window[0, 1], window[1, 0]]))
    np.testing.assert_array_equal(_decode("max_conf", window), np.stack([window[0, 2], window[1, 0]]))
    model = convrnn_zoo.build_convrnn("rgc_intermediate_tmaxconf", width_multiplier=1 / 16, image_size=16)
    assert float(model.beta) == 1.0 and model.beta.trainable  # spec A-12: trainable, initialised to 1


def test_timedecay_with_zero_tau_equals_the_11_layer_basenet():
    """Spec 11.3 item 5: intermediate TimeDecay (tau = 0) at t = 10 equals one feedforward pass of the BaseNet."""
    kwargs = dict(num_classes=7, width_multiplier=1 / 16, image_size=16)
    td = convrnn_zoo.build_convrnn("timedecay_intermediate", **kwargs)
    ff = convrnn_zoo.build_convrnn("basenet11", **kwargs)
    for node_td, node_ff in zip(td.graph_nodes, ff.graph_nodes):
        backbone = [w for w in node_td.weights if "_cell" not in w.path]
        assert len(backbone) == len(node_ff.weights)
        for w_ff, w_td in zip(node_ff.weights, backbone):
            w_ff.assign(w_td)
    ff.readout.set_weights(td.readout.get_weights())
    images = _images(3)
    expected = ff(images)["logits"]
    got = td(images, times=12, image_off=12, feature_layers=("imnetds",))["features"]["imnetds"][:, 10]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "name, segments", [("ugrnn_intermediate", (1,)), ("rgc_intermediate", (1, 2))], ids=["ugrnn", "rgc"]
)
def test_remat_gives_the_same_gradients(name, segments):
    """Every remat segment length against one plain model's gradients (computed once per model)."""
    kwargs = dict(num_classes=5, width_multiplier=1 / 16, image_size=16, unroll_length=13)
    plain = convrnn_zoo.build_convrnn(name, **kwargs)
    images, labels = _images(0), tf.constant([1, 3])

    def grads(model):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)["logits"]
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return tape.gradient(loss, model.trainable_variables)

    expected = grads(plain)
    for segment in segments:
        remat = convrnn_zoo.build_convrnn(name, remat=segment, **kwargs)
        remat.set_weights(plain.get_weights())
        got = grads(remat)
        assert len(got) == len(expected)
        for g_plain, g_remat in zip(expected, got):
            np.testing.assert_allclose(g_plain, g_remat, rtol=1e-4, atol=1e-6, err_msg=f"remat={segment}")


def test_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="minimal unroll"):
        convrnn_zoo.build_convrnn("ugrnn_shallow", width_multiplier=1 / 16, image_size=16, unroll_length=5)
    with pytest.raises(ValueError, match="known models"):
        convrnn_zoo.build_convrnn("ugrnn_deep")
    with pytest.raises(ValueError, match="_dthresh"):
        convrnn_zoo.build_convrnn("ugrnn_intermediate_fast")
    model = convrnn_zoo.build_convrnn("basenet6", num_classes=5, width_multiplier=1 / 16, image_size=16)
    with pytest.raises(ValueError, match="unknown feature layers"):
        model(_images(0), feature_layers=("conv9",))


def test_batch_shared_computation_is_exact():
    """Image-independent steps run once at batch 1 and are broadcast; logits and gradients equal per-example runs."""
    model = convrnn_zoo.build_convrnn("rgc_intermediate", num_classes=5, width_multiplier=1 / 16, image_size=16)
    images, labels = _images(4), tf.constant([2, 0])

    def loss_and_grads(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)["logits"]
            loss = tf.reduce_sum(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        return logits, tape.gradient(loss, model.trainable_variables)

    logits, grads = loss_and_grads(images, labels)
    singles = [loss_and_grads(images[i : i + 1], labels[i : i + 1]) for i in range(2)]
    np.testing.assert_allclose(logits, np.concatenate([s[0] for s in singles]), rtol=1e-5, atol=1e-6)
    for g, g0, g1 in zip(grads, singles[0][1], singles[1][1]):
        np.testing.assert_allclose(g, np.asarray(g0) + np.asarray(g1), rtol=1e-4, atol=1e-6)
