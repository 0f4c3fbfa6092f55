"""What a model is shown: the presentation schedule of a recurrent model, and stimuli normalised as its task trained it.

Reference: thesis Section 2.5.6 and spec ch2 8.1, 12 (A-1..A-3). A ConvRNN sees the image for `image_on` steps and
then the blank frame (the model's `blank_value`), `times` steps in all: 10 on + 16 blank = 26 steps (t = 0..25) for
the Majaj et al. 2015 fits, model step t covering [t * step_ms, (t + 1) * step_ms) ms after image onset (A-2: index
the model by milliseconds, never by array position). A feedforward model sees the image once.

Stimuli are pixels: (n, h, w, c) uint8 in 0..255 or float in [0, 1], c = 1 or 3. `StimulusTransform` turns them into
the model's input: grey -> 3 channels, bilinear resize (antialiased when shrinking) to the model's image size, then
(x - mean) / std with the constants of the task the model was trained on (`StimulusTransform.for_input(task.input_spec)`;
ImageNet's by default; digits: 0.5, 0.25).
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


@dataclasses.dataclass(frozen=True)
class StimulusTransform:
    """Pixels (b, h, w, c) in [0, 1] or uint8 -> the model's normalised (b, s, s, 3) float32 input."""

    image_size: int
    mean: float | Sequence[float] = image_preprocessing.IMAGENET_MEAN
    std: float | Sequence[float] = image_preprocessing.IMAGENET_STD

    def __call__(self, pixels) -> tf.Tensor:
        x = tf.convert_to_tensor(pixels)
        x = tf.cast(x, tf.float32) / 255.0 if x.dtype == tf.uint8 else tf.cast(x, tf.float32)
        if x.shape[-1] == 1:
            x = tf.tile(x, [1, 1, 1, 3])
        if tuple(x.shape[1:3]) != (self.image_size, self.image_size):
            x = tf.image.resize(x, (self.image_size, self.image_size), method="bilinear", antialias=True)
        mean = tf.constant(self.mean, tf.float32)
        std = tf.constant(self.std, tf.float32)
        return (x - mean) / std

    @classmethod
    def for_input(cls, spec) -> "StimulusTransform":
        """The transform of a task's `input_spec` (goaldriven.tasks.base.InputSpec): image size and normalisation."""
        return cls(spec.image_size, spec.pixel_mean, spec.pixel_std)


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
