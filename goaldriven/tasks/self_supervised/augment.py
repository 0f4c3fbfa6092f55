"""The view augmentations of the self-supervised objectives (thesis Chapter 3), stateless, one example at a time.

Reference: thesis Section 3.6.5 (spec ch3 A4; values tagged [C] come from the authors' PyTorch code): torchvision's
RandomResizedCrop, RandomHorizontalFlip, ColorJitter, RandomGrayscale and GaussianBlur as used by SimCLR (Chen et al.
2020), MoCo v2 (Chen et al. 2020), SimSiam (Chen & He 2021), instance recognition (Wu et al. 2018) and RotNet
(Gidaris et al. 2018). Images are float32 (h, w, 3) in [0, 1] until the final normalisation; every random op takes a
stateless seed (2,), so a view is a pure function of (image, seed) and no global or op-level TF seed is involved.

Ops (u ~ U[a, b] is drawn from the op's own seed; H x W is the input image):
  random_resized_crop(scale, ratio), 10 attempts k at once: a_k = H W U[scale], r_k = exp(U[log ratio]),
      w_k = round(sqrt(a_k r_k)), h_k = round(sqrt(a_k / r_k)) (half to even, as Python's round); the first attempt
      with 0 < w_k <= W and 0 < h_k <= H wins, at offsets y ~ {0..H-h}, x ~ {0..W-w} uniformly. No attempt fits:
      W/H < min(ratio): w = W, h = round(W / min(ratio)); W/H > max(ratio): h = H, w = round(H max(ratio)); else
      the whole image; centred at ((H - h) // 2, (W - w) // 2). Then resize to size x size.
  resize: bilinear with antialiasing (a triangle filter stretched by the downscale factor; see Decisions).
  flip: x[:, ::-1].
  brightness(f) = clip(f x, 0, 1),                          f ~ U[max(0, 1 - b), 1 + b]
  contrast(f)   = clip(f x + (1 - f) mean(gray(x)), 0, 1),  f ~ U[max(0, 1 - c), 1 + c]  (mean over all pixels)
  saturation(f) = clip(f x + (1 - f) gray(x), 0, 1),        f ~ U[max(0, 1 - s), 1 + s]
  hue(d): x to HSV, hue <- (hue + d) mod 1, back to RGB,    d ~ U[-h, h]  (h <= 0.5, a fraction of the hue circle)
  color_jitter(b, c, s, h): those four (ops of strength 0 skipped) in a uniformly random order per example.
  gray(x) = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2 luma); grayscale(x) replicates it to 3 channels.
  gaussian_blur(sigma): g_i = exp(-i^2 / (2 sigma^2)) / sum_j exp(-j^2 / (2 sigma^2)), i = -r..r, applied along
      columns then rows (separable); 2r + 1 = blur_kernel_size(side) = 2 floor(floor(side / 10) / 2) + 1 (23 at 224:
      SimCLR's 10 % of the side, made odd); reflect padding (x[-i] = x[i], the edge pixel not repeated);
      sigma ~ U[0.1, 2.0] in pixels of the augmentation resolution.
  rotate(k) = np.rot90(x, k): counter-clockwise by 90 k degrees; RotNet's label is k = 0..3.
  random_apply(op, p): op(x) if u < p, u ~ U[0, 1), else x.
A view (ViewAugmentation.view): crop to augment_size, flip (p 1/2), jitter (p) and grayscale (p) in the recipe's
order, blur (p), resize to output_size (the 64 px stream: augment at 224, then downsample), clip to [0, 1], normalise.

Decisions:
  * Bilinear antialiased resizing: the [C] pipeline runs torchvision on PIL images, whose bilinear resize is
    antialiased; TF's `resize(antialias=True)` is the same triangle filter. (The supervised ResNet pipeline,
    image_preprocessing.py, is bicubic after the TF reference.) Its weights are non-negative, so values stay in
    [0, 1]. Everything stays float32 (PIL rounds to uint8 after every op).
  * JPEG bytes: only the crop window is decoded (image_preprocessing.decode_and_crop). For 4:2:0 chroma subsampling
    (most ImageNet files) the window's edge pixels can differ by a few 1/255 from cropping the whole decode.
  * Jitter follows torchvision's tensor formulas above (PIL's ImageEnhance rounds the contrast mean to an integer),
    with the ITU-R 601-2 luma weights throughout (torchvision's tensor grayscale weights red 0.2989).
  * Keras ops are used where exact: `keras.ops.image.resize`, `keras.ops.flip`, `keras.ops.rot90`. The hue shift is
    `tf.image.adjust_hue`: the same HSV rotation as `keras.ops.image.rgb_to_hsv` + mod 1 + `hsv_to_rgb`, in one
    fused kernel, twice as fast on CPU (0.9 instead of 1.9 ms at 224 px). Written here instead: grayscale (Keras and
    tf.image weight red 0.2989, not 0.299); the contrast and saturation blends (Keras' RandomContrast blends with
    per-channel means); the blur (`keras.ops.image.gaussian_blur` pads with zeros and convolves with the full 2-D
    kernel: 7 ms instead of 1.3 ms at 224 px with 23 taps); the crop sampler (Keras has no torchvision-style one).
    Keras' preprocessing layers (RandomColorJitter, RandomGrayscale, RandomFlip, ...) draw from a stateful
    SeedGenerator, so their output is not a pure function of (seed, example index) and a resumed run would differ.
"""

