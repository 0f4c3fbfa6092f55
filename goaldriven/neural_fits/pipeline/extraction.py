"""Named-layer features of a model for a stimulus set, at every step of a presentation schedule; the feature cache.

Reference: thesis Section 2.5.6 and spec ch2 8.1, 12 (A-1..A-3); the schedule and the stimulus transform are in
stimuli.py. A feedforward model (any model that is not a ConvRNN) sees the image once; its features do not change in
time and are stored with a single time step, which stands for every bin.

Extraction runs batch by batch under any tf.distribute strategy (the global batch is split across replicas and the
outputs gathered), so memory holds one batch of features. With `out_path` the features stream into an HDF5 file
(layout in feature_store.py) that is a cache, owned by feature_cache.py: it is keyed on the checkpoint's content, the
model's config, the stimulus transform, the schedule, the dtype, the layers and the stimuli; a matching file at or
beside `out_path` is reused, an interrupted one resumed, and another key's features are never overwritten.
"""

# n: stimuli, b: batch, t: time steps, h/w: space, c: channels
import time
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from goaldriven import runtime
from goaldriven.neural_fits.pipeline import feature_cache
from goaldriven.neural_fits.pipeline.feature_store import FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation, check_stimuli


def is_recurrent(model) -> bool:
    """A ConvRNN (it has per-step features and a presentation schedule); anything else is run once."""
    return hasattr(model, "feature_names") and hasattr(model, "start_time")


def layer_names(model, images) -> tuple[str, ...]:
    """The feature names the model returns (a ConvRNN's nodes and readout; otherwise the keys of its features)."""
    if is_recurrent(model):
        return tuple(model.feature_names)
    return tuple(model(images, training=False)["features"])


def model_features(model, images, *, layers: Sequence[str], presentation: Presentation) -> dict[str, tf.Tensor]:
    """{layer: (b, t, ...)} for one batch of normalised images; t = presentation.times, or 1 for feedforward models."""
    if is_recurrent(model):
        out = model(
            images,
            training=False,
            times=presentation.times,
            image_off=presentation.image_on,
            feature_layers=tuple(layers),
        )
        return {name: tf.cast(out["features"][name], tf.float32) for name in layers}
    features = model(images, training=False)["features"]
    missing = [name for name in layers if name not in features]
    if missing:
        raise ValueError(f"the model has no features {missing}; it returns {sorted(features)}.")
    return {name: tf.cast(features[name], tf.float32)[:, None] for name in layers}


def extract_features(
    model: keras.Model,
    stimuli,
    *,
    transform: Callable[[Any], tf.Tensor],
    layers: Sequence[str] | None = None,
    presentation: Presentation | None = None,
    global_batch_size: int = 64,
    strategy: tf.distribute.Strategy | None = None,
    stimulus_ids: Sequence[str] | None = None,
    out_path: str | None = None,
    dtype: str = "float32",
    checkpoint: str = "",
    on_mismatch: str = "refuse",
    log: Callable[[str], None] = print,
) -> FeatureStore:
    """Runs `model` over `stimuli` (pixels; an array or an h5py dataset) batch by batch and collects `layers`.

    Returns a FeatureStore in memory (out_path None) or backed by an HDF5 cache file at or beside `out_path`
    (streamed, resumable, reused when its key matches; `store.path` says which file). `checkpoint` is the prefix the
    weights were restored from: its step and file contents are part of the key. on_mismatch: when `out_path` holds
    features of another key, "refuse" (FileExistsError) or "extract" into a file beside it (feature_cache.py).
    """
    check_stimuli(stimuli)
    n = int(stimuli.shape[0])
    strategy = strategy or tf.distribute.get_strategy()
    presentation = presentation or Presentation()
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16'. Received: {dtype!r}")
    if on_mismatch not in feature_cache.ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {feature_cache.ON_MISMATCH}. Received: {on_mismatch!r}")
    if global_batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by the {strategy.num_replicas_in_sync} replicas."
        )
    ids = np.arange(n).astype(str) if stimulus_ids is None else np.asarray(stimulus_ids).astype(str)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} stimulus ids for {n} stimuli.")
    with strategy.scope():
        probe = transform(np.asarray(stimuli[:1]))
        names = tuple(layers) if layers else layer_names(model, probe)
        shapes = {
            k: tuple(v.shape[1:])
            for k, v in model_features(model, probe, layers=names, presentation=presentation).items()
        }

    if out_path is None:
        sink, start, slot = {k: np.zeros((n, *shapes[k]), dtype) for k in names}, 0, None
    else:
        parts = feature_cache.key_parts(
            checkpoint=checkpoint,
            model=model,
            transform=transform,
            presentation=presentation,
            dtype=dtype,
            layers=names,
            stimuli=stimuli,
            ids=ids,
        )
        slot = feature_cache.open_slot(
            out_path,
            parts,
            shapes=shapes,
            dtype=dtype,
            presentation=presentation,
            ids=ids,
            model_name=str(getattr(model, "name", type(model).__name__)),
            checkpoint=checkpoint,
            on_mismatch=on_mismatch,
            log=log,
        )
        if slot.store is not None:
            return slot.store
        sink, start = {k: slot.file["features"][k] for k in names}, slot.start

    def per_replica(pixels):
        return model_features(model, transform(pixels), layers=names, presentation=presentation)

    runner = runtime.ReplicatedRunner(strategy, per_replica)
    image_shape = tuple(stimuli.shape[1:])
    per_replica_batch = global_batch_size // strategy.num_replicas_in_sync
    began, done, last_log = time.time(), start, 0.0
    for i in range(start, n, global_batch_size):
        block = np.asarray(stimuli[i : i + global_batch_size])  # read on the host: errors surface as they are
        if len(block) < global_batch_size:  # Pad the last batch (static shapes); padded rows are discarded below.
            block = np.concatenate([block, np.zeros((global_batch_size - len(block), *image_shape), block.dtype)])

        def shard(ctx, block=block):
            k = ctx.replica_id_in_sync_group
            return tf.constant(block[k * per_replica_batch : (k + 1) * per_replica_batch])

        (out,) = runner.run([strategy.experimental_distribute_values_from_function(shard)])
        rows = min(global_batch_size, n - i)
        for name in names:
            sink[name][i : i + rows] = out[name][:rows].astype(dtype)
        done = i + rows
        if slot is not None:
            slot.file.attrs["rows_written"] = done
            slot.file.flush()
        now = time.time()
        if now - last_log < 10 and done < n:
            continue
        last_log, rate = now, (done - start) / max(now - began, 1e-9)
        log(f"features: {done}/{n} stimuli ({rate:.1f}/s, {(n - done) / max(rate, 1e-9):.0f} s left)")
    if slot is None:
        return FeatureStore(sink, stimulus_ids=ids, presentation=presentation, attrs={"checkpoint": checkpoint})
    return slot.finish()
