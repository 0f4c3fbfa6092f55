"""The TensorFlow cochleagram against the independent NumPy/SciPy float64 reference (tests/audio/numpy_cochleagram.py).

Tolerances (measured, float32 TF vs float64 NumPy): before compression max |error| / max is about 1.2e-6 on white noise
and 1.6e-6 on a chirp at the default 2 s / 20 kHz setting (float32 rounding of 40,000-point FFTs); we allow 1e-5.
After the 0.3 power, |a^0.3 - b^0.3| <= |a - b|^0.3 bounds the error by (1e-5 max)^0.3 in the worst case (values near
zero); measured 3.5e-7 (noise) and 3.2e-5 (chirp, in channels far from the sweep); we allow 1e-3 absolute on values up to
about 0.7.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.audio import cochleagram as coch
from tests.audio import numpy_cochleagram as ref

SMALL = dict(sample_rate=8000, envelope_rate=200, low_lim=50, high_lim=3000, n=12, sample_factor=4, duration=0.5)
TINY = dict(sample_rate=8000, envelope_rate=200, low_lim=50, high_lim=3000, n=4, sample_factor=2, duration=0.1)


def _reference(signal, compression, sample_rate, envelope_rate, low_lim, high_lim, n, sample_factor, duration):
    return ref.cochleagram(signal, sample_rate, envelope_rate, low_lim, high_lim, n, sample_factor, compression)


def _signals(sample_rate, duration):
    t = np.arange(round(sample_rate * duration)) / sample_rate
    top = 0.45 * sample_rate
    chirp = np.sin(2 * np.pi * (30 * t + (top - 30) / (2 * duration) * t**2))
    return {"noise": np.random.default_rng(0).standard_normal(t.size), "chirp": chirp}


def test_filterbank_matches_numpy():
    for args in [(40000, 20000, 50, 20, 8000, 4), (4000, 8000, 12, 50, 3000, 4), (801, 8000, 4, 50, 3000, 2)]:
        ours, centers = coch.erb_filters(*args)
        theirs, their_centers = ref.erb_filters(*args)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-9)
        np.testing.assert_allclose(centers, their_centers, rtol=1e-12)
    assert coch.erb_filters(40000, 20000, 50, 20, 8000, 4)[0].shape == (203, 20001)


@pytest.mark.parametrize("settings", [{}, SMALL], ids=["default_2s_20kHz", "small_0.5s_8kHz"])
def test_cochleagram_matches_numpy(settings):
    kwargs = dict(sample_rate=20000, envelope_rate=200, low_lim=20, high_lim=8000, n=50, sample_factor=4, duration=2.0)
    kwargs.update(settings)
    for name, signal in _signals(kwargs["sample_rate"], kwargs["duration"]).items():
        for compression in ("none", "clipped_point3"):
            expected = _reference(signal, compression, **kwargs)
            got = coch.cochleagram(signal[None].astype(np.float32), compression=compression, **kwargs).numpy()
            assert got.shape == (1, *expected.shape, 1)
            err = np.abs(got[0, :, :, 0] - expected).max()
            if compression == "none":
                assert err <= 1e-5 * expected.max(), (name, err / expected.max())
            else:
                assert err <= 1e-3, (name, err)


def test_tone_peaks_in_the_nearest_channel():
    sample_rate, duration = 20000, 0.5
    t = np.arange(round(sample_rate * duration)) / sample_rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = coch.cochleagram(tone[None], duration=duration).numpy()[0, :, :, 0]
    # Independent centre frequencies: Glasberg & Moore ERB number E(f) = 21.4 log10(1 + 0.00437 f) (the same formula
    # as 9.265 ln(1 + f / 228.8) up to rounding), 203 centres evenly spaced strictly inside [E(20), E(8000)].
    erb = lambda f: 21.4 * np.log10(1 + 0.00437 * np.asarray(f))  # noqa: E731
    centers_erb = np.linspace(erb(20), erb(8000), 205)[1:-1]
    centers_hz = (10 ** (centers_erb / 21.4) - 1) / 0.00437
    nearest = int(np.argmin(np.abs(centers_hz - 1000)))
    assert int(np.argmax(out[:, 20:-20].mean(axis=1))) == nearest


def test_output_shapes():
    assert coch.output_shape() == (203, 400, 1)
    layer = coch.Cochleagram()
    assert layer.compute_output_shape((3, 40000)) == (3, 203, 400, 1)
    assert coch.output_shape(
        **{k: SMALL[k] for k in ("sample_rate", "envelope_rate", "n", "sample_factor", "duration")}
    ) == (51, 100, 1)
    out = coch.Cochleagram(**SMALL)(tf.zeros((2, 4000)))
    assert out.shape == (2, 51, 100, 1) and out.dtype == tf.float32


def test_jit_compile_and_tf_data_match_eager():
    x = tf.constant(np.random.default_rng(1).standard_normal((2, 800)), tf.float32)
    layer = coch.Cochleagram(**TINY)
    eager = layer(x).numpy()
    assert eager.shape == (2, 9, 20, 1)
    jitted = tf.function(layer, jit_compile=True)(x).numpy()
    np.testing.assert_allclose(jitted, eager, atol=1e-5)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(2).map(lambda w: coch.cochleagram(w, **TINY))
    (mapped,) = list(ds)
    assert mapped.shape[1:] == (9, 20, 1)
    np.testing.assert_allclose(mapped.numpy(), eager, atol=1e-5)


def test_config_round_trip():
    layer = coch.Cochleagram(**SMALL, name="coch")
    clone = coch.Cochleagram.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, coch.Cochleagram) and restored.n == 12


def test_oversampled_envelopes_are_close():
    signals = _signals(SMALL["sample_rate"], SMALL["duration"])
    expected = _reference(signals["noise"], "none", **SMALL)
    got = coch.cochleagram(
        signals["noise"][None].astype(np.float32), compression="none", envelope_oversample=4, **SMALL
    )
    assert np.abs(got.numpy()[0, :, :, 0] - expected).max() <= 2e-2 * expected.max()


def test_clipped_point3_gradient():
    x = tf.constant([0.0, 1e-4, 1.0, 2.0, -1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = coch.clipped_point3(x)
    np.testing.assert_allclose(y.numpy(), np.maximum(x.numpy(), 0) ** 0.3, rtol=1e-6)
    g = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(g, [1.0, 1.0, 0.3, 0.3 * 2**-0.7, 1.0], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(high_lim=12000), "Nyquist"),
        (dict(sample_rate=20000, envelope_rate=300), "multiple of envelope_rate"),
        (dict(duration=2.00001), "integer number"),
        (dict(compression="log"), "compression must be one of"),
        (dict(sample_factor=3), "sample_factor"),
        (dict(low_lim=9000, high_lim=8000), "low_lim < high_lim"),
        (dict(envelope_oversample=0), "envelope_oversample"),
    ],
)
def test_errors(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        coch.Cochleagram(**kwargs)


def test_wrong_input_length_and_empty_filters():
    with pytest.raises(ValueError, match=r"expected waveforms \(batch, 4000\)"):
        coch.cochleagram(tf.zeros((1, 4001)), **SMALL)
    with pytest.raises(ValueError, match="fall between rFFT bins"):
        coch.cochleagram(
            tf.zeros((1, 40)), sample_rate=8000, envelope_rate=200, low_lim=20, high_lim=200, n=40, duration=0.005
        )
