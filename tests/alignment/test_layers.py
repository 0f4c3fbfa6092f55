"""Aligned Keras layers (alignment/layers.py): weights, initialisation, factories, config, forward pass, XLA, mixed
precision, MirroredStrategy and checkpoints (spec ch5 3.1-3.2, 12.1).

    AlignedDense            kernel (in, out), bias (out,), backward_kernel (out, in)
    AlignedConv2D           kernel = backward_kernel (kh, kw, c_in, c_out)
    AlignedSeparableConv2D  depthwise_kernel = depthwise_backward_kernel (kh, kw, c_in, m),
                            pointwise_kernel = pointwise_backward_kernel (1, 1, c_in m, c_out)

B is drawn from W's initializer independently (same distribution, hence the same std), is never regularised, and
the forward pass is the plain Keras layer's. With B = W^T (dense) or B = W (convs) every gradient is the plain layer's.
"""

# n: batch, h/w: space, c: channels
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.alignment import layers, rules, scope
from tests import layer_testing, strategies

RULE_NAMES = ("fa", "wm", "ia", "sa", "aa", "kp")


def _mixed_model(conv_rule="sa", separable_rule="wm", dense_rule="kp", **dense_kwargs):
    """(n, 8, 8, 3) -> (n, 5): aligned conv (stride 2) -> separable conv -> dense."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.AlignedConv2D(4, 3, strides=2, padding="same", activation="relu", rule=conv_rule),
            layers.AlignedSeparableConv2D(6, 3, padding="same", depth_multiplier=2, rule=separable_rule),
            keras.layers.Flatten(),
            layers.AlignedDense(5, rule=dense_rule, **dense_kwargs),
        ]
    )


def _loss_and_grads(model, x, target):
    """Task loss + R and their gradients with respect to every trainable variable (one training step's work)."""
    with tf.GradientTape() as tape:
        with scope.collect_alignment_losses() as collected:
            y = model(x, training=True)
        task = tf.reduce_mean(tf.square(tf.cast(y, tf.float32) - target))
        alignment = collected.total()
        loss = task + alignment
    return y, task, alignment, tape.gradient(loss, model.trainable_variables)


# ------------------------------------------------------------------------------------------------- weights
def test_weights_under_each_rule():
    for name in (*RULE_NAMES, "bp"):
        dense, conv = layers.AlignedDense(5, rule=name), layers.AlignedConv2D(4, (3, 2), rule=name)
        separable = layers.AlignedSeparableConv2D(4, 3, depth_multiplier=2, rule=name)
        dense.build((None, 7))
        conv.build((None, 8, 8, 3))
        separable.build((None, 8, 8, 3))
        shapes = {layer: {v.name: tuple(v.shape) for v in layer.weights} for layer in (dense, conv, separable)}
        expected_dense = {"kernel": (7, 5), "bias": (5,)}
        expected_conv = {"kernel": (3, 2, 3, 4), "bias": (4,)}
        expected_separable = {"depthwise_kernel": (3, 3, 3, 2), "pointwise_kernel": (1, 1, 6, 4), "bias": (4,)}
        if name != "bp":
            expected_dense["backward_kernel"] = (5, 7)
            expected_conv["backward_kernel"] = (3, 2, 3, 4)
            expected_separable["depthwise_backward_kernel"] = (3, 3, 3, 2)
            expected_separable["pointwise_backward_kernel"] = (1, 1, 6, 4)
        assert shapes[dense] == expected_dense, name
        assert shapes[conv] == expected_conv, name
        assert shapes[separable] == expected_separable, name
        assert type(dense.rule) is type(rules.get_rule(name))
        if name != "bp":
            assert dense.backward_kernel.path == dense.name + "/backward_kernel"
            assert not np.allclose(dense.backward_kernel.numpy(), dense.kernel.numpy().T)
            assert not np.allclose(conv.backward_kernel.numpy(), conv.kernel.numpy())
            assert not np.allclose(separable.depthwise_backward_kernel.numpy(), separable.depthwise_kernel.numpy())


def test_backward_kernel_is_an_independent_draw_of_the_same_distribution():
    # std = sqrt(1 / fan_in of W) = 1/sqrt(512): a (64, 512) draw without the transpose would have std 1/8
    dense = layers.AlignedDense(
        64, rule="fa", kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal", 3)
    )
    dense.build((None, 512))
    conv = layers.AlignedConv2D(64, 3, rule="fa", kernel_initializer="he_normal")  # std sqrt(2 / (3 * 3 * 32))
    conv.build((None, 8, 8, 32))
    for w, b, std in (
        (dense.kernel, dense.backward_kernel, 512**-0.5),
        (conv.kernel, conv.backward_kernel, 288**-0.5 * 2**0.5),
    ):
        w, b = np.asarray(w), np.asarray(b)
        np.testing.assert_allclose([np.std(w), np.std(b)], [std, std], rtol=0.03)
        b_in_w_shape = b.T if b.shape != w.shape else b
        cosine = np.sum(w * b_in_w_shape) / np.linalg.norm(w) / np.linalg.norm(b)
        assert abs(cosine) < 0.05  # independent: ~90 degrees apart


def test_backward_kernel_has_no_regulariser():
    l2 = keras.regularizers.L2(0.01)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            layers.AlignedConv2D(4, 3, rule="sa", kernel_regularizer=l2),
            layers.AlignedSeparableConv2D(4, 3, rule="sa", depthwise_regularizer=l2, pointwise_regularizer=l2),
            keras.layers.Flatten(),
            layers.AlignedDense(3, rule="kp", kernel_regularizer=l2),
        ]
    )
    model(tf.zeros([1, 8, 8, 3]))
    conv, separable, _, dense = model.layers
    forward = [conv.kernel, separable.depthwise_kernel, separable.pointwise_kernel, dense.kernel]
    assert len(model.losses) == 4
    np.testing.assert_allclose(
        sorted(float(v) for v in model.losses), sorted(0.01 * np.sum(np.square(w)) for w in forward), rtol=1e-5
    )


