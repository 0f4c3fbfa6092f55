"""Feature extraction: equals calling the model directly, under any strategy, streamed to disk, resumable, cached."""

import os

import numpy as np
import pytest

from goaldriven.models import zoo
from goaldriven.neural_fits.pipeline import extraction
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation, StimulusTransform
from tests import strategies


def _stimuli(n=11, size=8, channels=1, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, channels)).astype(np.float32)


def _quiet(_):
    pass


@pytest.fixture(scope="module")
def resnet():
    return zoo.build_model("small_resnet8", num_classes=4, image_size=8)


@pytest.mark.parametrize(
    "stimuli, message",
    [
        (np.zeros((2, 8, 8), np.float32), r"\(n, h, w, 1 or 3\)"),
        (np.full((2, 8, 8, 3), 2.0, np.float32), r"pixels in \[0, 1\]"),
        (np.zeros((2, 8, 8, 3), np.int32), "uint8"),
    ],
)
def test_bad_stimuli_are_refused_with_the_fix(stimuli, message, resnet):
    with pytest.raises(ValueError, match=message):
        extraction.extract_features(resnet, stimuli, transform=StimulusTransform(8), log=_quiet)


def test_feedforward_features_equal_the_model_and_pad_the_last_batch(resnet):
    x = _stimuli()
    transform = StimulusTransform(8, 0.5, 0.25)
    store = extraction.extract_features(resnet, x, transform=transform, global_batch_size=4, log=_quiet)
    direct = resnet(transform(x), training=False)["features"]
    assert set(store.layers) == set(direct)
    for name in store.layers:
        assert store[name].shape == (11, 1, *direct[name].shape[1:])
        np.testing.assert_allclose(store[name][:, 0], direct[name].numpy(), rtol=1e-5, atol=1e-5)
    flat = store.layer("pool").flat()
    np.testing.assert_allclose(flat, direct["pool"].numpy().reshape(11, -1), rtol=1e-5, atol=1e-5)


def test_mirrored_strategy_gives_the_same_features(resnet):
    x = _stimuli(n=7)
    transform = StimulusTransform(8)
    one = extraction.extract_features(resnet, x, transform=transform, layers=["pool"], global_batch_size=4, log=_quiet)
    strategy = strategies.mirrored()
    with strategy.scope():
        model = zoo.build_model("small_resnet8", num_classes=4, image_size=8)
        model(transform(x[:1]), training=False)
    model.set_weights(resnet.get_weights())
    two = extraction.extract_features(
        model, x, transform=transform, layers=["pool"], global_batch_size=4, strategy=strategy, log=_quiet
    )
    np.testing.assert_allclose(two["pool"], one["pool"], rtol=1e-5, atol=1e-6)


def test_convrnn_features_follow_the_presentation_schedule():
    model = zoo.build_model("timedecay_shallow", num_classes=4, image_size=32, width_multiplier=1 / 16)
    x = _stimuli(n=3, size=32, channels=3)
    transform = StimulusTransform(32)
    schedule = Presentation(times=8, image_on=3)
    store = extraction.extract_features(
        model, x, transform=transform, layers=["conv2", "conv5"], presentation=schedule, log=_quiet
    )
    direct = model(transform(x), training=False, times=8, image_off=3, feature_layers=("conv2", "conv5"))
    for name in ("conv2", "conv5"):
        assert store[name].shape[1] == 8
        np.testing.assert_allclose(store[name], direct["features"][name].numpy(), rtol=1e-5, atol=1e-5)
    # The blank after step 3 changes conv2's response (an image shown throughout would keep it on).
    constant = model(transform(x), training=False, times=8, image_off=8, feature_layers=("conv2",))
    assert not np.allclose(store["conv2"][:, 6], constant["features"]["conv2"].numpy()[:, 6])
    np.testing.assert_allclose(store.layer("conv2").flat([2, 4]), store["conv2"][:, [2, 4]].mean(axis=1).reshape(3, -1))


class _FailingStimuli:
    """Pixels that raise on the `fail_at`-th batch read (an interrupted extraction)."""

    def __init__(self, array, fail_at):
        self.array, self.fail_at, self.reads = array, fail_at, 0
        self.shape, self.dtype = array.shape, array.dtype

    def __getitem__(self, index):
        if isinstance(index, slice) and index.stop - (index.start or 0) == 4:
            self.reads += 1
            if self.reads == self.fail_at:
                raise KeyboardInterrupt("simulated interruption")
        return self.array[index]


def test_streamed_features_resume_after_an_interruption(resnet, tmp_path):
    x = _stimuli(n=10)
    transform = StimulusTransform(8)
    path = str(tmp_path / "features.h5")
    with pytest.raises(KeyboardInterrupt):
        extraction.extract_features(
            resnet, _FailingStimuli(x, fail_at=3), transform=transform, global_batch_size=4, out_path=path, log=_quiet
        )
    assert not os.path.exists(path) and os.path.exists(path + ".partial")
    with pytest.raises(FileNotFoundError, match="interrupted"):
        FeatureStore.open(path)
    lines = []
    store = extraction.extract_features(
        resnet, x, transform=transform, global_batch_size=4, out_path=path, log=lines.append
    )
    assert any("resuming" in line and "at stimulus 8" in line for line in lines)
    direct = resnet(transform(x), training=False)["features"]
    for name in store.layers:
        np.testing.assert_allclose(store[name][:, 0], direct[name].numpy(), rtol=1e-5, atol=1e-5)
    written = store["pool"][...]
    store.close()
    # The complete file is the cache: the same stimuli, layers, schedule and checkpoint reuse it as it is ...
    lines = []
    again = extraction.extract_features(resnet, x, transform=transform, out_path=path, log=lines.append)
    assert lines == [f"features: reusing {path}"]
    np.testing.assert_array_equal(again["pool"][...], written)
    again.close()
    # ... other stimuli are refused (never overwritten) unless asked to extract again.
    with pytest.raises(FileExistsError, match="never overwritten"):
        extraction.extract_features(resnet, x[:6], transform=transform, out_path=path, log=_quiet)
    with pytest.raises(FileExistsError, match="never overwritten"):
        extraction.extract_features(resnet, x, transform=transform, out_path=path, checkpoint="other", log=_quiet)
    other = extraction.extract_features(
        resnet, x[:6], transform=transform, out_path=path, on_mismatch="extract", log=_quiet
    )
    assert len(other.stimulus_ids) == 6 and not os.path.exists(path + ".partial")
    other.close()
    with pytest.raises(ValueError, match="on_mismatch must be one of"):
        extraction.extract_features(resnet, x, transform=transform, out_path=path, on_mismatch="overwrite")
