"""ResNet-style ImageNet preprocessing and the standard CIFAR-10 augmentation, one example at a time (tf.data).

Reference: thesis Section 2.5.1 (spec ch2 7.1), following tensorflow/tpu `models/official/resnet/
resnet_preprocessing.py`; CIFAR-10: He et al. 2016, Section 4.2 (pad 4, random 32 x 32 crop, random flip), or the
Keras-standard random shift + flip of the thesis Chapter 6 CIFAR-10 runs (`random_shift_flip`; spec ch5 11.2, A16).

  train: window = sample_distorted_bounding_box(bbox [0, 0, 1, 1], min_object_covered 0.1, aspect [3/4, 4/3],
         area [0.08, 1], 10 attempts); if it failed (window = whole image) use the eval window instead;
         x = flip_lr?(bicubic_resize(crop(image, window), image_size) / 255)
  eval:  side = floor(crop_fraction * min(H, W)), offsets = ((H - side + 1) // 2, (W - side + 1) // 2);
         x = bicubic_resize(crop(image, window), image_size) / 255
  both:  x = (clip(x, 0, 1) - mean) / std,  mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225)

Randomness is stateless: every random op takes a seed of shape (2,) derived from the example's seed, so an augmented
example is a pure function of (seed, image) and no global or op-level TF seed is involved.

Decisions: TF2 `tf.image.resize(method="bicubic")` (half-pixel centres; the reference's TF1 `resize_bicubic` used
corner alignment off and no half-pixel centres, a sub-pixel shift); bicubic overshoot is clipped to [0, 1] (the
reference does not clip; the spec says "convert to [0, 1]"). JPEG bytes are decoded only inside the crop window
(`decode_and_crop_jpeg`); other encodings (PNG, GIF, BMP) are decoded whole, then cropped. Outputs always have 3
channels (grayscale is replicated, CMYK converted by the JPEG decoder, alpha dropped).
"""

# h/w: space, c: channels; a window is (offset_y, offset_x, height, width) in pixels
from typing import Callable

import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_FRACTION = 0.875  # 224 / 256: the eval centre crop of the reference
MIN_OBJECT_COVERED = 0.1
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
AREA_RANGE = (0.08, 1.0)
MAX_ATTEMPTS = 10

Window = tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]


