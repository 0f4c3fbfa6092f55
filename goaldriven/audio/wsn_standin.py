"""A generated, offline STAND-IN for the Word-Speaker-Noise (WSN) corpus (not the real corpus; spec ch5 13: the WSJ,
Spoken Wikipedia and AudioSet data cannot be obtained here).

Same task shape as WSN (thesis Section 6.3.8): classify the word in a short noisy clip, `num_words` synthetic words +
a null class (noise only, label `num_words`, the last class as in wsn_data.py), spoken by speakers who differ in pitch,
vocal-tract size and speaking rate, mixed with noise at set SNRs. Everything is NumPy, deterministic from `seed`.

Words (word k, from numpy.random.default_rng((seed, 0, k))): 2-3 syllables; syllable j glides between two vowels of
  VOWELS (formants F1-F3 interpolated linearly), has a relative length in [0.6, 1.4], a pitch contour (multiplier of
  the speaker's f0 from c0 to c1, each in [0.85, 1.2]) and, with probability 1/2, a fricative onset (30 ms of noise
  band-passed at a word-specific 1.5-3.5 kHz, scaled by the sample-rate's Nyquist limit). Nominal length 0.45 s.
Speakers (speaker s of a split, from default_rng((seed, 1, split id, s))): f0 in [95, 140] Hz (half) or [170, 250] Hz,
  formant scale in [0.85, 1.0] or [1.0, 1.2] accordingly, speaking rate in [0.8, 1.25]. The test split's speakers
  are drawn from the same distribution but are other speakers (held-out speakers); its noise is fresh noise.
Synthesis (parallel formant synthesis, additive): speech(t) = a(t) sum_h g(h f0(t)) tilt(h) sin(h phi(t)), phi the
  integrated f0, harmonics below 0.45 sr, g(f) = sum_i w_i F_i^2 / sqrt((F_i^2 - f^2)^2 + (B_i f)^2) with
  B = (80, 100, 140) Hz and w = (1, 0.6, 0.3), tilt(h) = 1 / h, a(t) a raised-cosine envelope per syllable (8 ms gaps
  between syllables); per clip f0 x U[0.95, 1.05], a random onset that keeps the word inside the clip.
Noise kinds: "white" (Gaussian), "pink" (1/f power, shaped in the rFFT domain), "babble" (3 other words of the split's
  speakers at random onsets, summed).
Mixture (clip i of a split, from default_rng((seed, 2, split id, i))): word = i mod (num_words + 1) (class-balanced),
  a speaker of the split, a noise kind and an SNR from `snrs_db`, both uniform;
      SNR = 10 log10(mean(speech^2) / mean(noise^2))   over the whole clip;
  noise scaled to that SNR, then speech and noise scaled together to RMS `rms`. The null class is the noise alone at
  RMS `rms` (speech exactly 0, speaker -1, SNR NaN), white or pink only: babble is made of words.

`WSNStandInData` writes the clips once to TFRecords in the documented WSN format (docs/wsn_format.md) under a folder
named by the settings' hash, and reads them back with `wsn_data.WSNData`, so the real reader is what trains.
"""

# n: samples, h: harmonics, f: formants
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from goaldriven.audio import wsn_data

VOWELS = np.array(
    [[270, 2290, 3010], [530, 1840, 2480], [730, 1090, 2440], [570, 840, 2410], [300, 870, 2240], [660, 1720, 2410],
     [490, 1350, 1690]], np.float64,
)  # fmt: skip  # (vowel, f): Peterson & Barney adult-male formants of i, e, a, o, u, ae, er
BANDWIDTHS, FORMANT_WEIGHTS = np.array([80.0, 100.0, 140.0]), np.array([1.0, 0.6, 0.3])
NOISE_KINDS = ("white", "pink", "babble")
SPLIT_IDS = {"train": 0, "test": 1}
WORD_SECONDS = 0.45


