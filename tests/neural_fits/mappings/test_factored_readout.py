"""Tests of the spatially factored readout (thesis eq. 2.12, 2.13) against planted truth and NumPy formulas."""

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.neural_fits.mappings import factored_ops
from goaldriven.neural_fits.mappings.factored_readout import FactoredReadout
from tests import strategies

# n: stimuli, t: time bins, h/w: space, c: channels, u: units

H = W = 8
C, U = 6, 3


def _planted(n=200, t=None, noise=0.02, seed=0):
    """Features, targets and the planted (spatial (u, h, w), channel (u, c), bias (u,)) of eq. 2.12."""
    rng = np.random.default_rng(seed)
    shape = (n, H, W, C) if t is None else (n, t, H, W, C)
    x = rng.standard_normal(shape).astype(np.float32)
    spatial = np.zeros((U, H, W))
    for k in range(U):  # One compact blob per unit, at different places.
        spatial[k, 1 + 2 * k : 3 + 2 * k, 2 + k : 5 + k] = 1.0
    channel = rng.standard_normal((U, C))
    bias = np.array([0.5, -0.3, 1.2])
    clean = np.einsum("n...xyk,uxy,uk->nu...", x, spatial, channel) + bias.reshape((1, U) + (1,) * (x.ndim - 4))
    y = clean + noise * rng.standard_normal(clean.shape)
    return x, y.astype(np.float32), (spatial, channel, bias)


def _full_kernel(spatial, channel):
    return np.einsum("uxy,uk->uxyk", spatial, channel)  # (u, h, w, c); free of the factors' sign/scale ambiguity


def _numpy_predict(model, x):
    pred = np.einsum("n...xyk,uxy,uk->nu...", x.astype(np.float64), model.spatial_masks, model.channel_weights)
    return pred + model.bias.reshape((1, -1) + (1,) * (x.ndim - 4))


def _numpy_laplacian(masks):  # masks (u, h, w); VALID 3x3 correlation (the kernel is symmetric)
    k = factored_ops.LAPLACIAN_KERNEL.astype(np.float64)
    h, w = masks.shape[1:]
    out = sum(k[a, b] * masks[:, a : h - 2 + a, b : w - 2 + b] for a in range(3) for b in range(3))
    return out  # (u, h-2, w-2)


FAST = dict(dropout=0.0, learning_rate=1e-2, validation_fraction=0.0, global_batch_size=32, jit_compile=False)


def test_recovers_planted_mask_and_channel_weights():
    x, y, (spatial, channel, bias) = _planted()
    model = FactoredReadout(epochs=150, **FAST).fit(x, y)
    truth, fitted = _full_kernel(spatial, channel), _full_kernel(model.spatial_masks, model.channel_weights)
    rel = np.sqrt(np.sum((fitted - truth) ** 2, axis=(1, 2, 3)) / np.sum(truth**2, axis=(1, 2, 3)))
    assert np.all(rel < 0.05), rel
    # Normalised factors agree up to sign.
    for k in range(U):
        s_fit, s_true = model.spatial_masks[k].ravel(), spatial[k].ravel()
        cos = s_fit @ s_true / np.linalg.norm(s_fit) / np.linalg.norm(s_true)
        assert abs(cos) > 0.99
    np.testing.assert_allclose(model.bias, bias, atol=0.05)


def test_predict_matches_numpy_einsum_for_4d_and_5d_inputs():
    x, y, _ = _planted(n=70)
    for contraction in ("channels_first", "full_kernel"):
        model = FactoredReadout(epochs=3, contraction=contraction, **FAST).fit(x, y)
        x_test = np.random.default_rng(1).standard_normal((37, 4, H, W, C)).astype(np.float32)  # 37: partial batch
        np.testing.assert_allclose(model.predict(x_test), _numpy_predict(model, x_test), rtol=1e-4, atol=1e-4)
        pred = model.predict(x_test[:, 0])
        assert pred.shape == (37, U)
        np.testing.assert_allclose(pred, _numpy_predict(model, x_test[:, 0]), rtol=1e-4, atol=1e-4)


