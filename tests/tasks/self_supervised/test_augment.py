"""View augmentations against independent NumPy / colorsys / PIL computations, their randomness and the presets."""

import colorsys
import dataclasses
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from goaldriven.tasks import image_preprocessing
from goaldriven.tasks.self_supervised import augment

NEUTRAL = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # views stay in [0, 1]
PIL_ROUNDING = 1.0 / 255 + 1e-3  # PIL resizes uint8 and rounds


def _image(shape=(20, 24), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape + (3,)).astype(np.float32)


def _gray(x):
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _seed(i):
    return tf.stack([tf.constant(3, tf.int64), tf.cast(i, tf.int64)])


def _views(recipe, image, count, salt=0) -> np.ndarray:
    """Views of one image for seeds (salt, 0..count-1), computed in tf.data: (count, s, s, 3)."""
    image = tf.constant(image)
    dataset = tf.data.Dataset.range(count).map(lambda i: recipe.view(image, tf.stack([tf.constant(salt, tf.int64), i])))
    return next(iter(dataset.batch(count))).numpy()


def _jpeg(shape=(40, 48), subsampling=0) -> bytes:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    pixels = np.stack([xx * 5, yy * 6, (xx + yy) * 3], axis=-1) % 256
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90, subsampling=subsampling)
    return buffer.getvalue()


def test_grayscale_uses_itu_601_weights_on_three_channels():
    x = _image()
    out = augment.grayscale(x).numpy()
    assert out.shape == x.shape
    for channel in range(3):
        np.testing.assert_allclose(out[..., channel], _gray(x), atol=1e-6)


@pytest.mark.parametrize("factor", [0.0, 0.35, 1.0, 1.7])
def test_brightness_contrast_saturation_match_the_torchvision_formulas(factor):
    x = _image()
    np.testing.assert_allclose(augment.adjust_brightness(x, factor), np.clip(factor * x, 0, 1), atol=1e-6)
    mean = _gray(x).mean()
    np.testing.assert_allclose(
        augment.adjust_contrast(x, factor), np.clip(factor * x + (1 - factor) * mean, 0, 1), atol=1e-6
    )
    np.testing.assert_allclose(
        augment.adjust_saturation(x, factor), np.clip(factor * x + (1 - factor) * _gray(x)[..., None], 0, 1), atol=1e-6
    )


@pytest.mark.parametrize("shift", [0.0, 0.1, -0.25, 0.5, -0.5])
def test_hue_shift_matches_colorsys(shift):
    x = _image((4, 5))
    x[0, 0] = (0.4, 0.4, 0.4)  # grey: hue undefined, unchanged
    x[0, 1] = (1.0, 0.0, 0.0)
    expected = np.empty_like(x)
    for index in np.ndindex(x.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*x[index])
        expected[index] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    np.testing.assert_allclose(augment.adjust_hue(x, shift), expected, atol=2e-6)


