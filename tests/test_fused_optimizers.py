"""goaldriven.fused_optimizers: Keras' SGD and Adam updates in one TensorFlow kernel per variable."""

# k: features
import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven import fused_optimizers
from tests import strategies

GRADIENTS = [np.array([0.1, -0.3, 2.0, 1e-4], np.float32) * (i + 1) for i in range(3)]
START = np.array([1.0, -2.0, 0.5, 3.0], np.float32)


def _numpy_sgd(lr, momentum, nesterov):
    w, v = START.astype(np.float64), np.zeros(4)
    for g in GRADIENTS:
        v = momentum * v - lr * g
        w = w + (momentum * v - lr * g if nesterov else v)
    return w


def _numpy_adam(lr, b1, b2, eps):
    w, m, v = START.astype(np.float64), np.zeros(4), np.zeros(4)
    for t, g in enumerate(GRADIENTS, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w


def _run(optimizer, jit=False):
    variable = keras.Variable(START)
    optimizer.build([variable])

    @tf.function(jit_compile=jit)
    def step(g):
        optimizer.apply_gradients([(g, variable)])

    for g in GRADIENTS:
        step(tf.constant(g))
    return variable.numpy()


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_sgd_matches_the_update_equations_and_keras(momentum, nesterov, jit):
    fused = _run(fused_optimizers.SGD(0.1, momentum=momentum, nesterov=nesterov), jit)
    np.testing.assert_allclose(fused, _numpy_sgd(0.1, momentum, nesterov), rtol=1e-6)
    keras_result = _run(keras.optimizers.SGD(0.1, momentum=momentum, nesterov=nesterov))
    np.testing.assert_allclose(fused, keras_result, rtol=2e-7)  # XLA may round one product differently


@pytest.mark.parametrize("jit", [False, True], ids=["graph", "xla"])
def test_adam_matches_the_update_equations_and_keras(jit):
    fused = _run(fused_optimizers.Adam(0.1, epsilon=1e-7), jit)
    np.testing.assert_allclose(fused, _numpy_adam(0.1, 0.9, 0.999, 1e-7), rtol=2e-6)
    # Keras forms 1 - beta_2 in double but beta_2^t in float32 (1 - 0.999f = 0.00099998713): 1e-5 off the equations.
    np.testing.assert_allclose(fused, _run(keras.optimizers.Adam(0.1, epsilon=1e-7)), rtol=2e-5)


def test_amsgrad_and_sparse_gradients_take_keras_update():
    np.testing.assert_array_equal(
        _run(fused_optimizers.Adam(0.1, amsgrad=True)), _run(keras.optimizers.Adam(0.1, amsgrad=True))
    )
    table = keras.Variable(np.ones((3, 2), np.float32))
    opt = fused_optimizers.SGD(0.5, momentum=0.9)
    opt.build([table])
    opt.apply_gradients([(tf.IndexedSlices(tf.ones((1, 2)), tf.constant([1]), tf.constant([3, 2])), table)])
    np.testing.assert_allclose(table.numpy(), [[1, 1], [0.5, 0.5], [1, 1]])


@pytest.mark.parametrize("cls", [fused_optimizers.SGD, fused_optimizers.Adam])
def test_mirrored_update_equals_one_device(cls):
    strategy = strategies.mirrored()
    with strategy.scope():
        variable = keras.Variable(START)
        opt = cls(0.1, momentum=0.9) if cls is fused_optimizers.SGD else cls(0.1)
        opt.build([variable])

    @tf.function
    def step(g):
        strategy.run(lambda: opt.apply_gradients([(g / 2.0, variable)]))  # two replicas: the sum is g

    for g in GRADIENTS:
        step(tf.constant(g))
    one = _run(cls(0.1, momentum=0.9) if cls is fused_optimizers.SGD else cls(0.1))
    np.testing.assert_allclose(variable.numpy(), one, rtol=1e-6)


def test_checkpoints_are_interchangeable_with_keras(tmp_path):
    variable = keras.Variable(START)
    keras_opt = keras.optimizers.SGD(0.1, momentum=0.9)
    keras_opt.build([variable])
    keras_opt.apply_gradients([(tf.constant(GRADIENTS[0]), variable)])
    path = tf.train.Checkpoint(v=variable, opt=keras_opt).write(str(tmp_path / "ckpt"))
    fresh = keras.Variable(np.zeros(4, np.float32))
    fused = fused_optimizers.SGD(0.1, momentum=0.9)
    fused.build([fresh])
    tf.train.Checkpoint(v=fresh, opt=fused).read(path).assert_consumed()
    np.testing.assert_array_equal(fused.momentums[0].numpy(), keras_opt.momentums[0].numpy())
    assert int(fused.iterations) == 1
