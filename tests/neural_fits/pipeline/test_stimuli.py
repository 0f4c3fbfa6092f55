"""The stimulus transform against NumPy (and from a task's InputSpec), and the presentation schedule in ms."""

import numpy as np
import pytest

from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform
from goaldriven.tasks.base import InputSpec


def test_transform_matches_numpy():
    pixels = np.random.default_rng(1).integers(0, 256, size=(2, 8, 8, 1), dtype=np.uint8)
    out = StimulusTransform(8, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))(pixels).numpy()
    expected = (np.repeat(pixels / 255.0, 3, axis=-1) - np.array([0.1, 0.2, 0.3])) / np.array([0.5, 0.25, 2.0])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert StimulusTransform(16)(pixels).shape == (2, 16, 16, 3)


def test_presentation_maps_milliseconds_to_steps():
    schedule = Presentation(times=26, image_on=10, step_ms=10.0)
    assert schedule.step_of(60.0) == 6 and schedule.step_of(69.9) == 6 and schedule.step_of(70.0) == 7
    assert schedule.steps_in(70.0, 170.0) == list(range(7, 17))
    with pytest.raises(ValueError, match="image_on"):
        Presentation(times=5, image_on=6)


def test_transform_follows_the_task_input_spec():
    spec = InputSpec(image_size=12, pixel_mean=0.5, pixel_std=0.25)
    transform = StimulusTransform.for_input(spec)
    assert (transform.image_size, transform.mean, transform.std) == (12, 0.5, 0.25)
    pixels = np.full((1, 12, 12, 1), 0.75, np.float32)
    np.testing.assert_allclose(transform(pixels).numpy(), np.ones((1, 12, 12, 3)), rtol=1e-6)