def _numpy_blur(x, sigma, kernel_size):
    radius = kernel_size // 2
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel = np.outer(taps, taps) / taps.sum() ** 2  # the full 2-D kernel
    padded = np.pad(x.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    out = np.zeros(x.shape)
    for dy in range(kernel_size):
        for dx in range(kernel_size):
            out += kernel[dy, dx] * padded[dy : dy + x.shape[0], dx : dx + x.shape[1]]
    return out


@pytest.mark.parametrize("sigma, kernel_size", [(0.7, 3), (1.3, 7), (2.0, 9)])
def test_gaussian_blur_matches_a_numpy_convolution_with_reflect_padding(sigma, kernel_size):
    x = _image((14, 17))
    np.testing.assert_allclose(
        augment.gaussian_blur(x, sigma, kernel_size), _numpy_blur(x, sigma, kernel_size), atol=1e-5
    )


def test_blur_kernel_is_about_a_tenth_of_the_side_and_odd():
    assert [augment.blur_kernel_size(s) for s in (224, 64, 32, 19)] == [23, 7, 3, 1]


def test_random_blur_sigma_is_uniform_in_range():
    impulse = np.zeros((9, 9, 3), np.float32)
    impulse[4, 4] = 1.0
    centres = []
    for i in range(300):
        blurred = augment.random_gaussian_blur(impulse, _seed(i), sigma=(0.1, 2.0), kernel_size=9).numpy()
        centres.append(blurred[4, 4, 0])
    # The centre value g_0^2 decreases with sigma: invert it on a fine grid.
    grid = np.linspace(0.05, 2.5, 4901)
    offsets = np.arange(-4, 5)
    centre_of = np.array([(1 / np.exp(-(offsets**2) / (2 * s**2)).sum()) ** 2 for s in grid])
    sigmas = np.interp(-np.array(centres), -centre_of, grid)
    assert 0.1 - 0.01 <= sigmas.min() < 0.3 and 1.8 < sigmas.max() <= 2.0 + 0.01
    assert abs(sigmas[sigmas > 0.4].mean() - 1.2) < 0.1  # U[0.4, 2] part: mean 1.2 (small sigmas are ill-posed)


def test_rotations_are_numpy_rot90():
    x = _image((6, 6))
    out = augment.rotations(x).numpy()
    assert out.shape == (4, 6, 6, 3)
    for k in range(4):
        np.testing.assert_array_equal(out[k], np.rot90(x, k, axes=(0, 1)))
    np.testing.assert_array_equal(out[1][0, 0], x[0, -1])  # counter-clockwise: top-right goes to top-left


def _windows(shape, count, **kwargs) -> np.ndarray:
    dataset = tf.data.Dataset.range(count).map(
        lambda i: tf.stack(augment.random_resized_crop_window(tf.constant(shape), _seed(i), **kwargs))
    )
    return next(iter(dataset.batch(count))).numpy()  # (count, 4): y, x, h, w


@pytest.mark.parametrize("scale", [(0.08, 1.0), (0.2, 1.0)])
def test_crop_windows_stay_within_scale_and_ratio_bounds(scale):
    height, width = 300, 400
    y, x, h, w = _windows((height, width, 3), 2000, scale=scale).T
    assert (y >= 0).all() and (x >= 0).all() and (y + h <= height).all() and (x + w <= width).all()
    fraction, ratio = h * w / (height * width), w / h
    slack = 0.015  # rounding w and h to whole pixels
    assert fraction.min() >= scale[0] * (1 - slack) and fraction.max() <= 1.0
    assert ratio.min() >= 0.75 * (1 - slack) and ratio.max() <= 4 / 3 * (1 + slack)
    assert fraction.min() < scale[0] + 0.02 and fraction.max() > 0.9  # the whole range is used
    assert ratio.min() < 0.78 and ratio.max() > 1.28
    # Offsets are uniform over the valid positions.
    relative_y = y[h < height] / (height - h[h < height])
    relative_x = x[w < width] / (width - w[w < width])
    assert abs(relative_y.mean() - 0.5) < 0.04 and abs(relative_x.mean() - 0.5) < 0.04
    # Log-uniform aspect ratio: small crops (always accepted) are symmetric in log ratio.
    small = fraction < 0.3
    assert abs(np.log(ratio[small]).mean()) < 0.03


def test_crop_falls_back_to_the_centre_clipped_to_the_ratio_range():
    # No attempt can fit a 10-pixel side (sides >= sqrt(0.08 * 4000 / (4 / 3)) = 15.5), so the fallback is used.
    np.testing.assert_array_equal(_windows((10, 400, 3), 20), [[0, 193, 10, 13]] * 20)  # w = round(10 * 4 / 3)
    np.testing.assert_array_equal(_windows((400, 10, 3), 20), [[193, 0, 13, 10]] * 20)  # h = round(10 / (3 / 4))


def test_random_resized_crop_matches_pil_crop_and_bilinear_resize():
    pixels = (_image((30, 40)) * 255).round().astype(np.uint8)
    for i in range(6):
        y, x, h, w = (int(v) for v in augment.random_resized_crop_window(tf.constant(pixels.shape), _seed(i)))
        expected = Image.fromarray(pixels).crop((x, y, x + w, y + h)).resize((24, 24), Image.BILINEAR)
        out = augment.random_resized_crop(pixels, _seed(i), size=24).numpy()
        assert out.shape == (24, 24, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, np.asarray(expected) / 255.0, atol=PIL_ROUNDING)


def test_resize_is_pil_bilinear():
    pixels = (_image((37, 45)) * 255).round().astype(np.uint8)
    for size in (16, 64):
        expected = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR)) / 255.0
        np.testing.assert_allclose(augment.resize(pixels / np.float32(255), size), expected, atol=PIL_ROUNDING)