def test_factories_return_plain_layers_outside_a_rule():
    class MySeparable(keras.layers.SeparableConv2D):
        pass

    def build():
        return (
            layers.dense(3, activation="relu"),
            layers.conv2d(4, 3, padding="same"),
            layers.separable_conv2d(4, 3, plain_class=MySeparable, alignment_relu=True),
        )

    for context in (None, "bp", rules.Backprop()):
        if context is None:
            built = build()
        else:
            with scope.learning_rule(context):
                built = build()
        assert [type(layer) for layer in built] == [keras.layers.Dense, keras.layers.Conv2D, MySeparable]
    for name in RULE_NAMES:
        with scope.learning_rule(name):
            built = build()
        assert [type(layer) for layer in built] == [
            layers.AlignedDense, layers.AlignedConv2D, layers.AlignedSeparableConv2D
        ]  # fmt: skip
        assert all(type(layer.rule) is type(rules.get_rule(name)) for layer in built)
        assert [layer.alignment_relu for layer in built] == [False, False, True]
        assert built[0].activation is keras.activations.relu and built[1].padding == "same"
    assert scope.current_rule() is None


def test_config_round_trip_keeps_the_rule():
    custom = rules.WeightMirror(sigma=0.25, decay_weight=0.1, fo_relu=False)
    for layer in (
        layers.AlignedDense(3, rule=custom, activation="tanh"),
        layers.AlignedConv2D(4, 3, strides=2, rule="kp", alignment_relu=True),
        layers.AlignedSeparableConv2D(4, 3, rule="ia", depth_multiplier=2),
    ):
        clone = type(layer).from_config(layer.get_config())
        assert clone.rule == layer.rule and type(clone.rule) is type(layer.rule)
        assert clone.alignment_relu == layer.alignment_relu
        restored = keras.saving.deserialize_keras_object(
            json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
        )
        assert type(restored) is type(layer) and restored.rule == layer.rule
        assert restored.get_config() == layer.get_config()


