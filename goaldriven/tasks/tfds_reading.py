"""Reading TFDS image datasets as exactly resumable, sharded input pipelines (ImageNet, CIFAR-10 and their variants).

Training order (one input pipeline p of P, from `tf.distribute.InputContext`):
  shard:  pipeline p reads examples [p N / P, (p + 1) N / P) of the split (TFDS slicing: only its own files).
  epoch e of the shard: the shard is cut into `num_chunks` contiguous chunks; their examples are merged in a random
          order (a seeded permutation of the multiset {k repeated n_k times}: which chunk supplies the next example),
          then shuffled inside consecutive windows of `shuffle_window` examples. Seeds: fold_in((seed, p), e).
  stream: epochs e = 0, 1, ... concatenated; per-replica batches are consecutive runs of the stream.
  augmentation: example i of the stream (counted from 0 over all epochs) uses the stateless seed fold_in((seed, p), i).
Every random choice is stateless (no global or op-level TF seed), so batch k of pipeline p is a pure function of
(seed, k, P, p, per-replica batch, replicas per pipeline, the stored data). Resuming at step s skips the
s x (pipeline batch) examples already consumed: whole epochs by index arithmetic, then the consumed part of the
current epoch as undecoded records (I/O only, at most one shard epoch, no JPEG decoding). A resumed run therefore sees
exactly the batches the uninterrupted run would have seen. Changing the number of input pipelines (hosts) or the
per-replica batch changes the order (still deterministic).

Evaluation: pipeline p reads its shard in stored order; every pipeline is padded to the same number of batches with
examples of `weight` 0, so each example of the split is seen exactly once with `weight` 1 and nothing is dropped.

Batches: {image_key: (b, s, s, 3) or views (b, v, s, s, 3) float32, "labels": (b,) int32[, "weight": (b,) float32]
[, "index": (b,) int64]}, static shapes; "index" is each example's split position (chunks enumerated from their start
offsets before the merge).
"""

# b: per-replica batch, v: views, s: image side
from typing import Callable

import tensorflow as tf

from goaldriven import runtime
from goaldriven.tasks import pipeline_math

try:
    import tensorflow_datasets as tfds
except ImportError:  # Declared in setup.py; only ImageNet and CIFAR-10 need it, so it is reported when they run.
    tfds = None

IMAGENET, CIFAR10 = "imagenet2012", "cifar10"
_LAST_EPOCH = 2**40
_ORDER, _AUGMENT = 0, 1


def num_examples(name: str, split: str, *, data_dir: str | None = None) -> int:
    """Examples in a prepared TFDS split (read from the dataset's recorded cardinality)."""
    return _cardinality(_read(_tfds().builder(name, data_dir=data_dir), split), split)


def _tfds():
    """The tensorflow_datasets module, or ModuleNotFoundError naming the install command."""
    if tfds is None:
        raise ModuleNotFoundError(
            "ImageNet and CIFAR-10 read their data with tensorflow-datasets, which is not installed: "
            "pip install 'tensorflow-datasets>=4.9.9' importlib_resources (or reinstall goaldriven: pip install -e .)",
            name="tensorflow_datasets",
        )
    return tfds


def tfds_builder(name: str, *, data_dir: str | None, download: bool, manual_dir: str | None = None):
    builder = _tfds().builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare(download_config=_tfds().download.DownloadConfig(manual_dir=manual_dir))
    return builder


def _read(builder, split: str) -> tf.data.Dataset:
    """Undecoded {"image": encoded bytes, "label": int32} in stored order."""
    try:
        dataset = builder.as_dataset(
            split=split, decoders={"image": _tfds().decode.SkipDecoding()}, shuffle_files=False
        )
    except AssertionError as error:  # TFDS's "could not find data" error
        fix = (
            "put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in manual_dir and set download=True once "
            "(gin: ImageNetData.download = True), or run `tfds build imagenet2012 --manual_dir=...`"
            if builder.name == IMAGENET
            else "set download=True (gin: Cifar10Data.download = True) on a machine with internet access"
        )
        raise FileNotFoundError(
            f"TFDS dataset {builder.name!r} is not prepared in data_dir={builder.data_dir!r}: {fix}. (TFDS: {error})"
        ) from error
    return dataset.map(lambda ex: {"image": ex["image"], "label": tf.cast(ex["label"], tf.int32)})


def _cardinality(dataset: tf.data.Dataset, split: str) -> int:
    count = int(dataset.cardinality())
    if count < 0:
        raise ValueError(f"the number of examples of split {split!r} is unknown; use a prepared TFDS split.")
    return count