def test_jpeg_bytes_give_the_same_crop_as_decoded_pixels():
    encoded = _jpeg()  # 4:4:4: decoding only the window gives exactly the pixels of the whole decode
    decoded = tf.io.decode_jpeg(encoded, channels=3)
    for i in range(8):
        from_bytes = augment.random_resized_crop(encoded, _seed(i), size=16)
        from_pixels = augment.random_resized_crop(decoded, _seed(i), size=16)
        from_floats = augment.random_resized_crop(tf.cast(decoded, tf.float32) / 255.0, _seed(i), size=16)
        np.testing.assert_allclose(from_bytes, from_pixels, atol=1e-6)
        np.testing.assert_allclose(from_floats, from_pixels, atol=1e-6)
    recipe = augment.preset("simclr", augment_size=32, output_size=16)
    np.testing.assert_allclose(recipe.view(encoded, _seed(1)), recipe.view(decoded, _seed(1)), atol=1e-6)
    # 4:2:0 (most ImageNet files): chroma upsampling at the window's edge differs slightly from the whole decode.
    encoded = _jpeg(subsampling=2)
    decoded = tf.io.decode_jpeg(encoded, channels=3)
    for i in range(8):
        difference = np.abs(
            augment.random_resized_crop(encoded, _seed(i), size=16)
            - augment.random_resized_crop(decoded, _seed(i), size=16)
        )
        assert difference.max() < 4 / 255 and difference.mean() < 0.1 / 255


