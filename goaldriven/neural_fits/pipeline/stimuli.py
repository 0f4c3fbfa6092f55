"""What a model is shown: the presentation schedule of a recurrent model, and stimuli normalised as its task trained it.

Reference: thesis Section 2.5.6 and spec ch2 8.1, 12 (A-1..A-3). A ConvRNN sees the image for `image_on` steps and
then the blank frame (the model's `blank_value`), `times` steps in all: 10 on + 16 blank = 26 steps (t = 0..25) for
the Majaj et al. 2015 fits, model step t covering [t * step_ms, (t + 1) * step_ms) ms after image onset (A-2: index
the model by milliseconds, never by array position). A feedforward model sees the image once.

Stimuli are pixels: (n, h, w, c) uint8 in 0..255 or float in [0, 1], c = 1 or 3. `StimulusTransform` turns them into
the model's input: grey -> 3 channels, bilinear resize (antialiased when shrinking) to the model's image size, then
(x - mean) / std with the constants of the task the model was trained on (`StimulusTransform.for_input(task.input_spec)`;
ImageNet's by default; digits: 0.5, 0.25).

Resize modes (`resize`; thesis Section 3.6.2, spec ch3 A2.6: the model's validation transform):
  square        the whole image to (s, s) (the default; the aspect ratio is not kept)
  shorter_side  the shorter side to s, the longer to floor(s * long / short) (torchvision Resize(s)): CIFAR-10-trained
                mouse models see the 918 x 1174 Allen scenes as 64 x 81
  center_crop   the shorter side to `resize_size` (256), the centre `crop_size` square (224; offsets round((side -
                crop) / 2), half to even, as torchvision's CenterCrop), then to (s, s): ImageNet-trained mouse models
Every resize is bilinear, antialiased when shrinking (as PIL and augment.resize). The output sizes are computed in
NumPy from the static input shape (`output_hw`), so a batch keeps static shapes.
"""

# n: stimuli, b: batch, h/w: space, c: channels, s: the model's image size
import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from goaldriven.tasks import image_preprocessing


@dataclasses.dataclass(frozen=True)
class Presentation:
    """The stimulus schedule of a recurrent model: `image_on` steps of image, then blank, `times` steps in all."""

    times: int = 26
    image_on: int = 10
    step_ms: float = 10.0

    def __post_init__(self):
        if self.times < 1 or not 0 < self.image_on <= self.times:
            raise ValueError(f"need times >= 1 and 0 < image_on <= times. Received: {self}")
        if self.step_ms <= 0:
            raise ValueError(f"step_ms must be > 0. Received: {self.step_ms}")

    def step_of(self, time_ms: float) -> int:
        """The model step whose interval [t * step_ms, (t + 1) * step_ms) contains `time_ms`."""
        return int(np.floor(time_ms / self.step_ms + 1e-9))

    def steps_in(self, start_ms: float, end_ms: float) -> list[int]:
        """Model steps whose intervals lie inside [start_ms, end_ms) (at least the step containing start_ms)."""
        first, last = self.step_of(start_ms), max(self.step_of(end_ms - 1e-6), self.step_of(start_ms))
        return list(range(first, last + 1))


RESIZE_MODES = ("square", "shorter_side", "center_crop")


