"""The generated WSN stand-in: deterministic, class-balanced, null = noise only, SNR as requested, held-out speakers,
written in the WSN format and read back by the real reader."""

import collections

import numpy as np
import pytest

from goaldriven.audio import wsn_data, wsn_standin

TINY = wsn_standin.StandInSettings(
    num_words=3, num_train_speakers=2, num_test_speakers=2, duration=0.8, train_per_class=4, test_per_class=2
)


def _clips(settings, split):
    return [wsn_standin.make_clip(settings, split, i) for i in range(settings.num_examples(split))]


def test_clips_are_a_function_of_the_seed():
    a, b = wsn_standin.make_clip(TINY, "train", 5), wsn_standin.make_clip(TINY, "train", 5)
    np.testing.assert_array_equal(a["waveform"], b["waveform"])
    other = wsn_standin.StandInSettings(**{**TINY.__dict__, "seed": 1})
    assert not np.allclose(wsn_standin.make_clip(other, "train", 5)["waveform"], a["waveform"])
    assert not np.allclose(wsn_standin.make_clip(TINY, "train", 9)["waveform"], a["waveform"])


def test_splits_are_class_balanced_with_the_null_class_last():
    for split, per_class in (("train", 4), ("test", 2)):
        counts = collections.Counter(c["word"] for c in _clips(TINY, split))
        assert counts == {k: per_class for k in range(4)}
    assert TINY.null_label == 3 and TINY.num_classes == 4


def test_null_clips_are_noise_only_and_word_clips_hold_speech():
    for clip in _clips(TINY, "train"):
        wave = clip["waveform"].astype(np.float64)
        assert wave.shape == (6400,) and np.max(np.abs(wave)) <= 1.0
        np.testing.assert_allclose(np.sqrt(np.mean(wave**2)), TINY.rms, rtol=1e-3)
        if clip["word"] == TINY.null_label:
            assert not np.any(clip["speech"]) and clip["speaker"] == -1 and np.isnan(clip["snr_db"])
            assert clip["source"] in ("white", "pink")  # babble is made of words
            np.testing.assert_array_equal(clip["waveform"], clip["noise"])
        else:
            assert np.mean(clip["speech"].astype(np.float64) ** 2) > 0.05 * TINY.rms**2
            assert clip["source"] in wsn_standin.NOISE_KINDS and 0 <= clip["speaker"] < 2


def test_achieved_snr_is_the_requested_snr():
    settings = wsn_standin.StandInSettings(**{**TINY.__dict__, "snrs_db": (-5.0, 3.0, 12.0)})
    seen = set()
    for clip in _clips(settings, "train"):
        if clip["word"] == settings.null_label:
            continue
        speech, noise = clip["speech"].astype(np.float64), clip["noise"].astype(np.float64)
        achieved = 10.0 * np.log10(np.sum(speech**2) / np.sum(noise**2))
        assert achieved == pytest.approx(clip["snr_db"], abs=1e-3)
        np.testing.assert_allclose(clip["waveform"], speech + noise, atol=1e-6)
        seen.add(clip["snr_db"])
    assert seen <= {-5.0, 3.0, 12.0} and len(seen) >= 2


def test_words_differ_and_test_speakers_are_held_out():
    specs = [wsn_standin.word_spec(TINY, k) for k in range(3)]
    assert len({(s["vowels"].tobytes(), s["lengths"].tobytes()) for s in specs}) == 3
    train = [wsn_standin.speaker_spec(TINY, "train", s)["f0"] for s in range(2)]
    test = [wsn_standin.speaker_spec(TINY, "test", s)["f0"] for s in range(2)]
    assert not set(train) & set(test)


def test_standin_data_is_written_in_the_wsn_format_and_read_back(tmp_path):
    data = wsn_standin.WSNStandInData(TINY, cache_dir=str(tmp_path), num_shards=2)
    assert data.num_eval_examples() == 8 and data.num_classes == 4
    metadata = wsn_data.read_metadata(data.data_dir)
    assert "STAND-IN" in metadata["description"] and metadata["null_label"] == 3
    batches = list(data.eval_dataset(global_batch_size=4, input_context=None))
    waves = np.concatenate([b["waveforms"].numpy() for b in batches])
    labels = np.concatenate([b["labels"].numpy() for b in batches])
    expected = _clips(TINY, "test")
    by_label = collections.Counter(labels.tolist())
    assert by_label == {k: 2 for k in range(4)}
    for clip in expected:  # each generated clip is in the records, int16-quantised
        target = np.round(clip["waveform"] * 32768) / 32768
        assert np.any(np.all(np.abs(waves - target) < 1e-7, axis=1))
    train = next(iter(data.train_dataset(global_batch_size=4, input_context=None, start_step=0, seed=0)))
    assert train["waveforms"].shape == (4, 6400)