@dataclasses.dataclass(frozen=True)
class StandInSettings:
    """What the stand-in generates (module docstring); the defaults make 39 x 50 cochleagrams (gin/tasks/wsn_standin)."""

    num_words: int = 10
    num_train_speakers: int = 8
    num_test_speakers: int = 4
    sample_rate: int = 8000
    duration: float = 1.0
    snrs_db: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    train_per_class: int = 200
    test_per_class: int = 40
    rms: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if self.num_words < 1 or self.num_train_speakers < 1 or self.num_test_speakers < 1:
            raise ValueError(f"num_words and the speaker counts must be >= 1. Received: {self}")
        if self.num_samples < int(WORD_SECONDS * 1.25 * self.sample_rate) + 1:
            raise ValueError(
                f"duration {self.duration} s is too short for a word ({WORD_SECONDS * 1.25} s at rate 0.8)"
            )
        unknown = set(self.noise_kinds) - set(NOISE_KINDS)
        if unknown or not self.noise_kinds or not self.snrs_db:
            raise ValueError(f"noise_kinds must be a non-empty subset of {NOISE_KINDS} and snrs_db non-empty: {self}")
        if not 0.0 < self.rms <= 0.1:
            raise ValueError(f"rms must be in (0, 0.1] so clips stay inside [-1, 1]. Received: {self.rms}")

    @property
    def num_classes(self) -> int:
        return self.num_words + 1

    @property
    def null_label(self) -> int:
        return self.num_words

    @property
    def num_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    def speakers(self, split: str) -> int:
        return self.num_train_speakers if split == "train" else self.num_test_speakers

    def num_examples(self, split: str) -> int:
        return self.num_classes * (self.train_per_class if split == "train" else self.test_per_class)

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def word_spec(settings: StandInSettings, word: int) -> dict:
    """The fixed description of synthetic word `word` (module docstring)."""
    rng = np.random.default_rng((settings.seed, 0, word))
    syllables = int(rng.integers(2, 4))
    return {
        "vowels": rng.integers(0, len(VOWELS), size=(syllables, 2)),
        "lengths": rng.uniform(0.6, 1.4, size=syllables),
        "contour": rng.uniform(0.85, 1.2, size=(syllables, 2)),
        "fricative": rng.random(syllables) < 0.5,
        "fricative_hz": rng.uniform(1500.0, 3500.0),
    }


def speaker_spec(settings: StandInSettings, split: str, speaker: int) -> dict:
    rng = np.random.default_rng((settings.seed, 1, SPLIT_IDS[split], speaker))
    high = bool(rng.random() < 0.5)
    return {
        "f0": rng.uniform(170.0, 250.0) if high else rng.uniform(95.0, 140.0),
        "formant_scale": rng.uniform(1.0, 1.2) if high else rng.uniform(0.85, 1.0),
        "rate": rng.uniform(0.8, 1.25),
    }