@pytest.mark.parametrize("name", sorted(augment.PRESETS))
def test_views_are_deterministic_in_the_seed_with_shape_dtype_and_range(name):
    recipe = augment.preset(name, augment_size=32, output_size=16, **NEUTRAL)
    x = _image((30, 40))
    first, again = _views(recipe, x, 6), _views(recipe, x, 6)
    assert first.shape == (6, 16, 16, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert all(not np.array_equal(first[i], first[j]) for i in range(6) for j in range(i))
    assert not np.array_equal(first, _views(recipe, x, 6, salt=1))
    # Normalisation is the last step: the normalised view is (neutral view - mean) / std.
    normalised = augment.preset(name, augment_size=32, output_size=16)
    mean, std = np.array(image_preprocessing.IMAGENET_MEAN), np.array(image_preprocessing.IMAGENET_STD)
    np.testing.assert_allclose(_views(normalised, x, 6), (first - mean) / std, atol=1e-5)


def test_no_final_resize_when_output_equals_augment_size():
    recipe = augment.preset("rotnet", augment_size=16, output_size=16, **NEUTRAL)
    assert _views(recipe, _image((30, 40)), 2).shape == (2, 16, 16, 3)


def _frequency(mask) -> float:
    return float(np.mean(mask))


@pytest.mark.parametrize("name, jitter_prob", [("simclr", 0.8), ("moco_v2", 0.8), ("instance_recognition", 1.0)])
def test_jitter_and_grayscale_probabilities(name, jitter_prob):
    # A constant colour survives crop, flip and blur; only the jitter changes it, only grayscale equalises channels.
    colour = np.array([0.6, 0.3, 0.2], np.float32)
    recipe = augment.preset(name, augment_size=16, output_size=16, **NEUTRAL)
    views = _views(recipe, np.broadcast_to(colour, (20, 24, 3)).copy(), 600)
    pixel = views[:, 8, 8]  # (n, 3)
    np.testing.assert_allclose(views, np.broadcast_to(pixel[:, None, None], views.shape), atol=1e-5)
    gray = np.abs(pixel - pixel[:, :1]).max(axis=1) < 1e-6
    changed = np.abs(pixel - colour).max(axis=1) > 1e-4
    assert abs(_frequency(gray) - 0.2) < 0.06
    assert abs(_frequency(changed) - (1 - (1 - jitter_prob) * 0.8)) < 0.06  # kept only without jitter and gray


def test_instance_recognition_converts_to_grey_before_the_jitter():
    # On a constant image, jitter after grey can only scale the grey level by the brightness factor (contrast blends
    # with the image's own mean, saturation and hue leave grey alone); grey after jitter also sees the hue shift,
    # which moves blue's luma far outside [0.6, 1.4] times.
    blue = np.array([0.1, 0.1, 0.9], np.float32)
    image = np.broadcast_to(blue, (20, 24, 3)).copy()
    luma = float(_gray(blue))
    for before, inside in ((True, True), (False, False)):
        recipe = augment.preset(
            "instance_recognition", augment_size=16, output_size=16, grayscale_before_jitter=before, **NEUTRAL
        )
        pixel = _views(recipe, image, 300)[:, 8, 8]
        grey = pixel[np.abs(pixel - pixel[:, :1]).max(axis=1) < 1e-6, 0]
        assert len(grey) > 30
        within = (grey >= 0.6 * luma - 1e-5) & (grey <= 1.4 * luma + 1e-5)
        assert within.all() == inside


def test_blur_and_flip_probabilities():
    side = 30  # blur kernel 3
    checker = (np.indices((side, side)).sum(axis=0) % 2).astype(np.float32)  # (s, s)
    ramp = np.linspace(0, 1, side, dtype=np.float32)[None, :].repeat(side, axis=0)
    image = np.stack([checker, ramp, 0.5 * np.ones_like(ramp)], axis=-1)
    # Crop scale 1 on a square image of the augment size: always the whole image (no attempt fits another size).
    recipe = dataclasses.replace(
        augment.SUPERVISED,
        crop_scale=(1.0, 1.0),
        blur_prob=0.5,
        blur_sigma=(1.0, 2.0),
        augment_size=side,
        output_size=side,
        **NEUTRAL,
    )
    views = _views(recipe, image, 600)
    blurred = np.abs(np.diff(views[..., 0], axis=2)).mean(axis=(1, 2)) < 0.9  # the checkerboard lost contrast
    flipped = views[:, :, 0, 1].mean(axis=1) > views[:, :, -1, 1].mean(axis=1)  # the ramp decreases
    assert abs(_frequency(blurred) - 0.5) < 0.07 and abs(_frequency(flipped) - 0.5) < 0.07
    plain = np.where(flipped[~blurred, None, None], checker[:, ::-1], checker)
    np.testing.assert_allclose(views[~blurred][..., 0], plain, atol=1e-5)


def test_random_apply_frequency_and_branches():
    marked = [float(augment.random_apply(lambda x: x + 1, tf.zeros([]), _seed(i), 0.3)) for i in range(1000)]
    assert set(marked) == {0.0, 1.0} and abs(np.mean(marked) - 0.3) < 0.05


def _numpy_adjust(x, k, factor):
    if k == 0:
        return np.clip(factor * x, 0, 1)
    if k == 1:
        return np.clip(factor * x + (1 - factor) * _gray(x).mean(), 0, 1)
    if k == 2:
        return np.clip(factor * x + (1 - factor) * _gray(x)[..., None], 0, 1)
    out = np.empty_like(x)
    for index in np.ndindex(x.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*x[index])
        out[index] = colorsys.hsv_to_rgb((h + factor) % 1.0, s, v)
    return out


def test_color_jitter_applies_its_drawn_factors_in_its_drawn_order():
    x = _image((3, 4))
    strengths = (0.8, 0.8, 0.8, 0.2)
    for i in range(12):
        factors, order = (t.numpy() for t in augment.jitter_parameters(_seed(i), strengths))
        expected = x
        for k in order:
            expected = _numpy_adjust(expected, k, factors[k])
        np.testing.assert_allclose(augment.color_jitter(x, _seed(i), strengths), expected, atol=1e-5)
    # Strength 0 skips the adjustment (torchvision: factor None), whatever the order.
    only_hue = augment.color_jitter(x, _seed(0), (0.0, 0.0, 0.0, 0.3))
    factors, _ = augment.jitter_parameters(_seed(0), (0.0, 0.0, 0.0, 0.3))
    np.testing.assert_allclose(only_hue, _numpy_adjust(x, 3, factors.numpy()[3]), atol=1e-5)


def test_jitter_draws_uniform_factors_and_uniform_orders():
    strengths = (0.8, 0.4, 1.5, 0.2)
    draws = [augment.jitter_parameters(_seed(i), strengths) for i in range(1200)]
    factors = np.array([f.numpy() for f, _ in draws])  # (n, 4)
    orders = np.array([o.numpy() for _, o in draws])
    low, high = np.array([0.2, 0.6, 0.0, -0.2]), np.array([1.8, 1.4, 2.5, 0.2])
    assert (factors >= low).all() and (factors <= high).all()
    assert (np.abs(factors.mean(axis=0) - (low + high) / 2) < 0.05 * (high - low)).all()
    assert (np.abs(factors.min(axis=0) - low) < 0.01 * (high - low)).all()
    assert (np.abs(factors.max(axis=0) - high) < 0.01 * (high - low)).all()
    assert all(sorted(o) == [0, 1, 2, 3] for o in orders)
    first_counts = np.bincount(orders[:, 0], minlength=4) / len(orders)
    np.testing.assert_allclose(first_counts, 0.25, atol=0.05)
    assert len({tuple(o) for o in orders}) == 24


def test_evaluation_view_is_resize_centre_crop_resize():
    for shape in ((45, 37), (37, 45), (40, 40)):
        pixels = (_image(shape) * 255).round().astype(np.uint8)
        image = Image.fromarray(pixels)
        short, long = min(shape), max(shape)
        new_long = int(36 * long / short)
        size = (36, new_long) if shape[1] <= shape[0] else (new_long, 36)  # PIL: (width, height)
        resized = image.resize(size, Image.BILINEAR)
        left, top = round((size[0] - 32) / 2), round((size[1] - 32) / 2)
        expected = resized.crop((left, top, left + 32, top + 32)).resize((16, 16), Image.BILINEAR)
        out = augment.evaluation_view(pixels, resize_size=36, crop_size=32, output_size=16, **NEUTRAL)
        assert out.shape == (16, 16, 3)
        np.testing.assert_allclose(out, np.asarray(expected) / 255.0, atol=2 * PIL_ROUNDING)


def test_presets_hold_the_spec_values():
    # Spec ch3 A4 [C]: SimCLR, MoCo v2 = SimSiam, instance recognition, RotNet / supervised.
    assert (augment.SIMCLR.crop_scale, augment.SIMCLR.jitter, augment.SIMCLR.jitter_prob) == (
        (0.08, 1.0),
        (0.8, 0.8, 0.8, 0.2),
        0.8,
    )
    assert (augment.SIMCLR.grayscale_prob, augment.SIMCLR.blur_prob) == (0.2, 0.5)
    assert augment.SIMSIAM == augment.MOCO_V2
    assert (augment.MOCO_V2.crop_scale, augment.MOCO_V2.jitter, augment.MOCO_V2.jitter_prob) == (
        (0.2, 1.0),
        (0.4, 0.4, 0.4, 0.1),
        0.8,
    )
    assert (augment.MOCO_V2.grayscale_prob, augment.MOCO_V2.blur_prob) == (0.2, 0.5)
    ir = augment.INSTANCE_RECOGNITION
    assert (ir.crop_scale, ir.jitter, ir.jitter_prob, ir.grayscale_prob, ir.blur_prob) == (
        (0.2, 1.0),
        (0.4, 0.4, 0.4, 0.4),
        1.0,
        0.2,
        0.0,
    )
    assert augment.ROTNET == augment.SUPERVISED
    assert (augment.ROTNET.crop_scale, augment.ROTNET.jitter_prob, augment.ROTNET.grayscale_prob) == ((0.08, 1.0), 0, 0)
    for recipe in augment.PRESETS.values():
        assert recipe.flip and (recipe.augment_size, recipe.output_size) == (224, 64)
        assert recipe.crop_ratio == (0.75, 4 / 3) and recipe.blur_sigma == (0.1, 2.0)


def test_invalid_recipes_and_names_raise():
    with pytest.raises(ValueError, match="known"):
        augment.preset("byol")
    with pytest.raises(ValueError, match="crop_scale"):
        augment.ViewAugmentation(crop_scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="jitter_prob"):
        augment.ViewAugmentation(jitter_prob=1.5)
    with pytest.raises(ValueError, match="output_size"):
        augment.ViewAugmentation(output_size=0)
    assert augment.ViewAugmentation(jitter=[0.4, 0.4, 0.4, 0.1]).jitter == (0.4, 0.4, 0.4, 0.1)  # lists from gin