# h/w: space, s: side, v: views; a window is (offset_y, offset_x, height, width) in pixels
import dataclasses
import functools
import math
from typing import Callable

import keras
import tensorflow as tf

from goaldriven.tasks import image_preprocessing as preprocessing

CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
CROP_ATTEMPTS = 10
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
BLUR_SIGMA = (0.1, 2.0)
NUM_ROTATIONS = 4  # 0, 90, 180, 270 degrees; label k = rotation by 90 k degrees


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bilinear antialiased resize of (h, w, 3) to (size, size, 3)."""
    resized = keras.ops.image.resize(image, (size, size), interpolation="bilinear", antialias=True)
    return tf.ensure_shape(resized, [size, size, 3])


def to_unit_range(image: tf.Tensor) -> tf.Tensor:
    """float32 (h, w, 3) in [0, 1] from encoded bytes, uint8 (h, w, c) or float (h, w, 3) already in [0, 1]."""
    image = tf.convert_to_tensor(image)
    if image.dtype.is_floating:
        return tf.cast(image, tf.float32)
    whole = preprocessing.decode_and_crop(image, lambda shape: (0, 0, shape[0], shape[1]))
    return tf.cast(whole, tf.float32) / 255.0


def random_resized_crop_window(
    shape: tf.Tensor, seed: tf.Tensor, *, scale=CROP_SCALE, ratio=CROP_RATIO, attempts: int = CROP_ATTEMPTS
) -> preprocessing.Window:
    """torchvision's RandomResizedCrop window (module docstring) for an image of shape (h, w, ...); int32."""
    area_seed, ratio_seed, y_seed, x_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    area = height * width * tf.random.stateless_uniform([attempts], area_seed, scale[0], scale[1], tf.float64)
    log_ratio = tf.random.stateless_uniform([attempts], ratio_seed, math.log(ratio[0]), math.log(ratio[1]), tf.float64)
    aspect = tf.exp(log_ratio)
    w = tf.round(tf.sqrt(area * aspect))  # (attempts,)
    h = tf.round(tf.sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32))  # the first fitting attempt (0 when none fits)
    h, w = h[first], w[first]
    y = tf.floor(tf.random.stateless_uniform([attempts], y_seed, dtype=tf.float64)[first] * (height - h + 1))
    x = tf.floor(tf.random.stateless_uniform([attempts], x_seed, dtype=tf.float64)[first] * (width - w + 1))
    # Fallback: the centred crop of the whole image, clipped to the ratio range.
    in_ratio = width / height
    fallback_h = tf.where(in_ratio < ratio[0], tf.round(width / ratio[0]), height)
    fallback_w = tf.where(in_ratio > ratio[1], tf.round(height * ratio[1]), width)
    found = tf.reduce_any(fits)
    h, w = tf.where(found, h, fallback_h), tf.where(found, w, fallback_w)
    y = tf.where(found, y, tf.floor((height - h) / 2))
    x = tf.where(found, x, tf.floor((width - w) / 2))
    return tuple(tf.cast(v, tf.int32) for v in (y, x, h, w))


