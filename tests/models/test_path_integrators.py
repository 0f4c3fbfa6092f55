"""Path integrators: golden parameter counts at full size, outputs, knockout masks, XLA and mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import path_integrators

# Full size: 4096 units, 512 place cells, 2-D velocity input. Source: spec ch3_ch4 B5.5 ("Indicative trainable-parameter
# counts ... [D from C]"), derived from the reference code's layer shapes and bias conventions (2-layer RNN without
# biases; Dense layers with biases; Keras GRU reset_after=True; two initial-state encoders for the LSTM).
GOLDEN_PARAMETERS = {
    "rnn": 20_979_712,
    "srnn": 54_551_040,
    "ugrnn": 88_109_568,
    "gru": 121_680_384,
    "lstm": 157_327_872,
}
UGRNN_CELL_PARAMETERS = 67_117_056  # spec B5.5: "cell alone"


@pytest.mark.parametrize("kind", sorted(GOLDEN_PARAMETERS))
def test_golden_parameter_counts(kind, monkeypatch):
    # Orthogonal initialisation of 4096-wide kernels takes ~30 s (QR); values do not change the count.
    monkeypatch.setattr(
        keras.initializers.Orthogonal, "__call__", lambda self, shape, dtype=None: keras.ops.zeros(shape, dtype=dtype)
    )
    model = path_integrators.build_path_integrator(input_dim=2, init_dim=512, output_dim=512, kind=kind, units=4096)
    assert model.count_params() == GOLDEN_PARAMETERS[kind]
    if kind == "ugrnn":
        assert model.cell.count_params() == UGRNN_CELL_PARAMETERS


def _inputs(b=2, t=3, d=2, c=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "inputs": tf.constant(rng.normal(size=(b, t, d)), tf.float32),
        "init_code": tf.constant(rng.normal(size=(b, c)), tf.float32),
    }


@pytest.mark.parametrize("kind", path_integrators.KINDS)
def test_outputs_and_features(kind):
    model = path_integrators.build_path_integrator(input_dim=2, init_dim=6, output_dim=6, kind=kind, units=5)
    out = model(_inputs())
    assert out["logits"].shape == (2, 3, 6) and out["logits"].dtype == tf.float32
    assert set(out["features"]) == set(model.feature_names)
    assert out["features"]["g"].shape == (2, 3, 5)
    assert len(model.losses) == 1  # L2 on the recurrent kernel


def test_two_layer_rnn_matches_its_equations():
    model = path_integrators.build_path_integrator(
        input_dim=2, init_dim=6, output_dim=4, kind="rnn", activation="relu", units=5
    )
    x = _inputs(c=6)
    enc, rnn, readout = model.encoder.kernel.numpy(), model.recurrence, model.readout.kernel.numpy()
    g = x["init_code"].numpy() @ enc  # not passed through f
    logits = []
    for t in range(3):
        g = np.maximum(g @ rnn.recurrent_kernel.numpy() + x["inputs"].numpy()[:, t] @ rnn.kernel.numpy(), 0)
        logits.append(g @ readout)
    np.testing.assert_allclose(model(x)["logits"].numpy(), np.stack(logits, 1), rtol=1e-5, atol=1e-6)
    assert not model.readout.use_bias and not model.encoder.use_bias and not rnn.use_bias


@pytest.mark.parametrize("kind", path_integrators.KINDS)
def test_knockout_mask_equals_silencing_the_units(kind):
    model = path_integrators.build_path_integrator(input_dim=2, init_dim=6, output_dim=6, kind=kind, units=5)
    x = _inputs()
    activity = np.abs(model(x)["features"]["g"].numpy()).sum(axis=(0, 1))
    mask = np.ones(5, np.float32)
    mask[np.argsort(-activity)[:2]] = 0.0  # silence the two most active units (ReLU units may be silent already)
    out = model(x, unit_mask=tf.constant(mask))
    np.testing.assert_array_equal(out["features"]["g"].numpy()[..., mask == 0], 0)
    # Equivalent weight surgery: zero the silenced units' outgoing weights and compare the outputs.
    full = model(x)
    assert not np.allclose(full["logits"].numpy(), out["logits"].numpy())
    readout = model.readout.kernel
    saved = readout.numpy()
    readout.assign(saved * mask[:, None])
    if kind == "rnn":
        recurrent = model.recurrence.recurrent_kernel
        saved_rec = recurrent.numpy()
        recurrent.assign(saved_rec * mask[:, None])
        model.encoder.kernel.assign(model.encoder.kernel.numpy() * mask[None, :])
    np.testing.assert_allclose(model(x)["logits"].numpy(), out["logits"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model(x, unit_mask=tf.ones(5))["logits"].numpy(), model(x)["logits"].numpy())


@pytest.mark.parametrize("kind", path_integrators.KINDS)
def test_train_step_compiles_with_xla_and_runs_in_bfloat16(kind):
    x = _inputs()
    targets = tf.nn.softmax(tf.random.normal((2, 3, 6)))
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        model = path_integrators.build_path_integrator(input_dim=2, init_dim=6, output_dim=6, kind=kind, units=5)
        optimizer = keras.optimizers.Adam(1e-2)

        @tf.function(jit_compile=True)
        def step(x):
            with tf.GradientTape() as tape:
                logits = model(x)["logits"]
                loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits)) + tf.add_n(model.losses)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        losses = [float(step(x)) for _ in range(5)]
        assert np.isfinite(losses).all() and losses[-1] < losses[0], (policy, losses)
        assert model.trainable_variables[0].dtype == "float32"


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        path_integrators.PathIntegrator(kind="transformer")
    with pytest.raises(ValueError, match="activation"):
        path_integrators.PathIntegrator(activation="gelu")
    with pytest.raises(ValueError, match="l2_target"):
        path_integrators.PathIntegrator(kind="lstm", l2_target="bias")