# ------------------------------------------------------------------------------------------------- harness
# (class, constructor arguments, input shape, output shape, trainable weights under backprop, backward kernels)
HARNESS_CASES = {
    "dense": (layers.AlignedDense, {"units": 5, "activation": "tanh"}, (2, 3, 4), (2, 3, 5), 2, 1),
    "conv": (
        layers.AlignedConv2D,
        {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"},
        (2, 8, 8, 4),
        (2, 4, 4, 4),
        2,
        1,
    ),
    "separable": (
        layers.AlignedSeparableConv2D,
        {"filters": 4, "kernel_size": 3, "padding": "same", "depth_multiplier": 2, "pointwise_regularizer": "l2"},
        (2, 8, 8, 4),
        (2, 8, 8, 4),
        3,
        2,
    ),
}


@pytest.mark.parametrize("rule", [None, "bp", "fa", "sa", "kp"])
@pytest.mark.parametrize("kind", sorted(HARNESS_CASES))
def test_harness(kind, rule):
    """The shared layer checks; the step checks the task gradient only (R is collected by the training step)."""
    cls, kwargs, x_shape, out_shape, n_plain, n_backward = HARNESS_CASES[kind]
    layer = layer_testing.run_layer_test(
        cls,
        {**kwargs, "rule": rule},
        (tf.random.normal(x_shape),),
        expected_output_shape=out_shape,
        expected_num_trainable_weights=n_plain + (0 if rule in (None, "bp") else n_backward),
    )
    assert len(layers.layer_backward_kernels(layer)) == (0 if rule in (None, "bp") else n_backward)


# ------------------------------------------------------------------------------------------------- forward pass
@pytest.mark.parametrize("kind", ["dense", "conv_stride2", "conv_dilated", "separable"])
def test_forward_and_exact_gradients_equal_the_plain_layer(kind):
    x = tf.random.normal([2, 8, 8, 3])
    if kind == "dense":
        x = tf.random.normal([2, 3, 6])  # leading axes are batch
        kwargs = {"units": 4, "activation": "tanh"}
        aligned, plain = layers.AlignedDense(rule="fa", **kwargs), keras.layers.Dense(**kwargs)
    elif kind == "separable":
        kwargs = {"filters": 4, "kernel_size": 3, "strides": 2, "padding": "same", "depth_multiplier": 2}
        aligned, plain = layers.AlignedSeparableConv2D(rule="fa", **kwargs), keras.layers.SeparableConv2D(**kwargs)
    else:
        kwargs = {"filters": 4, "kernel_size": 3, "activation": "relu"}
        kwargs.update({"strides": 2, "padding": "same"} if kind == "conv_stride2" else {"dilation_rate": 2})
        aligned, plain = layers.AlignedConv2D(rule="fa", **kwargs), keras.layers.Conv2D(**kwargs)
    aligned.build(x.shape)
    plain.build(x.shape)
    forward = [v for v in aligned.weights if "backward" not in v.name]
    aligned.bias.assign(tf.random.normal(aligned.bias.shape))
    plain.set_weights([v.numpy() for v in forward])
    np.testing.assert_allclose(aligned(x), plain(x), rtol=1e-5, atol=1e-6)

    def grads(layer, weights):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(layer(x)))
        return tape.gradient(loss, [x, *weights])

    reference = grads(plain, plain.weights)
    random_b = grads(aligned, forward)
    assert not np.allclose(random_b[0], reference[0], atol=1e-3)  # FA: the input gradient uses B
    # the last op's dW and dbias do not depend on its B (the separable's depthwise kernel sees pointwise B)
    for ours, theirs in list(zip(random_b, reference))[-2:]:
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    if kind == "separable":
        aligned.depthwise_backward_kernel.assign(aligned.depthwise_kernel)
        aligned.pointwise_backward_kernel.assign(aligned.pointwise_kernel)
    else:
        aligned.backward_kernel.assign(tf.transpose(aligned.kernel) if kind == "dense" else aligned.kernel)
    for ours, theirs in zip(grads(aligned, forward), reference):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_exact_gradients_scope_uses_the_forward_kernel():
    layer = layers.AlignedDense(3, rule="fa", use_bias=False)
    x, dy = tf.random.normal([4, 5]), tf.random.normal([4, 3])
    layer.build(x.shape)
    for exact, kernel in ((False, layer.backward_kernel.numpy()), (True, layer.kernel.numpy().T)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            if exact:
                with scope.exact_gradients():
                    y = layer(x)
            else:
                y = layer(x)
        np.testing.assert_allclose(tape.gradient(y, x, output_gradients=dy), dy.numpy() @ kernel, rtol=1e-5)


# ------------------------------------------------------------------------------------------------- TPU readiness
def test_training_step_compiles_with_xla():
    model = _mixed_model(conv_rule="sa", separable_rule="wm", dense_rule="kp")
    x, target = tf.random.normal([2, 8, 8, 3]), tf.random.normal([2, 5])
    eager = _loss_and_grads(model, x, target)
    compiled = tf.function(_loss_and_grads, jit_compile=True)(model, x, target)
    np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
    noisy = {id(v) for v in layers.layer_backward_kernels(model.layers[1])}  # WM draws fresh noise in R
    for v, g_eager, g_compiled in zip(model.trainable_variables, eager[3], compiled[3]):
        assert g_compiled is not None and np.all(np.isfinite(g_compiled)), v.path
        if id(v) not in noisy:
            np.testing.assert_allclose(g_compiled, g_eager, rtol=1e-3, atol=1e-5, err_msg=v.path)


def test_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = _mixed_model(conv_rule="aa", separable_rule="wm", dense_rule="ia")
    y, task, alignment, grads = _loss_and_grads(model, tf.random.normal([2, 8, 8, 3]), tf.random.normal([2, 5]))
    assert y.dtype == tf.bfloat16 and alignment.dtype == tf.float32
    assert np.isfinite(float(task)) and np.isfinite(float(alignment)) and float(alignment) != 0.0
    for v, g in zip(model.trainable_variables, grads):
        assert v.dtype == "float32" and g.dtype == tf.float32 and np.all(np.isfinite(g)), v.path
    backward = {id(v) for v in layers.backward_kernels(model)}
    assert any(np.any(g.numpy() != 0) for v, g in zip(model.trainable_variables, grads) if id(v) in backward)


def test_mirrored_strategy_replica_gradients():
    """Per-replica gradients of per-replica means, averaged, equal the one-device full-batch gradients."""
    strategy = strategies.mirrored()
    with strategy.scope():
        model = _mixed_model(conv_rule="fa", separable_rule="sa", dense_rule="kp")
    x, target = tf.random.normal([4, 8, 8, 3]), tf.random.normal([4, 5])
    reference = _loss_and_grads(model, x, target)[3]

    def shard(ctx):
        start = 2 * ctx.replica_id_in_sync_group
        return x[start : start + 2], target[start : start + 2]

    shards = strategy.experimental_distribute_values_from_function(shard)

    @tf.function
    def step(shards):
        grads = strategy.run(lambda xt: _loss_and_grads(model, *xt)[3], args=(shards,))
        return [strategy.reduce("MEAN", g, axis=None) for g in grads]

    for v, ours, theirs in zip(model.trainable_variables, step(shards), reference):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6, err_msg=v.path)


def test_checkpoint_restores_forward_and_backward_kernels(tmp_path):
    model = _mixed_model()
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    other = _mixed_model()
    saved = {v.path: v.numpy() for v in model.weights}
    assert not np.allclose(other.layers[0].backward_kernel.numpy(), saved[model.layers[0].backward_kernel.path])
    tf.train.Checkpoint(model=other).read(path).assert_consumed()
    assert len(layers.backward_kernels(other)) == 4
    for v_saved, v_restored in zip(model.weights, other.weights):
        np.testing.assert_array_equal(v_restored.numpy(), v_saved.numpy())