def synthesize_word(settings: StandInSettings, word: int, speaker: dict, rng: np.random.Generator) -> np.ndarray:
    """One utterance (n_word,) of `word` by `speaker` (unit RMS), with per-utterance f0 jitter from `rng`."""
    spec, sr = word_spec(settings, word), settings.sample_rate
    total = int(WORD_SECONDS / speaker["rate"] * sr)
    bounds = np.round(np.cumsum(np.r_[0.0, spec["lengths"]]) / spec["lengths"].sum() * total).astype(int)
    f0_base = speaker["f0"] * rng.uniform(0.95, 1.05)
    formants, f0, envelope = np.zeros((total, 3)), np.zeros(total), np.zeros(total)  # (n, f), (n,), (n,)
    gap = int(0.008 * sr)
    fricatives = np.zeros(total)
    for j, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        u = np.linspace(0.0, 1.0, hi - lo)[:, None]
        start, end = VOWELS[spec["vowels"][j, 0]], VOWELS[spec["vowels"][j, 1]]
        formants[lo:hi] = (start + (end - start) * u) * speaker["formant_scale"]
        f0[lo:hi] = f0_base * (spec["contour"][j, 0] + (spec["contour"][j, 1] - spec["contour"][j, 0]) * u[:, 0])
        voiced = max(hi - lo - gap, 2)
        envelope[lo : lo + voiced] = np.sin(np.pi * np.linspace(0.0, 1.0, voiced)) ** 0.5
        if spec["fricative"][j]:
            burst = min(int(0.03 * sr), hi - lo)
            fricatives[lo : lo + burst] = np.hanning(burst)
    phase = 2.0 * np.pi * np.cumsum(f0) / sr  # (n,)
    harmonics = np.arange(1, int(0.45 * sr / f0.min()) + 1)[:, None]  # (h, 1)
    freqs = harmonics * f0[None, :]  # (h, n)
    gain = sum(
        w * formants[None, :, i] ** 2 / np.sqrt((formants[None, :, i] ** 2 - freqs**2) ** 2 + (b * freqs) ** 2)
        for i, (w, b) in enumerate(zip(FORMANT_WEIGHTS, BANDWIDTHS))
    )  # (h, n)
    gain = np.where(freqs < 0.45 * sr, gain / harmonics, 0.0)
    speech = envelope * np.sum(gain * np.sin(harmonics * phase[None, :]), axis=0)
    if fricatives.any():
        centre = min(spec["fricative_hz"], 0.4 * sr)
        hiss = _band_noise(rng, total, sr, centre, centre * 0.4) * fricatives
        speech = speech / _rms(speech) + 0.5 * hiss / max(_rms(hiss), 1e-12)
    return speech / _rms(speech)


