"""A shared harness for layer tests, in the spirit of keras-hub's run_layer_test."""

import json

import keras
import numpy as np
import tensorflow as tf


def run_layer_test(
    cls, init_kwargs, call_args, *, expected_output_shape, expected_num_trainable_weights, output_fn=lambda out: out
):
    """Checks a layer's config round trip, eager and traced calls, and one training step.

    Args:
      cls: the layer class.
      init_kwargs: constructor arguments.
      call_args: positional arguments of `layer(*call_args)` (tensors, or lists of tensors for states).
      expected_output_shape: shape of `output_fn(layer(*call_args))`.
      expected_num_trainable_weights: number of trainable weights after build.
      output_fn: picks the tensor to check from the call's output (e.g. the first of (output, states)).
    Returns:
      The built layer.
    """
    layer = cls(**init_kwargs)
    out = output_fn(layer(*call_args))
    np.testing.assert_equal(tuple(out.shape), tuple(expected_output_shape))
    assert len(layer.trainable_weights) == expected_num_trainable_weights, [w.path for w in layer.trainable_weights]

    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, cls)
    assert clone.get_config() == layer.get_config()
    clone(*call_args)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(output_fn(clone(*call_args))), np.asarray(out), rtol=1e-6, atol=1e-6)

    traced = tf.function(lambda *args: output_fn(layer(*args)))
    np.testing.assert_allclose(np.asarray(traced(*call_args)), np.asarray(out), rtol=1e-5, atol=1e-6)

    before = [w.numpy() for w in layer.trainable_weights]
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(output_fn(layer(*call_args)) - 1.0)) + sum(layer.losses)
    grads = tape.gradient(loss, layer.trainable_weights)
    assert all(g is not None for g in grads), "a trainable weight received no gradient"
    optimizer.apply_gradients(zip(grads, layer.trainable_weights))
    changed = [not np.allclose(b, w.numpy()) for b, w in zip(before, layer.trainable_weights)]
    assert any(changed), "one training step changed no weight"
    return layer