def test_penalties_equal_numpy_formulas():
    x, y, _ = _planted(n=64)
    scales = dict(spatial_l2=0.3, spatial_l1=0.2, channel_l2=0.1, channel_l1=0.05, laplacian=0.7, group_sparsity=0.4)
    model = FactoredReadout(epochs=2, **scales, **FAST).fit(x, y)
    s, c = model.spatial_masks.astype(np.float64), model.channel_weights.astype(np.float64)  # (u, h, w), (u, c)
    expected = {
        "spatial_l2": 0.3 * np.sum(s**2) / 2,
        "spatial_l1": 0.2 * np.sum(np.abs(s)),
        "channel_l2": 0.1 * np.sum(c**2) / 2,
        "channel_l1": 0.05 * np.sum(np.abs(c)),
        "laplacian": 0.7 * np.sum(_numpy_laplacian(s) ** 2),
        "group_sparsity": 0.4 * np.sum(np.sqrt(np.sum(s**2, axis=(1, 2))) * np.sum(np.abs(c), axis=1)),
    }
    got = model.penalties()
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, err_msg=name)
    # The penalty added to the training loss is the sum of the terms (a tiny step keeps the weights where they were).
    still = FactoredReadout(epochs=1, **scales, **dict(FAST, learning_rate=1e-7)).fit(x, y)
    s, c = still.spatial_masks.astype(np.float64), still.channel_weights.astype(np.float64)
    total = 0.3 * np.sum(s**2) / 2 + 0.2 * np.sum(np.abs(s)) + 0.1 * np.sum(c**2) / 2 + 0.05 * np.sum(np.abs(c))
    total += 0.7 * np.sum(_numpy_laplacian(s) ** 2)
    total += 0.4 * np.sum(np.sqrt(np.sum(s**2, axis=(1, 2))) * np.sum(np.abs(c), axis=1))
    assert still.history["penalty"][-1] == pytest.approx(total, rel=1e-4)


def test_laplacian_penalty_smooths_the_learned_masks():
    x, y, _ = _planted(n=96, noise=1.0)  # Few noisy stimuli: the unpenalised masks pick up pixel noise.

    def roughness(model):  # Scale-free: Laplacian energy per unit of mask energy.
        m = model.spatial_masks.astype(np.float64)
        return np.sum(_numpy_laplacian(m) ** 2) / np.sum(m**2)

    kw = dict(FAST, epochs=60, channel_l2=0.1)  # channel_l2 pins the factors' scale (see factored_ops.py)
    plain = FactoredReadout(**kw).fit(x, y)
    smooth = FactoredReadout(laplacian=1.0, **kw).fit(x, y)
    assert roughness(smooth) < 0.5 * roughness(plain)


def test_dropout_mask_keeps_half_and_splits_across_replicas():
    f = tf.ones((8, 2, 4, 4, 3))
    seed = tf.constant([7, 3])
    whole = factored_ops.dropout(f, 0.5, seed, 0).numpy()
    assert set(np.unique(whole)) == {0.0, 2.0}  # inverted dropout: kept values scaled by 1 / (1 - rate)
    assert abs(np.mean(whole == 0) - 0.5) < 0.05
    half = f.shape.num_elements() // 2
    parts = [factored_ops.dropout(f[:4], 0.5, seed, 0), factored_ops.dropout(f[4:], 0.5, seed, half)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)  # a replica's slice = its part of the global mask
    other = factored_ops.dropout(f, 0.5, tf.constant([7, 4]), 0).numpy()
    assert 0.4 < np.mean(other != whole) < 0.6  # a new step draws a new mask


def test_xla_and_non_xla_give_the_same_fit():
    x, y, _ = _planted(n=80, t=2)
    kw = dict(FAST, dropout=0.5, epochs=4, validation_fraction=0.2, global_batch_size=16)
    eager = FactoredReadout(**dict(kw, jit_compile=False)).fit(x, y)
    xla = FactoredReadout(**dict(kw, jit_compile=True)).fit(x, y)
    np.testing.assert_allclose(xla.spatial_masks, eager.spatial_masks, atol=1e-5)
    np.testing.assert_allclose(xla.channel_weights, eager.channel_weights, atol=1e-5)
    np.testing.assert_allclose(xla.history["val_loss"], eager.history["val_loss"], rtol=1e-4)


