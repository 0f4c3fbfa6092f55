"""AlexNet: golden count, shapes, initialisers, XLA / mirrored / bfloat16 (LRN: test_local_response_normalization.py)."""

import json

import keras
import numpy as np
import pytest

from goaldriven.models import alexnet
from tests.models.test_resnets import _bfloat16_forward_is_float32_and_close as bfloat16_forward_is_float32_and_close
from tests.models.test_resnets import _jit_step_matches_eager as jit_step_matches_eager
from tests.models.test_resnets import _mirrored_step_matches_single_device as mirrored_step_matches_single_device

GOLDEN_PARAMS = {
    # spec ch2 11.1 variant (a): lab TF AlexNet at 224 px, SAME pooling (pool5 7x7x256 -> fc6), 1000 classes.
    "alexnet_224": 76_009_832,
}


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


def test_zoo_alexnet_nolrn_is_alexnet_without_lrn():
    from goaldriven.models import zoo

    plain = zoo.build_model("alexnet_nolrn", num_classes=10, image_size=64)
    lrn = zoo.build_model("alexnet", num_classes=10, image_size=64)
    assert not plain.use_lrn and lrn.use_lrn and plain.lrn1 is None
    assert plain.count_params() == lrn.count_params()  # LRN has no weights
