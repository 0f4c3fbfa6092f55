"""A shared harness for layer tests, in the spirit of keras-hub's run_layer_test.

`run_layer_test` checks, in order:
  1. eager call: output shape and the number of trainable weights;
  2. config: the JSON round trip of `serialize_keras_object` gives an equal config and, with the same weights, the
     same output;
  3. traced call: under `tf.function` the output equals the eager one;
  4. symbolic call: on `keras.Input`s (batch None) every output has the eager shape with batch None, and a
     `keras.Model` from those inputs to those outputs reproduces the eager output;
  5. mixed precision: under "mixed_bfloat16" a fresh layer of the same config keeps float32 variables, returns
     bfloat16 outputs (float32 only where the caller says why), finite and within bfloat16 tolerance of the float32
     layer given the same weights;
  6. one training step: every trainable weight receives a gradient and SGD changes some weight (a layer without
     weights must pass a finite, non-zero gradient to its inputs instead).
"""

import json

import keras
import numpy as np
import tensorflow as tf
from keras import tree

# Checks a caller may skip, each with a reason: {"symbolic": "...", "mixed_precision": "..."}.
SKIPPABLE = ("symbolic", "mixed_precision")

# bfloat16 keeps 8 significant bits: each rounding (inputs, kernels, products, the bf16 output) is off by at most
# 2^-9 ~ 2e-3 of the operand, and a layer chains a handful of them, so its output may be off by 5-10 such units of the
# output's scale (errors of sums scale with the largest terms, not with each output element). 2e-2 of the largest
# output allows that; a missing cast, a term dropped or a float32 path left out gives errors of the order of the
# scale itself.
BFLOAT16_TOLERANCE = 2e-2


def run_layer_test(
    cls,
    init_kwargs,
    call_args,
    *,
    expected_output_shape,
    expected_num_trainable_weights,
    output_fn=lambda out: out,
    build_fn=None,
    float32_outputs=None,
    skip=None,
):
    """Checks a layer's config round trip, eager, traced and symbolic calls, mixed precision and a training step.

    Args:
      cls: the layer class.
      init_kwargs: constructor arguments (layers among them, e.g. a node's cell, are rebuilt from their config for
        the mixed-precision pass).
      call_args: positional arguments of `layer(*call_args)` (tensors, or lists of tensors for states).
      expected_output_shape: shape of `output_fn(layer(*call_args))`.
      expected_num_trainable_weights: number of trainable weights after build.
      output_fn: picks the tensor to check from the call's output (e.g. the first of (output, states)).
      build_fn: `build_fn(layer)` builds a fresh layer whose `build` needs more than the call's shapes (a ConvRNN
        node's feedback channels); by default each fresh layer is built by its first call.
      float32_outputs: why the layer returns float32 under mixed precision (its documented contract); None when
        its outputs have the compute dtype.
      skip: {check: reason} for checks of `SKIPPABLE` that do not apply to the layer; every reason must be given.
    Returns:
      The built layer (after its training step).
    """
    skip = _checked_skip(skip)
    layer = _new_layer(cls, init_kwargs, call_args, build_fn)
    full = layer(*call_args)
    out = output_fn(full)
    np.testing.assert_equal(tuple(out.shape), tuple(expected_output_shape))
    assert len(layer.trainable_weights) == expected_num_trainable_weights, [w.path for w in layer.trainable_weights]

    _check_config_round_trip(cls, layer, call_args, out, output_fn, build_fn)
    traced = tf.function(lambda *args: output_fn(layer(*args)))
    _assert_close(traced(*call_args), out, rtol=1e-5, atol=1e-6)
    if "symbolic" not in skip:
        _check_symbolic_call(layer, call_args, full, out, output_fn)
    if "mixed_precision" not in skip:
        _check_mixed_bfloat16(cls, init_kwargs, call_args, layer, out, output_fn, build_fn, float32_outputs)
    _check_training_step(layer, call_args, output_fn)
    return layer


def _checked_skip(skip):
    skip = dict(skip or {})
    for check, reason in skip.items():
        assert check in SKIPPABLE, f"only {SKIPPABLE} may be skipped; received {check!r}"
        assert isinstance(reason, str) and reason.strip(), f"skipping {check!r} needs a reason"
    return skip


def _new_layer(cls, init_kwargs, call_args, build_fn):
    layer = cls(**init_kwargs)
    _build(layer, call_args, build_fn)
    return layer