def _band_noise(rng: np.random.Generator, n: int, sr: int, centre: float, width: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    return np.fft.irfft(spectrum * np.exp(-0.5 * ((freqs - centre) / width) ** 2), n)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def make_noise(settings: StandInSettings, kind: str, split: str, rng: np.random.Generator) -> np.ndarray:
    """Noise (n,) of `kind` with unit RMS."""
    n = settings.num_samples
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        freqs = np.fft.rfftfreq(n, 1.0 / settings.sample_rate)
        shape = 1.0 / np.sqrt(np.maximum(freqs, freqs[1]))
        noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)
    elif kind == "babble":
        noise = np.zeros(n)
        for _ in range(3):
            talker = speaker_spec(settings, split, int(rng.integers(settings.speakers(split))))
            words = synthesize_word(settings, int(rng.integers(settings.num_words)), talker, rng)
            start = int(rng.integers(-len(words) // 2, n - len(words) // 2))
            lo, hi = max(start, 0), min(start + len(words), n)
            noise[lo:hi] += words[lo - start : hi - start]
    else:
        raise ValueError(f"unknown noise kind {kind!r}; known: {NOISE_KINDS}")
    return noise / _rms(noise)


def make_clip(settings: StandInSettings, split: str, index: int) -> dict:
    """Clip `index` of `split`: {"waveform", "speech", "noise" (n,) float32 with waveform = speech + noise, "word",
    "speaker", "source", "snr_db"} (module docstring)."""
    if split not in SPLIT_IDS:
        raise ValueError(f"split must be one of {tuple(SPLIT_IDS)}. Received: {split!r}")
    rng = np.random.default_rng((settings.seed, 2, SPLIT_IDS[split], index))
    word = index % settings.num_classes
    n = settings.num_samples
    if word == settings.null_label:  # no word energy: babble (made of words) is never a null clip's noise
        kinds = [k for k in settings.noise_kinds if k != "babble"] or ["white"]
        kind = kinds[int(rng.integers(len(kinds)))]
        noise = make_noise(settings, kind, split, rng) * settings.rms
        speech, speaker, snr = np.zeros(n), -1, float("nan")
    else:
        kind = settings.noise_kinds[int(rng.integers(len(settings.noise_kinds)))]
        speaker = int(rng.integers(settings.speakers(split)))
        snr = float(settings.snrs_db[int(rng.integers(len(settings.snrs_db)))])
        utterance = synthesize_word(settings, word, speaker_spec(settings, split, speaker), rng)
        start = int(rng.integers(0, n - len(utterance) + 1))
        speech = np.zeros(n)
        speech[start : start + len(utterance)] = utterance
        noise = make_noise(settings, kind, split, rng)
        noise *= np.sqrt(np.mean(speech**2) / (np.mean(noise**2) * 10.0 ** (snr / 10.0)))
        scale = settings.rms / _rms(speech + noise)
        speech, noise = speech * scale, noise * scale
    speech, noise = speech.astype(np.float32), noise.astype(np.float32)
    return {
        "waveform": speech + noise,
        "speech": speech,
        "noise": noise,
        "word": word,
        "speaker": speaker,
        "source": kind,
        "snr_db": snr,
    }


def write_standin(settings: StandInSettings, data_dir: str, *, num_shards: int = 4) -> None:
    """Writes both splits of the stand-in to `data_dir` in the WSN format (docs/wsn_format.md)."""
    for split in SPLIT_IDS:
        clips = (make_clip(settings, split, i) for i in range(settings.num_examples(split)))
        wsn_data.write_shards(
            data_dir,
            split,
            clips,
            num_shards=num_shards,
            sample_rate=settings.sample_rate,
            num_samples=settings.num_samples,
            num_classes=settings.num_classes,
            description="generated WSN STAND-IN (goaldriven/audio/wsn_standin.py), not the real corpus: "
            + json.dumps(dataclasses.asdict(settings), sort_keys=True),
        )


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "goaldriven", "wsn_standin")


@dataclasses.dataclass(frozen=True)
class WSNStandInData:
    """The stand-in for `tasks.wsn.WSNTask`: generated once into `cache_dir`/<settings hash>, then read with
    `wsn_data.WSNData` (whole-epoch shuffles: the stand-in is small).

    Args:
      settings: what to generate (`StandInSettings`).
      cache_dir: parent folder of the generated data (default ~/.cache/goaldriven/wsn_standin).
      num_shards: shards per split.
    """

    settings: StandInSettings = StandInSettings()
    cache_dir: str | None = None
    num_shards: int = 4

    @property
    def data_dir(self) -> str:
        return os.path.join(self.cache_dir or default_cache_dir(), self.settings.key())

    @property
    def num_classes(self) -> int:
        return self.settings.num_classes

    @property
    def sample_rate(self) -> int:
        return self.settings.sample_rate

    @property
    def num_samples(self) -> int:
        return self.settings.num_samples

    def prepare(self) -> wsn_data.WSNData:
        """Generates the data unless present (written to a temporary folder, then renamed: concurrent runs are safe)."""
        target = self.data_dir
        if not tf.io.gfile.exists(os.path.join(target, wsn_data.METADATA)):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            scratch = tempfile.mkdtemp(prefix=".wsn_standin.", dir=os.path.dirname(target))
            try:
                write_standin(self.settings, scratch, num_shards=self.num_shards)
                os.rename(scratch, target)
            except OSError:
                if not os.path.exists(os.path.join(target, wsn_data.METADATA)):
                    raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return wsn_data.WSNData(target, cycle_length=self.num_shards, shuffle_window=None)

    def num_train_examples(self) -> int:
        return self.settings.num_examples("train")

    def num_eval_examples(self) -> int:
        return self.prepare().num_eval_examples()

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed):
        return self.prepare().train_dataset(
            global_batch_size=global_batch_size, input_context=input_context, start_step=start_step, seed=seed
        )

    def eval_dataset(self, *, global_batch_size, input_context):
        return self.prepare().eval_dataset(global_batch_size=global_batch_size, input_context=input_context)
