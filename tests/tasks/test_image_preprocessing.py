"""ResNet-style preprocessing and CIFAR augmentation: geometry, normalisation, ranges, stateless determinism."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from goaldriven.tasks import image_preprocessing as pp

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def _encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _pattern(height: int, width: int) -> np.ndarray:
    """Channel 0 = row index, channel 1 = column index, channel 2 = 7 (uint8)."""
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return np.stack([rows, cols, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def _seed(a, b=0):
    return tf.constant([a, b], tf.int64)


def test_normalize_matches_numpy():
    pixels = np.random.default_rng(0).uniform(size=(5, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(pp.normalize(pixels).numpy(), (pixels - MEAN) / STD, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("encode", [False, True], ids=["uint8", "png"])
def test_center_crop_geometry(encode):
    # 40 x 64: side = floor(0.875 * 40) = 35, offsets ((40 - 35 + 1) // 2, (64 - 35 + 1) // 2) = (3, 15).
    image = _pattern(40, 64)
    source = _encode(image) if encode else tf.constant(image)
    # image_size = 35: a bicubic resize to the same size is the identity, so pixels are the crop's exactly.
    out = pp.preprocess_for_eval(source, image_size=35, normalized=False).numpy()
    expected = image[3:38, 15:50].astype(np.float32) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-6)
    normalized = pp.preprocess_for_eval(source, image_size=35).numpy()
    np.testing.assert_allclose(normalized, (expected - MEAN) / STD, atol=1e-5)


def test_center_crop_window_on_jpeg_matches_numpy_crop():
    rng = np.random.default_rng(1)
    image = np.kron(rng.integers(0, 255, (6, 9, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 48 x 72 blocks
    data = _encode(image, "JPEG")
    out = pp.preprocess_for_eval(data, image_size=42, normalized=False).numpy()  # side floor(0.875 * 48) = 42
    full = tf.io.decode_jpeg(data, channels=3).numpy()
    np.testing.assert_allclose(out, full[3:45, 15:57] / 255.0, atol=3 / 255)


@pytest.mark.parametrize("size", [32, 17, 64])
def test_train_output_shape_range_and_determinism(size):
    data = _encode(np.random.default_rng(2).integers(0, 255, (50, 70, 3), dtype=np.uint8), "JPEG")
    out = pp.preprocess_for_train(data, _seed(3), image_size=size).numpy()
    assert out.shape == (size, size, 3) and out.dtype == np.float32
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    assert np.all(out >= low - 1e-6) and np.all(out <= high + 1e-6)
    np.testing.assert_array_equal(out, pp.preprocess_for_train(data, _seed(3), image_size=size).numpy())
    assert not np.allclose(out, pp.preprocess_for_train(data, _seed(4), image_size=size).numpy())


def test_random_crop_window_follows_the_box_constraints():
    shape = tf.constant([120, 160, 3])
    areas, aspects = [], []
    for s in range(40):
        oy, ox, h, w = (int(v) for v in pp.random_crop_window(shape, _seed(s)))
        assert 0 <= oy and oy + h <= 120 and 0 <= ox and ox + w <= 160
        areas.append(h * w / (120 * 160))
        aspects.append(w / h)
    assert min(areas) >= 0.08 - 0.02 and max(areas) <= 1.0
    assert min(aspects) >= 0.75 - 0.05 and max(aspects) <= 4 / 3 + 0.05
    assert len(set(areas)) > 10  # genuinely random


def test_failed_crop_falls_back_to_the_center_crop():
    # A 1 x 200 strip: no window of aspect ratio in [3/4, 4/3] covers 8% of it, so sampling fails.
    window = [int(v) for v in pp.random_crop_window(tf.constant([1, 200, 3]), _seed(0))]
    assert window == [int(v) for v in pp.center_crop_window(tf.constant([1, 200, 3]))]
    assert window == [
        0,
        100,
        1,
        1,
    ]  # floor(0.875 * 1) = 0 -> at least 1 pixel, centred at (1 - 1 + 1)//2, (200 - 1 + 1)//2


def test_flip_happens_sometimes():
    # A horizontal ramp: flipped outputs decrease from left to right.
    image = np.tile(np.linspace(0, 250, 64).astype(np.uint8)[None, :, None], (64, 1, 3))
    data = _encode(image)
    directions = []
    for s in range(16):
        out = pp.preprocess_for_train(data, _seed(s), image_size=16, normalized=False).numpy()
        directions.append(out[8, -1, 0] > out[8, 0, 0])
    assert 2 <= sum(directions) <= 14, directions


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs_give_three_channels(mode):
    image = np.zeros((20, 24, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 200, 60, 120
    data = _encode(image, "JPEG", mode)
    out = pp.preprocess_for_eval(data, image_size=8, normalized=False).numpy()
    assert out.shape == (8, 8, 3)
    if mode == "CMYK":
        np.testing.assert_allclose(out.mean((0, 1)) * 255, [200, 60, 120], atol=4)
    else:
        np.testing.assert_allclose(out[..., 0], out[..., 2])


def test_decoded_grayscale_input():
    out = pp.preprocess_for_eval(tf.constant(_pattern(16, 16)[..., :1]), image_size=14, normalized=False).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 1])


def test_pad_crop_flip_is_a_shifted_window_of_the_padded_image():
    image = np.random.default_rng(3).integers(1, 255, (32, 32, 3), dtype=np.uint8)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    shifts = set()
    for s in range(12):
        out = pp.pad_crop_flip(tf.constant(image), _seed(s), normalized=False).numpy() * 255
        assert out.shape == (32, 32, 3)
        matches = [
            (dy, dx, flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
            if np.allclose((padded[dy : dy + 32, dx : dx + 32])[:, :: -1 if flip else 1], out, atol=1e-3)
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 6
    np.testing.assert_allclose(
        pp.scale_only(_encode(image)).numpy(), (image / 255.0 - MEAN) / STD, rtol=1e-5, atol=1e-5
    )


def test_invalid_arguments_name_the_fix():
    with pytest.raises(ValueError, match="image_size"):
        pp.preprocess_for_eval(tf.constant(_pattern(8, 8)), image_size=0)
    with pytest.raises(ValueError, match="crop_fraction"):
        pp.center_crop_window(tf.constant([8, 8, 3]), 1.5)
    with pytest.raises(ValueError, match="uint8"):
        pp.preprocess_for_eval(tf.zeros([8, 8, 3]), image_size=4)