@dataclasses.dataclass(frozen=True)
class StimulusTransform:
    """Pixels (b, h, w, c) in [0, 1] or uint8 -> the model's normalised (b, h', w', 3) float32 input (module docstring:
    (s, s) for `resize` "square" and "center_crop", the shorter side s for "shorter_side")."""

    image_size: int
    mean: float | Sequence[float] = image_preprocessing.IMAGENET_MEAN
    std: float | Sequence[float] = image_preprocessing.IMAGENET_STD
    resize: str = "square"
    resize_size: int = 256  # center_crop: the shorter side before the crop
    crop_size: int = 224  # center_crop: the centre square kept

    def __post_init__(self):
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}. Received: {self.resize!r}")
        if self.resize == "center_crop" and not 1 <= self.crop_size <= self.resize_size:
            raise ValueError(f"need 1 <= crop_size <= resize_size. Received: {self.crop_size}, {self.resize_size}")

    def output_hw(self, height: int, width: int) -> tuple[int, int]:
        """The model input's (h', w') for stimuli of (height, width)."""
        if self.resize == "shorter_side":
            return shorter_side_hw(height, width, self.image_size)
        return self.image_size, self.image_size

    def __call__(self, pixels) -> tf.Tensor:
        x = tf.convert_to_tensor(pixels)
        x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
        if x.shape[-1] == 1:
            x = tf.tile(x, [1, 1, 1, 3])
        height, width = int(x.shape[1]), int(x.shape[2])
        if self.resize == "center_crop":
            x = _resize(x, shorter_side_hw(height, width, self.resize_size))
            top, left = center_crop_offsets(int(x.shape[1]), int(x.shape[2]), self.crop_size)
            x = x[:, top : top + self.crop_size, left : left + self.crop_size]
        x = _resize(x, self.output_hw(height, width))
        mean = tf.constant(self.mean, tf.float32)
        std = tf.constant(self.std, tf.float32)
        return (x - mean) / std

    @classmethod
    def for_input(cls, spec) -> "StimulusTransform":
        """The transform of a task's `input_spec` (goaldriven.tasks.base.InputSpec: image size and normalisation); a
        spec with `resize` (PresentedInput) also sets the resize mode."""
        extra = {k: getattr(spec, k) for k in ("resize", "resize_size", "crop_size") if hasattr(spec, k)}
        return cls(spec.image_size, spec.pixel_mean, spec.pixel_std, **extra)


@dataclasses.dataclass(frozen=True)
class PresentedInput:
    """An InputSpec (image size, pixel mean / std) with the resize mode of the stimuli (`StimulusTransform.for_input`
    honours it): pass it as `input_spec` with a model to fit_checkpoint to present the stimuli the Chapter 3 way."""

    image_size: int
    pixel_mean: float | tuple[float, ...] = image_preprocessing.IMAGENET_MEAN
    pixel_std: float | tuple[float, ...] = image_preprocessing.IMAGENET_STD
    resize: str = "square"
    resize_size: int = 256
    crop_size: int = 224

    @classmethod
    def chapter3(cls, spec, trained_on: str) -> "PresentedInput":
        """The validation transform of a Chapter 3 model trained on `trained_on` ("imagenet": resize 256, crop 224,
        resize to the spec's size; "cifar10": the shorter side to the spec's size) with the spec's normalisation."""
        modes = {"imagenet": "center_crop", "cifar10": "shorter_side", "none": "square"}
        if trained_on not in modes:
            raise ValueError(f"trained_on must be one of {tuple(modes)}. Received: {trained_on!r}")
        return cls(spec.image_size, spec.pixel_mean, spec.pixel_std, resize=modes[trained_on])


def shorter_side_hw(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision Resize(size): the shorter side to `size`, the longer to floor(size * long / short)."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def center_crop_offsets(height: int, width: int, crop: int) -> tuple[int, int]:
    """torchvision CenterCrop: (top, left) = round((side - crop) / 2), half to even."""
    if crop > min(height, width):
        raise ValueError(f"cannot centre-crop {crop} px from a {height} x {width} image; lower crop_size.")
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


def _resize(x: tf.Tensor, hw: tuple[int, int]) -> tf.Tensor:
    if tuple(x.shape[1:3]) == tuple(hw):
        return x
    return tf.image.resize(x, hw, method="bilinear", antialias=True)


def check_stimuli(stimuli) -> None:
    """Raises ValueError naming the problem when `stimuli` is not (n, h, w, 1|3) uint8 or float pixels in [0, 1]."""
    shape = tuple(stimuli.shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ValueError(f"stimuli must be pixels (n, h, w, 1 or 3); received shape {shape}.")
    if np.dtype(stimuli.dtype) == np.uint8:
        return
    if not np.issubdtype(np.dtype(stimuli.dtype), np.floating):
        raise ValueError(f"stimuli must be uint8 (0..255) or float in [0, 1]; received dtype {stimuli.dtype}.")
    sample = np.asarray(stimuli[: min(shape[0], 64)])
    if not np.all(np.isfinite(sample)) or sample.min() < -1e-6 or sample.max() > 1 + 1e-6:
        raise ValueError(
            f"float stimuli must be pixels in [0, 1] (the transform normalises them); the first images span "
            f"[{np.nanmin(sample):.3g}, {np.nanmax(sample):.3g}]. Divide uint8 images by 255, or store them as uint8."
        )
