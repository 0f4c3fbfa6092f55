"""fast_rnn.ugrnn_sequence: the UGRNN's hand-written BPTT equals autodiff, its forward equals the equations in
NumPy, and the path integrator's UGRNN (which now runs it) equals stepping the Keras cell."""

# b: batch, t: time, n: units
import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import fast_rnn, path_integrators

B, T, N = 2, 3, 4
NUMPY_ACT = {"relu": lambda x: np.maximum(x, 0), "tanh": np.tanh, "sigmoid": lambda x: 1 / (1 + np.exp(-x))}
NUMPY_ACT["linear"] = lambda x: x


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    h0, drive = rng.normal(size=(B, N)), rng.normal(size=(T, B, 2 * N))
    return tf.constant(h0), tf.constant(drive), tf.constant(rng.normal(size=(N, 2 * N)) / np.sqrt(N))


@pytest.mark.parametrize("activation", fast_rnn.ACTIVATIONS)
def test_forward_matches_numpy(activation):
    h0, drive, kernel = _inputs()
    out = fast_rnn.ugrnn_sequence(h0, drive, kernel, activation, gate_bias=1.0).numpy()
    h, expected = h0.numpy(), []
    for t in range(T):
        pre = h @ kernel.numpy() + drive.numpy()[t]
        u = 1 / (1 + np.exp(-(pre[:, :N] + 1.0)))
        h = u * h + (1 - u) * NUMPY_ACT[activation](pre[:, N:])
        expected.append(h)
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-12)


def _keras_cell_loop(h0, drive, kernel, activation):
    """Autodiff reference: the cells/ UGRNN equations stepped with TensorFlow ops."""
    h, outs = h0, []
    for t in range(T):
        gate_pre, cand_pre = tf.split(tf.matmul(h, kernel) + drive[t], 2, axis=-1)
        u = tf.sigmoid(gate_pre + 1.0)
        h = u * h + (1 - u) * keras.activations.get(activation)(cand_pre)
        outs.append(h)
    return tf.stack(outs)


@pytest.mark.parametrize("activation", fast_rnn.ACTIVATIONS)
def test_custom_gradient_equals_autodiff_float64(activation):
    h0, drive, kernel = _inputs(seed=1)
    weights = tf.constant(np.random.default_rng(2).normal(size=(T, B, N)))
    grads = []
    for fn in (lambda *a: fast_rnn.ugrnn_sequence(*a, activation, 1.0), lambda *a: _keras_cell_loop(*a, activation)):
        with tf.GradientTape() as tape:
            tape.watch([h0, drive, kernel])
            loss = tf.reduce_sum(weights * fn(h0, drive, kernel))
        grads.append(tape.gradient(loss, [h0, drive, kernel]))
    for ours, autodiff in zip(*grads):
        np.testing.assert_allclose(ours.numpy(), autodiff.numpy(), rtol=1e-10, atol=1e-12)


def test_path_integrator_ugrnn_equals_stepping_the_cell_and_compiles_with_xla():
    model = path_integrators.build_path_integrator(kind="ugrnn", units=N, input_dim=3, init_dim=5, output_dim=5)
    rng = np.random.default_rng(3)
    inputs = {"inputs": tf.constant(rng.normal(size=(B, T, 3)), tf.float32)}
    inputs["init_code"] = tf.constant(rng.normal(size=(B, 5)), tf.float32)
    model(inputs)
    for w in model.cell.weights:  # non-zero bias, so the bias path is checked too
        w.assign(rng.normal(size=w.shape) * 0.5)

    def stepped(inputs):  # the Keras cell called step by step (the model's former path)
        m, h = model.input_dense(inputs["inputs"]), [model.encoder(inputs["init_code"])]
        outs = []
        for t in range(T):
            out, h = model.cell(m[:, t], h)
            outs.append(out)
        return model.readout(model.g_dense(tf.stack(outs, axis=1)))

    @tf.function(jit_compile=True)
    def ours(inputs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(inputs)["logits"] ** 2)
        return loss, tape.gradient(loss, model.trainable_variables)

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(stepped(inputs) ** 2)
    reference = tape.gradient(loss, model.trainable_variables)
    value, grads = ours(inputs)
    np.testing.assert_allclose(value.numpy(), loss.numpy(), rtol=1e-5)
    for v, g, r in zip(model.trainable_variables, grads, reference):
        np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-4, atol=1e-6, err_msg=v.path)
    assert {v.path.split("/", 1)[1] for v in model.cell.weights} == {"rnn/kernel", "rnn/recurrent_kernel", "rnn/bias"}
