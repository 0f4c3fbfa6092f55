"""Named-layer features of a model for a stimulus set, at every step of a presentation schedule; the feature cache.

Reference: thesis Section 2.5.6 and spec ch2 8.1, 12 (A-1..A-3); the schedule and the stimulus transform are in
stimuli.py. A feedforward model (any model that is not a ConvRNN) sees the image once; its features do not change in
time and are stored with a single time step, which stands for every bin.

Extraction runs batch by batch under any tf.distribute strategy (the global batch is split across replicas and the
outputs gathered), so memory holds one batch of features. With `out_path` the features stream into an HDF5 file
(layout in feature_store.py), and this module is the one owner of that file as a cache:
  - it is written as `<out_path>.partial` and renamed when complete; an interrupted extraction resumes from the last
    written batch when rerun with the same stimuli, layers, schedule and checkpoint (their `signature`);
  - a complete file with the same signature is reused as it is; one with another signature is refused
    (on_mismatch="refuse", the default: features are never overwritten) or extracted again (on_mismatch="extract").
"""

# n: stimuli, b: batch, t: time steps, h/w: space, c: channels
import dataclasses
import hashlib
import os
import time
from typing import Any, Callable, Sequence

import h5py
import keras
import numpy as np
import tensorflow as tf

from goaldriven import runtime
from goaldriven.neural_fits.pipeline.feature_store import FORMAT_VERSION, FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation, check_stimuli

ON_MISMATCH = ("refuse", "extract")


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


def _signature(layers, presentation, stimulus_ids, checkpoint) -> str:
    digest = hashlib.sha1("\n".join(np.asarray(stimulus_ids).astype(str)).encode()).hexdigest()
    return repr((tuple(layers), dataclasses.astuple(presentation), digest, str(checkpoint)))


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

    Returns a FeatureStore in memory (out_path None) or backed by the HDF5 file at `out_path` (streamed, resumable;
    an existing file is reused or refused as the module docstring says). `checkpoint` names the weights (it is part
    of the file's signature).
    """
    check_stimuli(stimuli)
    n = int(stimuli.shape[0])
    strategy = strategy or tf.distribute.get_strategy()
    presentation = presentation or Presentation()
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16'. Received: {dtype!r}")
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}. Received: {on_mismatch!r}")
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

    signature = _signature(names, presentation, ids, checkpoint)
    if out_path is not None and os.path.exists(out_path):
        cached = _cached(out_path, signature, on_mismatch, log)
        if cached is not None:
            return cached
    sink, start, f = _open_sink(out_path, n, names, shapes, dtype, presentation, ids, checkpoint, signature, model, log)

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
        if f is not None:
            f.attrs["rows_written"] = done
            f.flush()
        now = time.time()
        if now - last_log < 10 and done < n:
            continue
        last_log, rate = now, (done - start) / max(now - began, 1e-9)
        log(f"features: {done}/{n} stimuli ({rate:.1f}/s, {(n - done) / max(rate, 1e-9):.0f} s left)")
    if f is None:
        return FeatureStore(sink, stimulus_ids=ids, presentation=presentation, attrs={"checkpoint": checkpoint})
    f.attrs["complete"] = True
    f.close()
    os.replace(out_path + ".partial", out_path)
    return FeatureStore.open(out_path)


def _cached(path: str, signature: str, on_mismatch: str, log) -> FeatureStore | None:
    """The complete feature file at `path` when its signature matches; None when it was removed to extract again."""
    store = FeatureStore.open(path)
    if store.attrs.get("signature") == signature:
        log(f"features: reusing {path}")
        return store
    store.close()
    if on_mismatch == "refuse":
        raise FileExistsError(
            f"{path} holds features of another checkpoint, stimulus set, layer list or presentation (features are "
            "never overwritten); use a new --workdir (out_path), or on_mismatch='extract' to extract them again."
        )
    log(f"features: {path} holds features of another checkpoint/stimuli/layers/schedule; extracting again")
    os.remove(path)
    return None


def _open_sink(out_path, n, names, shapes, dtype, presentation, ids, checkpoint, signature, model, log):
    """Arrays to write into (in memory, or the datasets of the partial HDF5 file) and the first row still to do."""
    if out_path is None:
        return {k: np.zeros((n, *shapes[k]), dtype) for k in names}, 0, None
    partial = out_path + ".partial"
    if os.path.exists(partial):
        f = h5py.File(partial, "a")
        if f.attrs.get("signature") == signature:
            start = int(f.attrs["rows_written"])
            log(f"features: resuming {partial} at stimulus {start}/{n}")
            return {k: f["features"][k] for k in names}, start, f
        f.close()
        log(f"features: {partial} was written for other stimuli/layers/schedule/checkpoint; starting over")
        os.remove(partial)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    f = h5py.File(partial, "w")
    group = f.create_group("features")
    for k in names:
        group.create_dataset(k, shape=(n, *shapes[k]), dtype=dtype, chunks=(1, *shapes[k]))
    f.create_dataset("stimulus_ids", data=ids.astype(object), dtype=h5py.string_dtype())
    f.attrs.update(
        format_version=FORMAT_VERSION,
        layers=list(names),
        times=presentation.times,
        image_on=presentation.image_on,
        step_ms=presentation.step_ms,
        model=str(getattr(model, "name", type(model).__name__)),
        checkpoint=str(checkpoint),
        signature=signature,
        rows_written=0,
        complete=False,
    )
    return {k: group[k] for k in names}, 0, f