def normalize(images: tf.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> tf.Tensor:
    """(x - mean) / std per channel, for float images in [0, 1] with channels last."""
    images = tf.convert_to_tensor(images, tf.float32)
    return (images - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def center_crop_window(shape: tf.Tensor, crop_fraction: float = CROP_FRACTION) -> Window:
    """The eval window: a centred square of side floor(crop_fraction * min(h, w)); `shape` starts with (h, w)."""
    _check_fraction(crop_fraction)
    height, width = shape[0], shape[1]
    side = tf.cast(crop_fraction * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return (height - side + 1) // 2, (width - side + 1) // 2, side, side


def random_crop_window(
    shape: tf.Tensor,
    seed: tf.Tensor,
    *,
    min_object_covered: float = MIN_OBJECT_COVERED,
    aspect_ratio_range: tuple[float, float] = ASPECT_RATIO_RANGE,
    area_range: tuple[float, float] = AREA_RANGE,
    max_attempts: int = MAX_ATTEMPTS,
    crop_fraction: float = CROP_FRACTION,
) -> Window:
    """The training window (Inception-style distorted box); falls back to the eval window when sampling failed.

    `shape` is (h, w, c) of the image; `seed` is a stateless seed of shape (2,).
    """
    shape = tf.cast(shape, tf.int32)
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=min_object_covered,
        aspect_ratio_range=aspect_ratio_range,
        area_range=area_range,
        max_attempts=max_attempts,
        use_image_if_no_bounding_boxes=True,
    )
    # After max_attempts failures the op returns the whole image, which the reference treats as a failed crop.
    failed = tf.logical_and(tf.equal(size[0], shape[0]), tf.equal(size[1], shape[1]))
    center = center_crop_window(shape, crop_fraction)
    sampled = (begin[0], begin[1], size[0], size[1])
    return tuple(tf.where(failed, c, s) for c, s in zip(center, sampled))


def decode_and_crop(image: tf.Tensor, window_fn: Callable[[tf.Tensor], Window]) -> tf.Tensor:
    """Crops `image` to `window_fn(shape)`; returns uint8 (h', w', 3).

    `image` is either encoded bytes (scalar string: JPEG decoded only inside the window, other formats whole) or a
    decoded uint8 (h, w, c) tensor with c in {1, 3, 4}.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.string:
        return _crop(_to_rgb(image), window_fn(tf.shape(image)))

    def jpeg():
        offset_y, offset_x, height, width = window_fn(tf.image.extract_jpeg_shape(image))
        return tf.io.decode_and_crop_jpeg(image, tf.stack([offset_y, offset_x, height, width]), channels=3)

    def other():
        decoded = tf.io.decode_image(image, channels=3, expand_animations=False)
        return _crop(decoded, window_fn(tf.shape(decoded)))

    cropped = tf.cond(tf.io.is_jpeg(image), jpeg, other)
    return tf.ensure_shape(cropped, [None, None, 3])


def preprocess_for_train(
    image: tf.Tensor,
    seed: tf.Tensor,
    *,
    image_size: int = 224,
    crop_fraction: float = CROP_FRACTION,
    normalized: bool = True,
) -> tf.Tensor:
    """Random-crop, bicubic resize, random flip, [0, 1], normalise: float32 (image_size, image_size, 3).

    Args:
      image: encoded bytes (scalar string) or uint8 (h, w, c).
      seed: stateless seed (2,) of this example.
      image_size: output side in pixels (224 in the thesis, 128 for the searches; any size >= 1).
      crop_fraction: eval-crop fraction used when the random crop fails.
      normalized: subtract the ImageNet mean and divide by its std (else values stay in [0, 1]).
    """
    _check_image_size(image_size)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    cropped = decode_and_crop(
        image, lambda shape: random_crop_window(shape, crop_seed, crop_fraction=crop_fraction)
    )  # (h', w', 3)
    pixels = _resize_to_unit_range(cropped, image_size)
    pixels = tf.image.stateless_random_flip_left_right(pixels, flip_seed)
    return normalize(pixels) if normalized else pixels


def preprocess_for_eval(
    image: tf.Tensor, *, image_size: int = 224, crop_fraction: float = CROP_FRACTION, normalized: bool = True
) -> tf.Tensor:
    """Centre crop, bicubic resize, [0, 1], normalise: float32 (image_size, image_size, 3); deterministic."""
    _check_image_size(image_size)
    cropped = decode_and_crop(image, lambda shape: center_crop_window(shape, crop_fraction))
    pixels = _resize_to_unit_range(cropped, image_size)
    return normalize(pixels) if normalized else pixels


def pad_crop_flip(image: tf.Tensor, seed: tf.Tensor, *, padding: int = 4, normalized: bool = True) -> tf.Tensor:
    """CIFAR training augmentation: zero-pad by `padding`, random crop back to (h, w), random flip; float32 (h, w, 3).

    `image` is encoded bytes or uint8 (h, w, c); the output keeps the input size (32 x 32 for CIFAR-10).
    """
    if not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0 (CIFAR standard: 4). Received: {padding!r}")
    pixels = _decode_whole(image)  # (h, w, 3) uint8
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    shape = tf.shape(pixels)
    padded = tf.pad(pixels, [[padding, padding], [padding, padding], [0, 0]])
    cropped = tf.image.stateless_random_crop(padded, tf.stack([shape[0], shape[1], 3]), crop_seed)
    cropped = tf.image.stateless_random_flip_left_right(cropped, flip_seed)
    result = tf.cast(cropped, tf.float32) / 255.0
    return normalize(result) if normalized else result


def random_shift_flip(images: tf.Tensor, seed: tf.Tensor, *, shift_fraction: float = 0.1) -> tf.Tensor:
    """Keras `ImageDataGenerator(width_shift_range=f, height_shift_range=f, horizontal_flip=True)` on a batch.

    The augmentation of the Chapter 6 CIFAR-10 runs (spec ch5 11.2, A16: f = 0.1 as in the Keras CIFAR-10 example):
    output pixel (y, x) reads input (y + dy, x + dx), dy ~ U(-f, f) h and dx ~ U(-f, f) w per image (continuous,
    bilinear interpolation, `fill_mode="nearest"`: the border pixels extended, as ImageDataGenerator's defaults),
    then a left-right flip with probability 1/2. `images` (b, h, w, c) float; `seed` stateless (2,). Returns float32
    (b, h, w, c), a pure function of (images, seed).
    """
    if not 0.0 <= shift_fraction < 1.0:
        raise ValueError(f"shift_fraction must be in [0, 1) (Keras example: 0.1). Received: {shift_fraction!r}")
    images = tf.convert_to_tensor(images, tf.float32)
    shape = tf.shape(images)
    shift_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    size = tf.cast(shape[1:3], tf.float32)  # (h, w)
    shifts = tf.random.stateless_uniform([shape[0], 2], shift_seed, -shift_fraction, shift_fraction) * size
    ones, zeros = tf.ones([shape[0]]), tf.zeros([shape[0]])
    # Projective transform rows (a0, a1, a2, b0, b1, b2, c0, c1): input (x', y') = (x + dx, y + dy).
    transforms = tf.stack([ones, zeros, shifts[:, 1], zeros, ones, shifts[:, 0], zeros, zeros], axis=1)
    shifted = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    flip = tf.random.stateless_uniform([shape[0]], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(shifted, axis=[2]), shifted)


def cifar_augment(
    image: tf.Tensor,
    seed: tf.Tensor,
    *,
    augmentation: str = "pad_crop_flip",
    padding: int = 4,
    shift_fraction: float = 0.1,
    normalized: bool = True,
) -> tf.Tensor:
    """CIFAR training augmentation of one example: "pad_crop_flip" (He et al.; `pad_crop_flip`) or "shift_flip"
    (the Keras-standard shift of `random_shift_flip`, thesis Chapter 6); float32 (h, w, 3)."""
    if augmentation == "pad_crop_flip":
        return pad_crop_flip(image, seed, padding=padding, normalized=normalized)
    if augmentation != "shift_flip":
        raise ValueError(f"augmentation must be 'pad_crop_flip' or 'shift_flip'. Received: {augmentation!r}")
    pixels = tf.cast(_decode_whole(image), tf.float32) / 255.0  # (h, w, 3)
    result = random_shift_flip(pixels[None], seed, shift_fraction=shift_fraction)[0]
    return normalize(result) if normalized else result


def scale_only(image: tf.Tensor, *, normalized: bool = True) -> tf.Tensor:
    """CIFAR evaluation: no crop or resize, just [0, 1] and optional normalisation; float32 (h, w, 3)."""
    result = tf.cast(_decode_whole(image), tf.float32) / 255.0
    return normalize(result) if normalized else result


def _decode_whole(image: tf.Tensor) -> tf.Tensor:
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.string:
        return tf.ensure_shape(tf.io.decode_image(image, channels=3, expand_animations=False), [None, None, 3])
    return _to_rgb(image)


def _resize_to_unit_range(image: tf.Tensor, image_size: int) -> tf.Tensor:
    resized = tf.image.resize(image, [image_size, image_size], method="bicubic")  # float32, 0..255 + overshoot
    return tf.ensure_shape(tf.clip_by_value(resized / 255.0, 0.0, 1.0), [image_size, image_size, 3])


def _crop(image: tf.Tensor, window: Window) -> tf.Tensor:
    offset_y, offset_x, height, width = window
    return tf.slice(image, tf.stack([offset_y, offset_x, 0]), tf.stack([height, width, 3]))


def _to_rgb(image: tf.Tensor) -> tf.Tensor:
    if image.dtype != tf.uint8 or image.shape.rank != 3:
        raise ValueError(
            f"decoded images must be uint8 (h, w, c); received {image.dtype.name} {image.shape}. Pass encoded bytes "
            "or cast to uint8."
        )
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels in (3, 4):
        return image[..., :3]
    raise ValueError(f"decoded images need a static channel count of 1, 3 or 4; received shape {image.shape}.")


def _check_image_size(image_size) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int (224, 128, 64, 32, ...). Received: {image_size!r}")


def _check_fraction(crop_fraction) -> None:
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1] (reference: 224 / 256 = 0.875). Received: {crop_fraction}")