def _build(layer, call_args, build_fn):
    if build_fn is None:
        layer(*call_args)
    elif not layer.built:  # a deserialized layer is already built from its build config
        build_fn(layer)


def _assert_close(actual, expected, **tolerances):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **tolerances)


def _check_config_round_trip(cls, layer, call_args, out, output_fn, build_fn):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, cls)
    assert clone.get_config() == layer.get_config()
    _build(clone, call_args, build_fn)
    clone.set_weights(layer.get_weights())
    _assert_close(output_fn(clone(*call_args)), out, rtol=1e-6, atol=1e-6)


def _symbolic(t):
    return keras.Input(batch_shape=(None, *t.shape[1:]), dtype=keras.backend.standardize_dtype(t.dtype))


def _check_symbolic_call(layer, call_args, full, out, output_fn):
    """The layer on keras.Inputs (batch None): output shapes as in the eager call, and a Model reproduces it."""
    inputs = tree.map_structure(_symbolic, call_args)
    symbolic = layer(*inputs)
    tree.assert_same_structure(symbolic, full)
    for s, e in zip(tree.flatten(symbolic), tree.flatten(full)):
        assert isinstance(s, keras.KerasTensor), s
        assert tuple(s.shape) == (None, *e.shape[1:]), (s.shape, e.shape)
        assert keras.backend.standardize_dtype(s.dtype) == keras.backend.standardize_dtype(e.dtype), (s, e)
    model = keras.Model(inputs, symbolic)
    _assert_close(output_fn(model(call_args)), out, rtol=1e-5, atol=1e-6)


def _under_policy(value):
    """A layer argument (a node's cell) remade from its config without its dtype, so that it takes the global policy."""
    if not isinstance(value, keras.layers.Layer):
        return value
    config = {k: v for k, v in value.get_config().items() if k != "dtype"}
    return type(value).from_config(config)


def _check_mixed_bfloat16(cls, init_kwargs, call_args, reference, expected, output_fn, build_fn, float32_outputs):
    """A fresh layer under mixed_bfloat16 with the reference's weights: float32 variables, compute-dtype outputs,
    finite and within BFLOAT16_TOLERANCE of the float32 output. The global policy is restored even on failure."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        kwargs = {k: _under_policy(v) for k, v in init_kwargs.items() if k != "dtype"}
        layer = _new_layer(cls, kwargs, call_args, build_fn)
        layer.set_weights(reference.get_weights())
        full = layer(*call_args)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert layer.compute_dtype == "bfloat16", layer.compute_dtype
    floating = [v for v in layer.weights if "float" in keras.backend.standardize_dtype(v.dtype)]
    assert all(v.dtype == "float32" for v in floating), [(v.path, v.dtype) for v in floating]
    want = "bfloat16" if float32_outputs is None else "float32"
    dtypes = [keras.backend.standardize_dtype(t.dtype) for t in tree.flatten(full)]
    assert all(d == want for d in dtypes if "float" in d), (want, dtypes, float32_outputs)
    got = tf.cast(output_fn(full), "float32").numpy()
    assert np.all(np.isfinite(got)), "non-finite outputs under mixed_bfloat16"
    expected = np.asarray(expected)
    scale = max(float(np.abs(expected).max()), 1e-6)
    _assert_close(got, expected, rtol=BFLOAT16_TOLERANCE, atol=BFLOAT16_TOLERANCE * scale)


def _check_training_step(layer, call_args, output_fn):
    """One SGD step on mean((y - 1)^2) + the layer's losses: gradients reach every trainable weight and change one.

    A layer without trainable weights must pass a finite, non-zero gradient to its floating inputs instead.
    """
    weights = layer.trainable_weights
    inputs = [t for t in tree.flatten(call_args) if t.dtype.is_floating]
    before = [w.numpy() for w in weights]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_mean(tf.square(output_fn(layer(*call_args)) - 1.0)) + sum(layer.losses)
    if not weights:
        grads = tape.gradient(loss, inputs)
        assert grads and all(g is not None for g in grads), "an input received no gradient"
        assert all(np.all(np.isfinite(g)) for g in grads), "non-finite input gradients"
        assert any(np.any(np.asarray(g) != 0) for g in grads), "all input gradients are zero"
        return
    grads = tape.gradient(loss, weights)
    assert all(g is not None for g in grads), "a trainable weight received no gradient"
    keras.optimizers.SGD(0.1).apply_gradients(zip(grads, weights))
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, weights)]
    assert any(changed), "one training step changed no weight"