def tfds_pipeline(
    builder,
    *,
    split: str,
    training: bool,
    preprocess: Callable[..., tf.Tensor],
    image_shape: tuple[int, int, int],
    global_batch_size: int,
    input_context: tf.distribute.InputContext | None,
    start_step: int,
    seed: int,
    num_chunks: int,
    shuffle_window: int | None,
    image_key: str = "images",
    with_index: bool = False,
) -> tf.data.Dataset:
    """Batches of one input pipeline (module docstring) from a TFDS builder with "image" and "label" features:
    `preprocess(image, seed)` (training) or `preprocess(image)` (evaluation) maps encoded bytes to float32 of
    `image_shape` ((s, s, 3) or views (v, s, s, 3)) under `image_key`; `with_index` adds "index" (b,) int64 (training)."""
    context = input_context or tf.distribute.InputContext()
    runtime.check_global_batch_size(global_batch_size, context.num_replicas_in_sync)
    if not isinstance(num_chunks, int) or num_chunks < 1:
        raise ValueError(f"num_chunks must be a positive int. Received: {num_chunks!r}")
    if shuffle_window is not None and shuffle_window < 1:
        raise ValueError(f"shuffle_window must be a positive int or None (whole epoch). Received: {shuffle_window!r}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0. Received: {start_step}")
    per_replica = context.get_per_replica_batch_size(global_batch_size)
    pipelines, pipeline_id = context.num_input_pipelines, context.input_pipeline_id
    pipeline_batch = per_replica * (context.num_replicas_in_sync // pipelines)
    total = _cardinality(_read(builder, split), split)
    begin, end = pipeline_id * total // pipelines, (pipeline_id + 1) * total // pipelines
    base_seed = tf.constant([seed, pipeline_id], tf.int64)
    preprocess = _with_shape(preprocess, image_shape)
    if training:
        if end == begin:
            raise ValueError(f"split {split!r} has {total} examples, fewer than the {pipelines} input pipelines.")
        records = _training_stream(
            builder, split, begin, end, start_step * pipeline_batch, base_seed, num_chunks, shuffle_window
        )

        def example(i, ex):
            out = {
                image_key: preprocess(ex["image"], pipeline_math.fold_seed(base_seed, _AUGMENT, i)),
                "labels": ex["label"],
            }
            return {**out, "index": ex["index"]} if with_index else out

        examples = records.map(example, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        # Every pipeline runs ceil(ceil(N / P) / B) batches (B: examples per step here), padded with weight-0 examples.
        padded_size = pipeline_math.ceil_div(pipeline_math.ceil_div(total, pipelines), pipeline_batch) * pipeline_batch
        padding = tf.data.Dataset.from_tensors(
            {image_key: tf.zeros(image_shape), "labels": tf.constant(0, tf.int32), "weight": tf.constant(0.0)}
        ).repeat(padded_size - (end - begin))
        if end > begin:
            examples = _read(builder, f"{split}[{begin}:{end}]").map(
                lambda ex: {image_key: preprocess(ex["image"]), "labels": ex["label"], "weight": tf.constant(1.0)},
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            examples = examples.concatenate(padding)
        else:
            examples = padding
    options = tf.data.Options()
    options.deterministic = True
    return examples.batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(options)


def _with_shape(preprocess: Callable[..., tf.Tensor], image_shape) -> Callable[..., tf.Tensor]:
    """`preprocess` with its output shape made static (and checked)."""
    return lambda *args: tf.ensure_shape(preprocess(*args), image_shape)


def _training_stream(builder, split, begin, end, consumed, base_seed, num_chunks, shuffle_window) -> tf.data.Dataset:
    """(stream index, undecoded example with its split position "index") of this shard's endless training stream,
    from example `consumed` on."""
    size = end - begin
    count = min(num_chunks, size)
    bounds = [begin + k * size // count for k in range(count + 1)]
    chunks = [
        _read(builder, f"{split}[{lo}:{hi}]").enumerate(start=lo).map(lambda i, ex: {**ex, "index": i})
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    lengths = tf.constant([_cardinality(c, split) for c in chunks], tf.int64)
    epoch_size = int(tf.reduce_sum(lengths))
    window = epoch_size if shuffle_window is None else shuffle_window

    def epoch(e):
        epoch_seed = pipeline_math.fold_seed(base_seed, _ORDER, e)
        sources = tf.repeat(tf.range(len(chunks), dtype=tf.int64), lengths)  # the chunk of each example, sorted
        choice = tf.random.experimental.stateless_shuffle(sources, pipeline_math.fold_seed(epoch_seed, 0))
        merged = tf.data.Dataset.choose_from_datasets(chunks, tf.data.Dataset.from_tensor_slices(choice))

        def shuffle_block(block_index, block):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(tf.shape(block["label"])[0]), pipeline_math.fold_seed(epoch_seed, 1, block_index)
            )
            return tf.nest.map_structure(lambda x: tf.gather(x, order), block)

        return merged.batch(window).enumerate().map(shuffle_block).unbatch()

    first_epoch, offset = divmod(consumed, epoch_size)
    stream = tf.data.Dataset.range(first_epoch, _LAST_EPOCH).flat_map(epoch).skip(offset)
    return stream.enumerate(start=consumed)
