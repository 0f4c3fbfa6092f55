"""The Word-Speaker-Noise (WSN) dataset as TFRecord shards of waveforms and labels: writer and reader.

Reference: thesis Section 6.3.8 (spec ch5 6.5, 11.2 "WSN"): 793 words + a null class = 794 classes; speech (WSJ,
Spoken Wikipedia) superimposed on AudioSet noise; 5,810,600 training and 369,864 test clips of 2 s at 20 kHz, turned
into 203 x 400 x 1 cochleagrams by the front end (goaldriven/audio/cochleagram.py). The corpus is not public; the
format below is ours (docs/wsn_format.md) and tests fabricate records with `write_shards`.

Files in `data_dir`:
  wsn-metadata.json                          format, sample rate, samples per clip, classes, null label, and per
                                             split the number of examples in each shard
  wsn-{split}-{i:05d}-of-{n:05d}.tfrecord    tf.train.Example records, uncompressed
Record features:
  waveform  bytes   int16 PCM, little endian, `num_samples` samples; x = pcm / 32768 in [-1, 1)
  word      int64   class in [0, num_classes); the null class (no word, noise only) is num_classes - 1 (793)
  speaker   int64   speaker id, -1 = none/unknown (optional)
  source    bytes   noise source, "" = unknown (optional)
  snr_db    float   speech-to-noise ratio in dB, NaN for the null class (optional)

Training order (input pipeline p of P, from `tf.distribute.InputContext`):
  shard:  pipeline p reads the split's files i with i mod P = p (needs at least P files).
  epoch e of the shard: its files in a stateless-shuffled order (seed fold_in((seed, p), 0, e)), read `cycle_length`
          at a time, one record from each in turn (deterministic interleave), then shuffled inside consecutive windows
          of `shuffle_window` records (seed fold_in((seed, p), 0, e, 1, window)).
  stream: epochs e = 0, 1, ... concatenated; per-replica batches are consecutive runs of the stream.
Every choice is stateless, so batch k of pipeline p is a pure function of (seed, k, P, p, per-replica batch, replicas
per pipeline, the stored files). Resuming at step s skips the s x (pipeline batch) records already consumed: whole
epochs by arithmetic (shard sizes come from the metadata), then the consumed part of the current epoch as undecoded
records. Evaluation: pipeline p reads its files in stored order, padded with weight-0 clips to the same number of
batches on every pipeline, so every test clip is seen exactly once with weight 1.

Batches: {"waveforms": (b, n) float32, "labels": (b,) int32[, "weight": (b,) float32]}, static shapes.
"""

# b: per-replica batch, n: samples per clip
import dataclasses
import functools
import json
import math
import os
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow as tf

from goaldriven import atomic_write, runtime

