"""The transfer tasks' image preparation: a centre crop and a resize to 64 x 64, greyscale duplicated to 3 channels.

Reference: thesis Section 3.6.8 ("all images resized to 64 x 64") and spec ch3 A5. The reference code [C] shows
every transfer image through its 64 px evaluation transform (torchvision Resize(256), CenterCrop(224), Resize(64));
`prepare_images` is that transform on the host: the central square of side `crop_fraction` x the shorter side
(224 / 256 = 0.875), resized (bilinear, antialiased) to `size` x `size`, as uint8 pixels. The model's own input
normalisation (its task's input_spec) is applied later, at extraction (goaldriven.neural_fits.pipeline.stimuli).
`crop_fraction=1` keeps the whole image (the thesis text mentions only the resize).
"""

# n: images, h/w: space, c: channels, s: the output size
from typing import Iterable

import numpy as np
import tensorflow as tf

CROP_FRACTION = 224 / 256  # [C]: Resize(256) then CenterCrop(224)
IMAGE_SIZE = 64


def to_uint8(images: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Pixels as uint8: uint8 as they are; floats in [0, 1] scaled by 255; floats in [0, 255] rounded (`scale`:
    the factor, or None to infer it from these pixels' range)."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating) and not np.issubdtype(images.dtype, np.integer):
        raise ValueError(f"images must be uint8 or float pixels; received dtype {images.dtype}.")
    images = images.astype(np.float32)
    if images.size and (images.min() < -1e-6 or images.max() > 255 + 1e-3):
        raise ValueError(
            f"image pixels span [{images.min():.3g}, {images.max():.3g}]; store them as uint8 (0..255) or floats in "
            "[0, 1] or [0, 255]."
        )
    if scale is None:
        scale = pixel_scale(images)
    return np.clip(np.round(images * scale), 0, 255).astype(np.uint8)


def pixel_scale(images: np.ndarray) -> float:
    """255 for float pixels in [0, 1], else 1 (uint8, or floats in [0, 255])."""
    images = np.asarray(images)
    if images.dtype == np.uint8 or not images.size:
        return 1.0
    return 255.0 if float(np.max(images)) <= 1.0 + 1e-6 else 1.0


def prepare_image(image: np.ndarray, size: int = IMAGE_SIZE, crop_fraction: float = CROP_FRACTION) -> np.ndarray:
    """One image (h, w) or (h, w, 1 | 3), any size -> (size, size, 3) uint8 (module docstring)."""
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1]. Received: {crop_fraction}")
    image = to_uint8(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"an image must be (h, w) or (h, w, 1 | 3); received shape {image.shape}.")
    image = image[:, :, :3] if image.shape[-1] == 4 else image
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    h, w = image.shape[:2]
    side = max(1, int(round(min(h, w) * crop_fraction)))
    top, left = (h - side) // 2, (w - side) // 2
    crop = image[top : top + side, left : left + side]
    if crop.shape[:2] == (size, size):
        return np.ascontiguousarray(crop)
    out = tf.image.resize(tf.cast(crop, tf.float32)[None], (size, size), method="bilinear", antialias=True)[0]
    return np.clip(np.round(out.numpy()), 0, 255).astype(np.uint8)


def prepare_images(
    images: Iterable[np.ndarray], size: int = IMAGE_SIZE, crop_fraction: float = CROP_FRACTION, batch: int = 256
) -> np.ndarray:
    """Images (an (n, h, w[, c]) array or an h5py dataset, or an iterable of differently sized images) ->
    (n, size, size, 3) uint8. Equal-sized stacks are resized `batch` at a time."""
    if hasattr(images, "shape") and len(images.shape) in (3, 4):
        n = int(images.shape[0])
        out = np.empty((n, size, size, 3), np.uint8)
        scale = pixel_scale(images[: min(n, batch)])  # one factor for the whole stack
        for start in range(0, n, batch):
            block = to_uint8(np.asarray(images[start : start + batch]), scale)
            if block.ndim == 3:
                block = block[..., None]
            h, w = block.shape[1:3]
            side = max(1, int(round(min(h, w) * crop_fraction)))
            top, left = (h - side) // 2, (w - side) // 2
            block = block[:, top : top + side, left : left + side, :3]
            if block.shape[-1] == 1:
                block = np.repeat(block, 3, axis=-1)
            if block.shape[1:3] != (size, size):
                block = tf.image.resize(tf.cast(block, tf.float32), (size, size), method="bilinear", antialias=True)
                block = np.clip(np.round(block.numpy()), 0, 255).astype(np.uint8)
            out[start : start + len(block)] = block
        return out
    return np.stack([prepare_image(image, size, crop_fraction) for image in images]).astype(np.uint8)
