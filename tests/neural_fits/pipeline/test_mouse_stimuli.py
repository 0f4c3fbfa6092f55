"""The Chapter 3 presentations of the Allen scenes (spec ch3 A2.6) against an independent NumPy resize: shorter side
to 64 (64 x 81 from 918 x 1174) and resize 256 -> centre crop 224 -> 64; grey -> 3 channels; ImageNet mean / std."""

import numpy as np
import pytest

from goaldriven.neural_fits.pipeline import stimuli
from goaldriven.neural_fits.pipeline.stimuli import PresentedInput, StimulusTransform
from goaldriven.tasks.base import InputSpec
from goaldriven.tasks.self_supervised import augment

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) antialiased bilinear weights: a triangle of half-width max(1, n_in / n_out) input pixels around
    each output pixel's centre (i + 0.5) n_in / n_out - 0.5, renormalised over the pixels inside the image."""
    scale = n_in / n_out
    width = max(1.0, scale)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centres[:, None]) / width)
    return w / w.sum(axis=1, keepdims=True)


def _numpy_resize(x: np.ndarray, hw) -> np.ndarray:
    """(h, w) -> hw by separable weights (an independent implementation of the antialiased bilinear resize)."""
    return _weights(x.shape[0], hw[0]) @ x @ _weights(x.shape[1], hw[1]).T


def _normalise(grey: np.ndarray) -> np.ndarray:
    return (grey[..., None] - MEAN) / STD


def _scene(h=92, w=117, seed=0):
    """A small scene of the Allen aspect ratio (918 x 1174 / 10), smooth plus noise, uint8 grey."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = 0.5 + 0.4 * np.sin(yy / 9.0) * np.cos(xx / 13.0)
    return np.clip(255 * (smooth + 0.05 * rng.standard_normal((h, w))), 0, 255).astype(np.uint8)


def test_output_sizes_of_the_allen_scenes():
    assert StimulusTransform(64, resize="shorter_side").output_hw(918, 1174) == (64, 81)
    assert stimuli.shorter_side_hw(918, 1174, 256) == (256, 327)
    assert stimuli.center_crop_offsets(256, 327, 224) == (16, 52)  # round(51.5) = 52 (half to even)
    assert StimulusTransform(64, resize="center_crop").output_hw(918, 1174) == (64, 64)


def test_shorter_side_matches_numpy():
    scene = _scene()
    out = StimulusTransform(32, resize="shorter_side")(scene[None, :, :, None]).numpy()[0]
    assert out.shape == (32, 40, 3)  # floor(32 * 117 / 92) = 40
    expected = _normalise(_numpy_resize(scene / 255.0, (32, 40)))
    np.testing.assert_allclose(out, expected, atol=2e-4)


def test_center_crop_matches_numpy_and_the_training_evaluation_view():
    scene = _scene()
    transform = StimulusTransform(16, resize="center_crop", resize_size=40, crop_size=32)
    out = transform(scene[None, :, :, None]).numpy()[0]
    big = _numpy_resize(scene / 255.0, (40, 50))  # floor(40 * 117 / 92) = 50
    top, left = 4, 9  # (40 - 32) / 2 and (50 - 32) / 2
    expected = _normalise(_numpy_resize(big[top : top + 32, left : left + 32], (16, 16)))
    np.testing.assert_allclose(out, expected, atol=2e-4)
    rgb = np.repeat(scene[:, :, None], 3, axis=-1)
    view = augment.evaluation_view(rgb, resize_size=40, crop_size=32, output_size=16).numpy()
    np.testing.assert_allclose(out, view, atol=1e-4)


def test_square_stays_the_default_and_the_spec_sets_the_mode():
    scene = _scene()[None, :, :, None]
    assert StimulusTransform(16)(scene).shape == (1, 16, 16, 3)
    spec = InputSpec(image_size=64, pixel_mean=(0.485, 0.456, 0.406), pixel_std=(0.229, 0.224, 0.225))
    assert StimulusTransform.for_input(spec).resize == "square"
    cifar = StimulusTransform.for_input(PresentedInput.chapter3(spec, "cifar10"))
    assert (cifar.resize, cifar.output_hw(918, 1174)) == ("shorter_side", (64, 81))
    assert StimulusTransform.for_input(PresentedInput.chapter3(spec, "imagenet")).resize == "center_crop"
    with pytest.raises(ValueError, match="resize must be one of"):
        StimulusTransform(64, resize="stretch")
    with pytest.raises(ValueError, match="trained_on"):
        PresentedInput.chapter3(spec, "mnist")
