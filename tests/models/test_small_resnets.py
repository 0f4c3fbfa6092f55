"""Small CIFAR ResNets: parameter counts against He et al.'s layout by hand, shapes, head in NumPy, XLA step, zoo."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models import small_resnets, zoo


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def _expected_trainable(depth, width, classes, c_in=3):
    """Hand count (module docstring of small_resnets): convs without bias, BN gamma/beta, option-B projections."""
    n, w = (depth - 2) // 6, width
    total = 9 * c_in * w + 2 * w  # stem conv + BN
    total += n * (2 * 9 * w * w + 2 * 2 * w)  # stage 1: no projection
    for d_in, d in ((w, 2 * w), (2 * w, 4 * w)):  # stages 2, 3: first block strides and projects
        total += 9 * d_in * d + 9 * d * d + d_in * d + 3 * 2 * d
        total += (n - 1) * (2 * 9 * d * d + 2 * 2 * d)
    return total + 4 * w * classes + classes


def _expected_bn_channels(depth, width):
    n, w = (depth - 2) // 6, width
    return w + n * 2 * w + (3 * 2 * w + (n - 1) * 2 * 2 * w) + (3 * 4 * w + (n - 1) * 2 * 4 * w)


def test_resnet8_parameter_count_by_hand():
    # stem 3*3*3*16 + 32; stage 1: 2*9*16*16 + 64; stage 2: 9*16*32 + 9*32*32 + 16*32 + 192;
    # stage 3: 9*32*64 + 9*64*64 + 32*64 + 384; logits 64*10 + 10.
    model = small_resnets.build_small_resnet(8, 16, num_classes=10)
    assert _count(model.trainable_weights) == 464 + 4_672 + 14_528 + 57_728 + 650 == 78_042
    assert _count(model.non_trainable_weights) == 2 * (16 + 32 + 3 * 32 + 3 * 64)


@pytest.mark.parametrize("depth, width, classes", [(14, 8, 7), (20, 16, 10), (32, 4, 3)])
def test_parameter_counts_match_the_formula(depth, width, classes):
    model = small_resnets.build_small_resnet(depth, width, num_classes=classes)
    assert _count(model.trainable_weights) == _expected_trainable(depth, width, classes)
    assert _count(model.non_trainable_weights) == 2 * _expected_bn_channels(depth, width)
    n = (depth - 2) // 6
    convs = [w for w in model.weights if w.path.endswith("kernel") and len(w.shape) == 4]
    assert len(convs) == 1 + 6 * n + 2  # stem, two per block, two projections: depth - 1 + 2 weight layers


@pytest.mark.parametrize("image_size", [32, 16])
def test_feature_shapes_and_dtypes(image_size):
    model = small_resnets.build_small_resnet(14, 4, num_classes=5, image_size=image_size)
    out = model(tf.random.normal((2, image_size, image_size, 3)), training=False)
    assert out["logits"].shape == (2, 5) and out["logits"].dtype == tf.float32
    s = image_size
    expected = {"stem": (2, s, s, 4)}
    for i, (size, channels) in enumerate(((s, 4), (s // 2, 8), (s // 4, 16))):
        for j in range(2):
            expected[f"stage{i + 1}_block{j + 1}"] = (2, size, size, channels)
    expected["pool"] = (2, 16)
    assert {k: tuple(v.shape) for k, v in out["features"].items()} == expected
    assert model.feature_names == tuple(expected)


def test_head_is_global_average_pool_then_dense_in_numpy():
    model = small_resnets.build_small_resnet(8, 4, num_classes=3, image_size=8)
    out = model(tf.random.normal((2, 8, 8, 3)), training=False)
    last = out["features"]["stage3_block1"].numpy()
    kernel, bias = (w.numpy() for w in model.logits.weights)
    np.testing.assert_allclose(out["features"]["pool"].numpy(), last.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["logits"].numpy(), last.mean(axis=(1, 2)) @ kernel + bias, rtol=1e-5, atol=1e-6)


def test_weight_decay_is_half_tf1_lambda_on_kernels():
    model = small_resnets.build_small_resnet(8, 2, num_classes=3, weight_decay=1e-2, image_size=8)
    model(tf.zeros((1, 8, 8, 3)))
    kernels = [w.numpy() for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = 1e-2 / 2 * sum(float(np.sum(k.astype(np.float64) ** 2)) for k in kernels)
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


def _train_step(model, opt, x, y):
    with tf.GradientTape() as tape:
        logits = model(x, training=True)["logits"]
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return loss


@pytest.mark.slow  # ~12 s: XLA compiles the SGD step of 8 layers on CPU
def test_xla_train_step_matches_eager():
    x, y = tf.random.normal((2, 8, 8, 3)), tf.constant([0, 2])
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(1)
        model = small_resnets.build_small_resnet(8, 4, num_classes=3, image_size=8)
        opt = keras.optimizers.SGD(0.1)
        opt.build(model.trainable_variables)
        step = tf.function(lambda: _train_step(model, opt, x, y), jit_compile=True) if jit else None
        loss = step() if jit else _train_step(model, opt, x, y)
        results.append((float(loss), [v.numpy() for v in model.trainable_variables]))
    assert np.isfinite(results[0][0])
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_mixed_bfloat16_forward_keeps_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = small_resnets.build_small_resnet(8, 4, num_classes=3, image_size=8)
    out = model(tf.random.normal((2, 8, 8, 3)), training=True)
    assert out["logits"].dtype == tf.float32 and out["features"]["stem"].dtype == tf.bfloat16
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert np.all(np.isfinite(out["logits"].numpy()))


def test_zoo_names_and_convrnn_option_check():
    assert {"small_resnet8", "small_resnet14", "small_resnet20"} <= set(zoo.model_names())
    model = zoo.build_model("small_resnet14", num_classes=10, image_size=32, remat=False, unroll_length="full")
    assert (model.depth, model.width, model.num_classes, model.weight_decay) == (14, 16, 10, 1e-4)
    with pytest.raises(ValueError, match="without the ConvRNN options"):
        zoo.build_model("small_resnet8", num_classes=10, image_size=32, width_multiplier=0.5)


def test_invalid_arguments_name_the_fix():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        small_resnets.SmallResNet(depth=10)
    with pytest.raises(ValueError, match="width"):
        small_resnets.SmallResNet(depth=8, width=0)
    with pytest.raises(ValueError, match="image_size"):
        small_resnets.build_small_resnet(8, image_size=0)


def test_config_round_trip_keeps_weight_names():
    model = small_resnets.build_small_resnet(8, 2, num_classes=3, image_size=8)
    clone = small_resnets.SmallResNet.from_config(model.get_config())
    clone(keras.KerasTensor((None, 8, 8, 3)))
    strip = lambda path: path.removeprefix(f"{model.name}/")  # noqa: E731
    assert [strip(w.path) for w in clone.weights] == [strip(w.path) for w in model.weights]