def random_resized_crop(image: tf.Tensor, seed: tf.Tensor, *, size: int, scale=CROP_SCALE, ratio=CROP_RATIO):
    """Random resized crop to float32 (size, size, 3) in [0, 1].

    `image` is encoded bytes (JPEG: only the crop window is decoded), uint8 (h, w, c) or float (h, w, 3) in [0, 1].
    """
    image = tf.convert_to_tensor(image)
    window_fn = functools.partial(random_resized_crop_window, seed=seed, scale=scale, ratio=ratio)
    if image.dtype.is_floating:
        offset_y, offset_x, height, width = window_fn(tf.shape(image))
        cropped = tf.slice(tf.cast(image, tf.float32), tf.stack([offset_y, offset_x, 0]), tf.stack([height, width, 3]))
    else:
        cropped = tf.cast(preprocessing.decode_and_crop(image, window_fn), tf.float32) / 255.0  # (h', w', 3)
    return resize(cropped, size)


def random_apply(op: Callable[[tf.Tensor], tf.Tensor], image: tf.Tensor, seed: tf.Tensor, probability: float):
    """op(image) with probability `probability`, else image (only the chosen branch runs)."""
    if probability <= 0:
        return image
    if probability >= 1:
        return op(image)
    apply = tf.random.stateless_uniform([], seed) < probability
    return tf.cond(apply, lambda: op(image), lambda: tf.identity(image))


def flip_left_right(image: tf.Tensor) -> tf.Tensor:
    return keras.ops.flip(image, axis=1)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Horizontal flip with probability 1/2."""
    return random_apply(flip_left_right, image, seed, 0.5)


def gray(image: tf.Tensor) -> tf.Tensor:
    """ITU-R 601-2 luma (h, w, 1) of an RGB image (h, w, 3)."""
    return tf.tensordot(image, tf.constant(LUMA_WEIGHTS, image.dtype), axes=[[-1], [0]])[..., None]


def grayscale(image: tf.Tensor) -> tf.Tensor:
    """The luma replicated to 3 channels."""
    return tf.tile(gray(image), [1, 1, 3])


def adjust_brightness(image: tf.Tensor, factor) -> tf.Tensor:
    return tf.clip_by_value(image * factor, 0.0, 1.0)


def adjust_contrast(image: tf.Tensor, factor) -> tf.Tensor:
    mean = tf.reduce_mean(gray(image))
    return tf.clip_by_value(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image: tf.Tensor, factor) -> tf.Tensor:
    return tf.clip_by_value(factor * image + (1.0 - factor) * gray(image), 0.0, 1.0)


def adjust_hue(image: tf.Tensor, shift) -> tf.Tensor:
    """Rotates the hue by `shift` (a fraction of the circle): TF's fused AdjustHue kernel (see Decisions)."""
    return tf.image.adjust_hue(image, shift)


def jitter_parameters(seed: tf.Tensor, strengths) -> tuple[tf.Tensor, tf.Tensor]:
    """ColorJitter's random draws for `strengths` = (b, c, s, h): factors (4,) float32 and order (4,) int32.

    factors = (brightness, contrast, saturation) ~ U[max(0, 1 - x), 1 + x] and the hue shift ~ U[-h, h]; order is a
    uniform permutation of the four adjustments (0 brightness, 1 contrast, 2 saturation, 3 hue).
    """
    factor_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    b, c, s, h = strengths
    low = tf.constant([max(0.0, 1.0 - b), max(0.0, 1.0 - c), max(0.0, 1.0 - s), -h], tf.float32)
    high = tf.constant([1.0 + b, 1.0 + c, 1.0 + s, h], tf.float32)
    factors = low + (high - low) * tf.random.stateless_uniform([4], factor_seed)
    return factors, tf.random.experimental.stateless_shuffle(tf.range(4), order_seed)


def apply_jitter(image: tf.Tensor, factors: tf.Tensor, order: tf.Tensor, strengths) -> tf.Tensor:
    """The four adjustments with `factors`, in `order`; those of strength 0 are skipped (only one branch runs)."""
    adjustments = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)

    def step(x, k):  # one adjustment; a fold traces the four branches once, not once per position
        branches = [
            functools.partial(op, x, factors[i]) if strengths[i] else functools.partial(tf.identity, x)
            for i, op in enumerate(adjustments)
        ]
        return tf.ensure_shape(tf.switch_case(k, branches), x.shape)

    return tf.foldl(step, order, initializer=image)


def color_jitter(image: tf.Tensor, seed: tf.Tensor, strengths) -> tf.Tensor:
    """torchvision ColorJitter(b, c, s, h) with `strengths` = (b, c, s, h): random factors in a random order."""
    return apply_jitter(image, *jitter_parameters(seed, strengths), strengths)