def test_mirrored_strategy_matches_one_device():
    x, y, _ = _planted(n=80, t=2)
    kw = dict(FAST, dropout=0.5, epochs=4, validation_fraction=0.2, global_batch_size=16, spatial_l2=1.0, laplacian=1.0)
    one = FactoredReadout(**kw).fit(x, y)
    two = FactoredReadout(strategy=strategies.mirrored(), **kw).fit(x, y)
    for key in ("loss", "penalty", "val_loss"):  # global-batch means, whatever the replica count
        np.testing.assert_allclose(two.history[key], one.history[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(two.spatial_masks, one.spatial_masks, atol=1e-5)
    np.testing.assert_allclose(two.channel_weights, one.channel_weights, atol=1e-5)
    np.testing.assert_allclose(two.predict(x[:21]), one.predict(x[:21]), atol=1e-4)  # 21: padded last batch


def test_h5py_dataset_input_matches_numpy(tmp_path):
    x, y, _ = _planted(n=80, t=2)
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(1,) + x.shape[1:])
    kw = dict(FAST, dropout=0.5, epochs=3, validation_fraction=0.2, global_batch_size=16)
    in_memory = FactoredReadout(**kw).fit(x, y)
    with h5py.File(path, "r") as f:
        streamed = FactoredReadout(**kw).fit(f["x"], y)
        pred = streamed.predict(f["x"])
    np.testing.assert_array_equal(streamed.channel_weights, in_memory.channel_weights)
    np.testing.assert_allclose(pred, in_memory.predict(x), atol=1e-6)


def test_temporally_fixed_fit_on_time_resolved_features():
    x, y, (spatial, channel, _) = _planted(n=120, t=3)  # (n, t, h, w, c) -> (n, u, t), one set of weights
    model = FactoredReadout(epochs=100, **FAST).fit(x, y)
    pred = model.predict(x)
    assert pred.shape == (120, U, 3)
    truth, fitted = _full_kernel(spatial, channel), _full_kernel(model.spatial_masks, model.channel_weights)
    assert np.linalg.norm(fitted - truth) / np.linalg.norm(truth) < 0.05
    # eq. 2.13 on the training set: per-stimulus sum over units and bins, near U * t * noise^2 = 0.0036.
    assert np.mean(np.sum((pred - y) ** 2, axis=(1, 2))) < 0.05


def test_early_stopping_restores_the_best_epoch():
    x, y, _ = _planted(n=100, noise=1.0)
    model = FactoredReadout(**dict(FAST, learning_rate=0.05, epochs=60, validation_fraction=0.3, patience=3)).fit(x, y)
    val = model.history["val_loss"]
    assert len(val) < 60 and model.best_epoch == int(np.argmin(val)) + 1
    rows = np.sort(np.random.default_rng(0).permutation(100)[:30])  # the documented split: first 30% of perm(seed)
    restored = np.mean(np.sum((_numpy_predict(model, x[rows]) - y[rows]) ** 2, axis=1))
    assert restored == pytest.approx(min(val), rel=1e-4)


def test_fit_predict_many_equals_separate_fits():
    x, y, _ = _planted(n=64)
    model = FactoredReadout(epochs=2, **FAST)
    many = model.fit_predict_many(x, [y, 2 * y], x[:10])
    for got, target in zip(many, [y, 2 * y]):
        np.testing.assert_allclose(got, FactoredReadout(epochs=2, **FAST).fit(x, target).predict(x[:10]), atol=1e-6)


def test_mixed_bfloat16_keeps_float32_variables():
    x, y, _ = _planted(n=64)
    reference = FactoredReadout(epochs=3, **FAST).fit(x, y)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = FactoredReadout(epochs=3, **FAST).fit(x, y)
    assert model.spatial_masks.dtype == np.float32 and model._variables[0].dtype == "float32"
    pred, ref = model.predict(x), reference.predict(x)
    assert np.linalg.norm(pred - ref) / np.linalg.norm(ref) < 0.05


def test_bad_inputs_raise_clear_errors():
    x, y, _ = _planted(n=40)
    model = FactoredReadout(**dict(FAST, epochs=1, global_batch_size=8))
    with pytest.raises(RuntimeError, match="before fit"):
        model.predict(x)
    with pytest.raises(ValueError, match=r"\(n, h, w, c\) or \(n, t, h, w, c\)"):
        model.fit(x[:, 0], y)
    with pytest.raises(ValueError, match=r"needs y of shape \(n, u\)"):
        model.fit(x, y[:, :, None])
    with pytest.raises(ValueError, match="t = 2"):
        model.fit(np.stack([x, x], axis=1), np.stack([y, y, y], axis=2))
    with pytest.raises(ValueError, match="40 stimuli"):
        model.fit(x, y[:30])
    with pytest.raises(ValueError, match="NaN"):
        model.fit(x, np.where(np.arange(U) == 1, np.nan, y))
    with pytest.raises(ValueError, match="fewer than global_batch_size"):
        FactoredReadout(**dict(FAST, global_batch_size=64)).fit(x, y)
    with pytest.raises(ValueError, match="at least 3x3"):
        FactoredReadout(laplacian=1.0, **FAST).fit(x[:, :2, :2], y)
    with pytest.raises(ValueError, match="jit_compile=False"):
        FactoredReadout(**dict(FAST, jit_compile=True, strategy=strategies.mirrored())).fit(x, y)
    with pytest.raises(TypeError, match="array-like"):
        model.fit(object(), y)
    with pytest.raises(ValueError, match="dropout"):
        FactoredReadout(dropout=1.0)
    model.fit(x, y)
    with pytest.raises(ValueError, match=r"maps \(8, 8, 5\)"):
        model.predict(x[..., :5])
