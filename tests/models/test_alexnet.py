"""AlexNet and its LRN layer: golden count, LRN against NumPy, shapes, initialisers, XLA / mirrored / bfloat16."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import alexnet
from goaldriven.models.local_response_normalization import LocalResponseNormalization
from tests.models.test_resnets import _bfloat16_forward_is_float32_and_close as bfloat16_forward_is_float32_and_close
from tests.models.test_resnets import _jit_step_matches_eager as jit_step_matches_eager
from tests.models.test_resnets import _mirrored_step_matches_single_device as mirrored_step_matches_single_device

GOLDEN_PARAMS = {
    # spec ch2 11.1 variant (a): lab TF AlexNet at 224 px, SAME pooling (pool5 7x7x256 -> fc6), 1000 classes.
    "alexnet_224": 76_009_832,
}


def _lrn_numpy(x, depth_radius, bias, alpha, beta):
    """The tf.nn.local_response_normalization formula, channel by channel, in float64."""
    x = x.astype(np.float64)
    out = np.empty_like(x)
    channels = x.shape[-1]
    for c in range(channels):
        lo, hi = max(0, c - depth_radius), min(channels, c + depth_radius + 1)
        sqr_sum = np.sum(x[..., lo:hi] ** 2, axis=-1)
        out[..., c] = x[..., c] / (bias + alpha * sqr_sum) ** beta
    return out


@pytest.mark.parametrize(
    "depth_radius, bias, alpha, beta, scale",
    [
        (5, 1.0, 1e-4, 0.75, 30.0),  # the AlexNet setting; inputs large enough that the normalisation matters
        (2, 2.0, 0.3, 0.5, 1.0),
        (0, 1.0, 1.0, 1.0, 1.0),  # window of one channel
        (20, 1.0, 0.05, 0.75, 1.0),  # window wider than the channels
    ],
)
def test_lrn_matches_numpy(depth_radius, bias, alpha, beta, scale):
    x = (scale * np.random.default_rng(0).normal(size=(2, 3, 4, 16))).astype("float32")
    layer = LocalResponseNormalization(depth_radius, bias, alpha, beta)
    expected = _lrn_numpy(x, depth_radius, bias, alpha, beta)
    assert np.abs(expected - x).max() > 1e-2 * np.abs(x).max()  # the case is not trivially the identity
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=2e-5, atol=1e-6)
    reference = tf.nn.local_response_normalization(x, depth_radius, bias, alpha, beta)
    np.testing.assert_allclose(layer(x).numpy(), reference.numpy(), rtol=2e-5, atol=1e-6)
    xla = tf.function(layer, jit_compile=True)(tf.constant(x))
    np.testing.assert_allclose(xla.numpy(), expected, rtol=2e-5, atol=1e-6)


def test_lrn_gradient_matches_tf_op_and_config_round_trips():
    x = tf.constant(10 * np.random.default_rng(1).normal(size=(2, 3, 3, 12)), tf.float32)
    layer = LocalResponseNormalization(depth_radius=3, alpha=1e-3)
    grads = []
    for fn in (layer, lambda t: tf.nn.local_response_normalization(t, 3, 1.0, 1e-3, 0.75)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x) * tf.range(12, dtype=tf.float32))
        grads.append(tape.gradient(y, x).numpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, LocalResponseNormalization)
    assert (clone.depth_radius, clone.bias, clone.alpha, clone.beta) == (3, 1.0, 1e-3, 0.75)


def test_lrn_under_mixed_bfloat16_computes_in_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    x = tf.cast(30 * tf.random.normal((2, 2, 2, 8)), tf.bfloat16)
    out = LocalResponseNormalization()(x)
    assert out.dtype == tf.bfloat16
    expected = _lrn_numpy(tf.cast(x, tf.float32).numpy(), 5, 1.0, 1e-4, 0.75)
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), expected, rtol=1e-2, atol=1e-2)


def test_lrn_rejects_bad_arguments():
    with pytest.raises(ValueError, match="depth_radius"):
        LocalResponseNormalization(depth_radius=-1)
    with pytest.raises(ValueError, match="bias must be > 0"):
        LocalResponseNormalization(bias=0.0)
    with pytest.raises(ValueError, match="known channel count"):
        LocalResponseNormalization()(keras.KerasTensor((None, 4)))


def _expected_shapes(image_size):
    """conv1 11x11/4 VALID, then every 3x3/2 SAME pool gives ceil(n / 2) (spec 5.5)."""
    half = lambda n: -(-n // 2)  # noqa: E731
    conv1 = (image_size - 11) // 4 + 1
    s1 = half(conv1)
    s2 = half(s1)
    s5 = half(s2)
    return {
        "conv1": (s1, s1, 96),
        "conv2": (s2, s2, 256),
        "conv3": (s2, s2, 384),
        "conv4": (s2, s2, 384),
        "conv5": (s5, s5, 256),
        "fc6": (4096,),
        "fc7": (4096,),
    }


def test_golden_parameter_count_and_shapes_at_224():
    model = alexnet.build_alexnet()
    assert model.count_params() == GOLDEN_PARAMS["alexnet_224"]
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 0
    assert _expected_shapes(224)["conv5"] == (7, 7, 256)  # spec 5.5: pool5 is 7x7x256 at 224 px
    out = model(keras.KerasTensor((2, 224, 224, 3)))
    assert model.feature_names == ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
    assert tuple(out["features"]) == model.feature_names
    for name, shape in _expected_shapes(224).items():
        assert tuple(out["features"][name].shape) == (2,) + shape, name
    assert tuple(out["logits"].shape) == (2, 1000)


def test_shapes_and_dropout_at_32_px():
    model = alexnet.build_alexnet(num_classes=10, image_size=32)
    images = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    out = model(images)
    for name, shape in _expected_shapes(32).items():
        assert tuple(out["features"][name].shape) == (2,) + shape, name
    assert out["logits"].shape == (2, 10) and out["logits"].dtype == "float32"
    train = model(images, training=True)
    np.testing.assert_allclose(train["features"]["fc6"], out["features"]["fc6"], rtol=1e-6)  # dropout after fc6
    assert not np.allclose(train["logits"], out["logits"])  # dropout 0.5 before fc7 and fc8
    np.testing.assert_allclose(model(images)["logits"], out["logits"], rtol=1e-6)  # inference is deterministic


def test_initialisers_and_weight_decay_follow_the_spec():
    lam = 5e-4
    model = alexnet.build_alexnet(num_classes=10, weight_decay=lam, image_size=32)
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        layer = model.get_layer(name)
        np.testing.assert_array_equal(layer.bias.numpy(), 1.0)
        fan_in = np.prod(layer.kernel.shape[:-1])
        fan_out = np.prod(layer.kernel.shape[:-2]) * layer.kernel.shape[-1]
        assert np.abs(layer.kernel.numpy()).max() <= np.sqrt(6 / (fan_in + fan_out))  # Glorot uniform bound
    for name, bias in (("fc6", 0.1), ("fc7", 0.1), ("fc8", 0.0)):
        layer = model.get_layer(name)
        np.testing.assert_allclose(layer.bias.numpy(), bias)
        kernel = layer.kernel.numpy()
        assert np.abs(kernel).max() <= 0.02 + 1e-7 and 0.007 < kernel.std() < 0.0095  # TruncatedNormal(0.01)
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    assert len(kernels) == 8
    expected = lam * sum(np.sum(np.square(w.numpy().astype(np.float64))) for w in kernels) / 2
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


def test_config_round_trip_rebuilds_the_same_model():
    model = alexnet.build_alexnet(num_classes=5, weight_decay=1e-3, dropout=0.3, image_size=32)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    clone = keras.saving.deserialize_keras_object(config)
    assert isinstance(clone, alexnet.AlexNet) and clone.get_config() == model.get_config()
    images = np.random.default_rng(5).normal(size=(2, 32, 32, 3)).astype("float32")
    clone(images)
    # Stable weight names. Keras builds a deserialised model from its build config outside the model's name scope,
    # so the clone's paths lack the leading "<model name>/".
    strip = lambda path: path.removeprefix(f"{model.name}/")  # noqa: E731
    assert [strip(w.path) for w in clone.weights] == [strip(w.path) for w in model.weights]
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(images)["logits"], model(images)["logits"], rtol=1e-5, atol=1e-6)


def test_invalid_arguments_name_the_fix():
    with pytest.raises(ValueError, match="drop rate"):
        alexnet.AlexNet(dropout=1.0)
    with pytest.raises(ValueError, match="image_size must be an int >= 32"):
        alexnet.build_alexnet(image_size=16)
    with pytest.raises(ValueError, match="TF1 lambda"):
        alexnet.AlexNet(weight_decay=-1.0)


def _tiny():
    return alexnet.build_alexnet(num_classes=10, dropout=0.0, image_size=32)  # no dropout: steps are comparable


def _data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(2, 32, 32, 3)).astype("float32"), rng.integers(0, 10, size=2).astype("int32")


def test_xla_train_step_matches_eager():
    jit_step_matches_eager(_tiny, *_data())


def test_mirrored_train_step_matches_single_device():
    mirrored_step_matches_single_device(_tiny, *_data())


def test_mixed_bfloat16_forward():
    bfloat16_forward_is_float32_and_close(_tiny)