def blur_kernel_size(side: int) -> int:
    """The blur kernel side for an image side: about 10 % of it, odd (23 at 224, 3 at 32)."""
    return 2 * ((side // 10) // 2) + 1


def gaussian_blur(image: tf.Tensor, sigma, kernel_size: int) -> tf.Tensor:
    """Separable Gaussian blur of (h, w, 3) with reflect padding; `kernel_size` odd and at most the smaller side."""
    radius = kernel_size // 2
    if radius == 0:
        return image
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    taps = tf.exp(-0.5 * tf.square(offsets / sigma))
    taps /= tf.reduce_sum(taps)  # (k,)
    padded = tf.pad(image[None], [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    columns = tf.tile(tf.reshape(taps, [kernel_size, 1, 1, 1]), [1, 1, 3, 1])  # (k, 1, 3, 1)
    rows = tf.tile(tf.reshape(taps, [1, kernel_size, 1, 1]), [1, 1, 3, 1])  # (1, k, 3, 1)
    blurred = tf.nn.depthwise_conv2d(padded, columns, strides=[1, 1, 1, 1], padding="VALID")
    blurred = tf.nn.depthwise_conv2d(blurred, rows, strides=[1, 1, 1, 1], padding="VALID")
    return blurred[0]


def random_gaussian_blur(image: tf.Tensor, seed: tf.Tensor, *, sigma=BLUR_SIGMA, kernel_size: int) -> tf.Tensor:
    """gaussian_blur with sigma ~ U[sigma]."""
    drawn = tf.random.stateless_uniform([], seed, sigma[0], sigma[1])
    return gaussian_blur(image, drawn, kernel_size)


def rotate(image: tf.Tensor, k: int) -> tf.Tensor:
    """np.rot90(image, k): counter-clockwise by 90 k degrees."""
    return keras.ops.rot90(image, k=k, axes=(0, 1))


def rotations(image: tf.Tensor) -> tf.Tensor:
    """RotNet's four rotations of a square (s, s, 3) image: (4, s, s, 3); view k is rotated by 90 k degrees."""
    return tf.stack([rotate(image, k) for k in range(NUM_ROTATIONS)])


@dataclasses.dataclass(frozen=True)
class ViewAugmentation:
    """One objective's recipe for a view (module docstring); `view(image, seed)` draws one.

    Fields:
      crop_scale, crop_ratio: RandomResizedCrop area fraction and aspect ratio ranges.
      flip: random horizontal flip (p 1/2).
      jitter: ColorJitter strengths (brightness, contrast, saturation, hue); jitter_prob: its probability.
      grayscale_prob: RandomGrayscale probability; grayscale_before_jitter: instance recognition's order.
      blur_prob, blur_sigma: Gaussian blur probability and sigma range (pixels at augment_size).
      augment_size: the crop's side (224); output_size: the view's side after the final resize (64; equal: none).
      mean, std: the per-channel normalisation of the output.
    """

    crop_scale: tuple[float, float] = CROP_SCALE
    crop_ratio: tuple[float, float] = CROP_RATIO
    flip: bool = True
    jitter: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    jitter_prob: float = 0.0
    grayscale_prob: float = 0.0
    grayscale_before_jitter: bool = False
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = BLUR_SIGMA
    augment_size: int = 224
    output_size: int = 64
    mean: tuple[float, float, float] = preprocessing.IMAGENET_MEAN
    std: tuple[float, float, float] = preprocessing.IMAGENET_STD

    def __post_init__(self):
        for name in ("crop_scale", "crop_ratio", "jitter", "blur_sigma", "mean", "std"):  # gin passes lists
            object.__setattr__(self, name, tuple(float(x) for x in getattr(self, name)))
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1. Received: {self.crop_scale}")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high. Received: {self.crop_ratio}")
        if len(self.jitter) != 4 or min(self.jitter) < 0 or self.jitter[3] > 0.5:
            raise ValueError(f"jitter must be (b, c, s, h) >= 0 with h <= 0.5. Received: {self.jitter}")
        for name in ("jitter_prob", "grayscale_prob", "blur_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]. Received: {getattr(self, name)}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high. Received: {self.blur_sigma}")
        for name in ("augment_size", "output_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int (224, 64, ...). Received: {value!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels, std > 0. Received: {self.mean}, {self.std}")

    def view(self, image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """One normalised view float32 (output_size, output_size, 3) of encoded bytes, uint8 or [0, 1] float."""
        crop, flip, jitter_on, jitter, gray_on, blur_on, blur = tf.unstack(
            tf.random.experimental.stateless_split(seed, 7)
        )
        x = random_resized_crop(image, crop, size=self.augment_size, scale=self.crop_scale, ratio=self.crop_ratio)
        if self.flip:
            x = random_flip(x, flip)
        jitter_op = functools.partial(color_jitter, seed=jitter, strengths=self.jitter)
        colour = [
            lambda x: random_apply(jitter_op, x, jitter_on, self.jitter_prob if any(self.jitter) else 0.0),
            lambda x: random_apply(grayscale, x, gray_on, self.grayscale_prob),
        ]
        for op in reversed(colour) if self.grayscale_before_jitter else colour:
            x = op(x)
        blur_op = functools.partial(
            random_gaussian_blur, seed=blur, sigma=self.blur_sigma, kernel_size=blur_kernel_size(self.augment_size)
        )
        x = random_apply(blur_op, x, blur_on, self.blur_prob)
        if self.output_size != self.augment_size:
            x = resize(x, self.output_size)
        x = tf.clip_by_value(x, 0.0, 1.0)
        return tf.ensure_shape(preprocessing.normalize(x, self.mean, self.std), [self.output_size] * 2 + [3])


def evaluation_view(
    image: tf.Tensor,
    *,
    resize_size: int = 256,
    crop_size: int = 224,
    output_size: int = 64,
    mean=preprocessing.IMAGENET_MEAN,
    std=preprocessing.IMAGENET_STD,
) -> tf.Tensor:
    """Resize the shorter side to resize_size, centre-crop crop_size, resize to output_size, normalise.

    torchvision's Resize(256) + CenterCrop(224) + Resize(64): longer side floor(resize_size * long / short); crop
    offsets round((side - crop_size) / 2) (half to even). Returns float32 (output_size, output_size, 3).
    """
    if not 1 <= crop_size <= resize_size:
        raise ValueError(f"need 1 <= crop_size <= resize_size. Received: {crop_size}, {resize_size}")
    pixels = to_unit_range(image)  # (h, w, 3)
    shape = tf.cast(tf.shape(pixels), tf.float64)
    short = tf.minimum(shape[0], shape[1])
    target = tf.constant(resize_size, tf.float64)
    height = tf.where(shape[0] <= shape[1], target, tf.floor(target * shape[0] / short))
    width = tf.where(shape[1] < shape[0], target, tf.floor(target * shape[1] / short))
    size = tf.cast(tf.stack([height, width]), tf.int32)
    resized = tf.image.resize(pixels, size, method="bilinear", antialias=True)  # dynamic size: Keras needs a tuple
    top = tf.cast(tf.round((height - crop_size) / 2), tf.int32)
    left = tf.cast(tf.round((width - crop_size) / 2), tf.int32)
    cropped = tf.slice(resized, tf.stack([top, left, 0]), [crop_size, crop_size, 3])
    result = tf.clip_by_value(resize(cropped, output_size) if output_size != crop_size else cropped, 0.0, 1.0)
    return preprocessing.normalize(result, mean, std)


SUPERVISED = ViewAugmentation()  # RandomResizedCrop(224) + flip, then Resize(64) [C]
ROTNET = SUPERVISED
SIMCLR = ViewAugmentation(jitter=(0.8, 0.8, 0.8, 0.2), jitter_prob=0.8, grayscale_prob=0.2, blur_prob=0.5)
MOCO_V2 = ViewAugmentation(
    crop_scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), jitter_prob=0.8, grayscale_prob=0.2, blur_prob=0.5
)
SIMSIAM = MOCO_V2
INSTANCE_RECOGNITION = ViewAugmentation(
    crop_scale=(0.2, 1.0),
    jitter=(0.4, 0.4, 0.4, 0.4),
    jitter_prob=1.0,
    grayscale_prob=0.2,
    grayscale_before_jitter=True,
)
PRESETS = {
    "supervised": SUPERVISED,
    "rotnet": ROTNET,
    "simclr": SIMCLR,
    "moco_v2": MOCO_V2,
    "simsiam": SIMSIAM,
    "instance_recognition": INSTANCE_RECOGNITION,
}


def preset(name: str, **overrides) -> ViewAugmentation:
    """The preset recipe `name` (PRESETS keys), with fields replaced by `overrides` (e.g. output_size=224)."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; known: {sorted(PRESETS)}.")
    return dataclasses.replace(PRESETS[name], **overrides)
