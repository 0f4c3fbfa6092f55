"""AdaptiveAveragePooling2D against a NumPy transcription of PyTorch's adaptive-pooling index rule, under XLA, and
through the shared layer harness."""

import numpy as np
import pytest
import tensorflow as tf

from goaldriven.models.adaptive_average_pooling2d import AdaptiveAveragePooling2D
from tests import layer_testing


def _torch_adaptive_avg_pool(x, out_h, out_w):
    """torch.nn.functional.adaptive_avg_pool2d, channels last: window [floor(i H / n), ceil((i + 1) H / n))."""
    b, h, w, c = x.shape
    out = np.zeros((b, out_h, out_w, c))
    for i in range(out_h):
        r0, r1 = int(np.floor(i * h / out_h)), int(np.ceil((i + 1) * h / out_h))
        for j in range(out_w):
            c0, c1 = int(np.floor(j * w / out_w)), int(np.ceil((j + 1) * w / out_w))
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize(
    "in_size, out_size",
    [((3, 3), (6, 6)), ((7, 7), (6, 6)), ((1, 1), (6, 6)), ((6, 6), (3, 3)), ((13, 9), (6, 4)), ((5, 8), (5, 8))],
)
def test_matches_pytorch_index_rule(in_size, out_size):
    x = np.random.default_rng(0).normal(size=(2, *in_size, 3))
    expected = _torch_adaptive_avg_pool(x, *out_size)
    layer = AdaptiveAveragePooling2D(out_size)
    np.testing.assert_allclose(layer(x.astype(np.float32)).numpy(), expected, rtol=1e-5, atol=1e-6)
    xla = tf.function(layer, jit_compile=True)(tf.constant(x, tf.float32))
    np.testing.assert_allclose(xla.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_seven_to_six_uses_overlapping_windows():
    # 7 -> 6: windows [0, 2), [1, 3), [2, 4), [3, 5), [4, 6), [5, 7): every window has two rows, and they overlap.
    x = np.arange(7, dtype=np.float32)[None, :, None, None] * np.ones((1, 7, 7, 1), np.float32)
    rows = AdaptiveAveragePooling2D(6)(x).numpy()[0, :, 0, 0]
    np.testing.assert_allclose(rows, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])


def test_layer_harness_and_checks():
    x = tf.random.stateless_normal([2, 3, 3, 4], [0, 1])
    layer_testing.run_layer_test(
        AdaptiveAveragePooling2D,
        {"output_size": 6},
        (x,),
        expected_output_shape=(2, 6, 6, 4),
        expected_num_trainable_weights=0,
    )
    with pytest.raises(ValueError, match="positive int or a pair"):
        AdaptiveAveragePooling2D(0)