FORMAT, VERSION = "goaldriven-wsn", 1
METADATA = "wsn-metadata.json"
SAMPLE_RATE = 20_000
NUM_SAMPLES = 40_000  # 2 s
NUM_WORDS = 793
NUM_CLASSES = NUM_WORDS + 1
NULL_LABEL = NUM_CLASSES - 1  # the last class
TRAIN_EXAMPLES, TEST_EXAMPLES = 5_810_600, 369_864
SPLITS = ("train", "test")
PCM_SCALE = 32768.0
_LAST_EPOCH = 2**40
_ORDER = 0
_WRITE_FIX = "write the data with goaldriven.audio.wsn_data.write_shards (docs/wsn_format.md)"


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"wsn-{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def encode_example(
    waveform: np.ndarray, word: int, *, speaker: int = -1, source: str = "", snr_db: float = math.nan
) -> bytes:
    """One serialized tf.train.Example; `waveform` is float in [-1, 1] (quantised to int16) or int16 PCM."""
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:
        raise ValueError(f"a waveform is one channel, shape (samples,); received shape {waveform.shape}.")
    if waveform.dtype != np.int16:
        peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
        if not np.isfinite(peak) or peak > 1.0:
            raise ValueError(f"waveform peak {peak} is outside [-1, 1]: scale the clip before writing it.")
        waveform = np.clip(np.round(waveform * PCM_SCALE), -32768, 32767).astype(np.int16)
    feature = {
        "waveform": tf.train.Feature(bytes_list=tf.train.BytesList(value=[waveform.astype("<i2").tobytes()])),
        "word": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(word)])),
        "speaker": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(speaker)])),
        "source": tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(source).encode()])),
        "snr_db": tf.train.Feature(float_list=tf.train.FloatList(value=[float(snr_db)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shards(
    data_dir: str,
    split: str,
    examples: Iterable[Mapping[str, Any]],
    *,
    num_shards: int,
    sample_rate: int = SAMPLE_RATE,
    num_samples: int = NUM_SAMPLES,
    num_classes: int = NUM_CLASSES,
    description: str = "",
) -> list[int]:
    """Writes `examples` ({"waveform", "word"[, "speaker", "source", "snr_db"]}) to `num_shards` files of `split`,
    example i to shard i mod num_shards, and records the split in wsn-metadata.json (other splits are kept when their
    settings agree). Returns the examples per shard."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}. Received: {split!r}")
    if not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive int. Received: {num_shards!r}")
    tf.io.gfile.makedirs(data_dir)
    settings = {"sample_rate": sample_rate, "num_samples": num_samples, "num_classes": num_classes}
    metadata = _existing_metadata(data_dir, settings)
    counts = [0] * num_shards
    paths = [os.path.join(data_dir, shard_name(split, i, num_shards)) for i in range(num_shards)]
    temporary = [f"{path}.partial" for path in paths]
    writers = [tf.io.TFRecordWriter(path) for path in temporary]
    try:
        for i, example in enumerate(examples):
            waveform, word = np.asarray(example["waveform"]), int(example["word"])
            if waveform.shape != (num_samples,):
                raise ValueError(f"example {i}: waveform shape {waveform.shape}, expected ({num_samples},).")
            if not 0 <= word < num_classes:
                raise ValueError(f"example {i}: word {word} outside [0, {num_classes}); null is {num_classes - 1}.")
            extras = {k: example[k] for k in ("speaker", "source", "snr_db") if k in example}
            writers[i % num_shards].write(encode_example(waveform, word, **extras))
            counts[i % num_shards] += 1
    except BaseException:
        for writer, tmp in zip(writers, temporary):
            writer.close()
            tf.io.gfile.remove(tmp)
        raise
    for writer in writers:
        writer.close()
    for tmp, path in zip(temporary, paths):
        tf.io.gfile.rename(tmp, path, overwrite=True)
    metadata["splits"][split] = {"shards": counts}
    if description:
        metadata["description"] = description
    atomic_write.write_json(os.path.join(data_dir, METADATA), metadata)
    return counts


def _existing_metadata(data_dir: str, settings: dict) -> dict:
    path = os.path.join(data_dir, METADATA)
    fresh = {"format": FORMAT, "version": VERSION, **settings, "null_label": settings["num_classes"] - 1, "splits": {}}
    if not tf.io.gfile.exists(path):
        return fresh
    old = read_metadata(data_dir)
    if any(old[k] != v for k, v in settings.items()):
        raise ValueError(
            f"{path} describes { ({k: old[k] for k in settings}) }, not {settings}: write into an empty folder."
        )
    return old


def read_metadata(data_dir: str) -> dict:
    """wsn-metadata.json of `data_dir`, checked (one-line errors naming the fix)."""
    path = os.path.join(data_dir, METADATA)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"no {METADATA} in {data_dir!r}: not a WSN data folder; {_WRITE_FIX}.")
    try:
        with tf.io.gfile.GFile(path) as f:
            metadata = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); rewrite it with write_shards.") from None
    if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
        raise ValueError(
            f"{path} has format {metadata.get('format')!r} version {metadata.get('version')!r}, expected "
            f"{FORMAT!r} version {VERSION}; {_WRITE_FIX}."
        )
    return metadata


def split_shards(data_dir: str, split: str) -> tuple[list[str], list[int]]:
    """(shard paths, examples per shard) of `split`; raises naming the first missing file."""
    splits = read_metadata(data_dir)["splits"]
    if split not in splits:
        raise FileNotFoundError(f"{data_dir!r} has no {split!r} split (it has {sorted(splits)}); {_WRITE_FIX}.")
    counts = [int(c) for c in splits[split]["shards"]]
    paths = [os.path.join(data_dir, shard_name(split, i, len(counts))) for i in range(len(counts))]
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(paths)} {split!r} shards are missing, first {missing[0]!r}: copy the whole "
            f"split or rewrite it with write_shards."
        )
    return paths, counts


@dataclasses.dataclass(frozen=True)
class WSNData:
    """WSN waveforms for `tasks.wsn.WSNTask` (module docstring).

    Args:
      data_dir: folder with wsn-metadata.json and the shards (local or gs://).
      train_split, eval_split: split names ("train", "test").
      cycle_length: shard files read in turn during training.
      shuffle_window: training records shuffled together (None: the whole shard epoch, held in memory).
    """

    data_dir: str
    train_split: str = "train"
    eval_split: str = "test"
    cycle_length: int = 16
    shuffle_window: int | None = 8192

    def __post_init__(self):
        if not isinstance(self.cycle_length, int) or self.cycle_length < 1:
            raise ValueError(f"cycle_length must be a positive int. Received: {self.cycle_length!r}")
        if self.shuffle_window is not None and (not isinstance(self.shuffle_window, int) or self.shuffle_window < 1):
            raise ValueError(f"shuffle_window must be a positive int or None. Received: {self.shuffle_window!r}")

    @functools.cached_property
    def metadata(self) -> dict:
        return read_metadata(self.data_dir)

    @property
    def num_classes(self) -> int:
        return int(self.metadata["num_classes"])

    @property
    def null_label(self) -> int:
        return int(self.metadata["null_label"])

    @property
    def sample_rate(self) -> int:
        return int(self.metadata["sample_rate"])

    @property
    def num_samples(self) -> int:
        return int(self.metadata["num_samples"])

    def num_train_examples(self) -> int:
        return sum(split_shards(self.data_dir, self.train_split)[1])

    def num_eval_examples(self) -> int:
        return sum(split_shards(self.data_dir, self.eval_split)[1])

    def _pipeline(self, split: str, input_context) -> tuple[tf.distribute.InputContext, list[str], list[int]]:
        context = input_context or tf.distribute.InputContext()
        paths, counts = split_shards(self.data_dir, split)
        mine = range(context.input_pipeline_id, len(paths), context.num_input_pipelines)
        return context, [paths[i] for i in mine], [counts[i] for i in mine]

    def parse(self, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        """One record -> {"waveforms": (n,) float32, "labels": () int32}, checked in-graph."""
        features = tf.io.parse_single_example(
            serialized,
            {"waveform": tf.io.FixedLenFeature([], tf.string), "word": tf.io.FixedLenFeature([], tf.int64)},
        )
        pcm = tf.io.decode_raw(features["waveform"], tf.int16, little_endian=True)
        n, k = self.num_samples, self.num_classes
        checks = [
            tf.debugging.assert_equal(
                tf.size(pcm), n, message=f"WSN record with a waveform of the wrong length (metadata: {n} samples)"
            ),
            tf.debugging.assert_less(
                features["word"], tf.constant(k, tf.int64), message=f"WSN record with a word label >= {k} classes"
            ),
            tf.debugging.assert_non_negative(features["word"], message="WSN record with a negative word label"),
        ]
        with tf.control_dependencies(checks):
            waveform = tf.cast(tf.reshape(pcm, [n]), tf.float32) / PCM_SCALE
            return {"waveforms": waveform, "labels": tf.cast(features["word"], tf.int32)}

    def train_dataset(self, *, global_batch_size, input_context, start_step, seed) -> tf.data.Dataset:
        context, paths, counts = self._pipeline(self.train_split, input_context)
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0. Received: {start_step}")
        if not paths:
            raise ValueError(
                f"the {self.train_split!r} split has fewer shards than the {context.num_input_pipelines} input "
                "pipelines; rewrite it with more shards (write_shards num_shards)."
            )
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        pipeline_batch = per_replica * (context.num_replicas_in_sync // context.num_input_pipelines)
        base_seed = tf.constant([seed, context.input_pipeline_id], tf.int64)
        epoch_size = sum(counts)
        window = epoch_size if self.shuffle_window is None else self.shuffle_window
        files = tf.constant(paths)
        cycle = min(self.cycle_length, len(paths))

        def epoch(e):
            epoch_seed = fold_seed(base_seed, _ORDER, e)
            order = tf.random.experimental.stateless_shuffle(tf.range(len(paths)), fold_seed(epoch_seed, 0))
            records = tf.data.Dataset.from_tensor_slices(tf.gather(files, order)).interleave(
                tf.data.TFRecordDataset, cycle_length=cycle, block_length=1
            )

            def shuffle_block(block_index, block):
                shuffled = tf.random.experimental.stateless_shuffle(block, fold_seed(epoch_seed, 1, block_index))
                return tf.data.Dataset.from_tensor_slices(shuffled)

            return records.batch(window).enumerate().flat_map(shuffle_block)

        first_epoch, offset = divmod(start_step * pipeline_batch, epoch_size)
        stream = tf.data.Dataset.range(first_epoch, _LAST_EPOCH).flat_map(epoch).skip(offset)
        examples = stream.map(self.parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _finish(examples.batch(per_replica, drop_remainder=True))

    def eval_dataset(self, *, global_batch_size, input_context) -> tf.data.Dataset:
        context, paths, counts = self._pipeline(self.eval_split, input_context)
        runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
        per_replica = context.get_per_replica_batch_size(global_batch_size)
        pipeline_batch = per_replica * (context.num_replicas_in_sync // context.num_input_pipelines)
        all_counts = split_shards(self.data_dir, self.eval_split)[1]
        pipelines = context.num_input_pipelines
        largest = max(sum(all_counts[p::pipelines]) for p in range(pipelines))
        padded_size = -(-largest // pipeline_batch) * pipeline_batch  # the same number of batches on every pipeline
        padding = tf.data.Dataset.from_tensors(
            {"waveforms": tf.zeros([self.num_samples]), "labels": tf.constant(0, tf.int32), "weight": tf.constant(0.0)}
        ).repeat(padded_size - sum(counts))
        examples = padding
        if paths:
            examples = (
                tf.data.TFRecordDataset(paths)
                .map(lambda r: {**self.parse(r), "weight": tf.constant(1.0)}, num_parallel_calls=tf.data.AUTOTUNE)
                .concatenate(padding)
            )
        return _finish(examples.batch(per_replica, drop_remainder=True))


def _finish(dataset: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def fold_seed(seed: tf.Tensor, *data) -> tf.Tensor:
    """A stateless seed (2,) derived from `seed` and integers `data`."""
    for value in data:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(value, tf.int64))
    return seed
