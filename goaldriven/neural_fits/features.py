"""Named-layer features of a model for a stimulus set, at every time step of a presentation schedule.

Reference: thesis Section 2.5.6 and spec ch2 8.1, 12 (A-1..A-3). A ConvRNN sees the image for `image_on` steps and
then the blank frame (the model's `blank_value`), `times` steps in all: 10 on + 16 blank = 26 steps (t = 0..25) for
the Majaj et al. 2015 fits, model step t covering [t * step_ms, (t + 1) * step_ms) ms after image onset (A-2: index
the model by milliseconds, never by array position). A feedforward model (any model that is not a ConvRNN) sees the
image once; its features do not change in time and are stored with a single time step, which stands for every bin.

Stimuli are pixels: (n, h, w, c) uint8 in 0..255 or float in [0, 1], c = 1 or 3. `StimulusTransform` turns them into
the model's input: grey -> 3 channels, bilinear resize (antialiased when shrinking) to the model's image size, then
(x - mean) / std with the constants of the task the model was trained on (ImageNet's by default; digits: 0.5, 0.25).

Extraction runs batch by batch under any tf.distribute strategy (the global batch is split across replicas and the
outputs gathered), so memory holds one batch of features. With `out_path` the features stream into an HDF5 file:
  /features/<layer>   (n, t, ...) float32 or float16, one chunk per stimulus
  /stimulus_ids       (n,) str
  attrs: times, image_on, step_ms, model, checkpoint, rows_written, complete
The file is written as `<out_path>.partial` and renamed when complete; an interrupted extraction resumes from the
last written batch when rerun with the same stimuli, layers and schedule.
"""

# n: stimuli, b: batch, t: time steps, h/w: space, c: channels, p: flattened features
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
from goaldriven.neural_fits.mappings.gram import GramFeatures
from goaldriven.tasks import image_preprocessing

FORMAT_VERSION = 1


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


class FeatureStore:
    """Per-layer features (n, t, ...) of a stimulus set, held in memory or read from an HDF5 file on demand."""

    def __init__(self, arrays: dict[str, Any], *, stimulus_ids, presentation: Presentation, attrs=None, file=None):
        self.arrays = arrays
        self.stimulus_ids = np.asarray(stimulus_ids).astype(str)
        self.presentation = presentation
        self.attrs = dict(attrs or {})
        self._file = file

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def __getitem__(self, layer: str):
        if layer not in self.arrays:
            raise KeyError(f"no features of layer {layer!r}; the store has {list(self.arrays)}.")
        return self.arrays[layer]

    def num_steps(self, layer: str) -> int:
        return int(self[layer].shape[1])

    def step_for_ms(self, layer: str, start_ms: float) -> int:
        """The stored step that stands for the bin starting at `start_ms` (feedforward features: the only step)."""
        if self.num_steps(layer) == 1:
            return 0
        step = self.presentation.step_of(start_ms)
        if not 0 <= step < self.num_steps(layer):
            raise ValueError(
                f"the bin at {start_ms} ms maps to model step {step}, but {layer!r} has steps 0..{self.num_steps(layer) - 1}"
                f" ({self.presentation.step_ms} ms each); extract with more time steps (Presentation(times=...))."
            )
        return step

    def flat(self, layer: str, steps: Sequence[int] | None = None, chunk_bytes: int = 2**28) -> np.ndarray:
        """(n, p) float32: the layer's features averaged over `steps` (all stored steps if None), read in chunks."""
        n, p = int(self[layer].shape[0]), int(np.prod(self[layer].shape[2:]))
        rows = max(1, chunk_bytes // (8 * p * len(self._steps(layer, steps))))
        out = np.empty((n, p), np.float32)
        for i in range(0, n, rows):
            out[i : i + rows] = self.flat_rows(layer, steps, i, i + rows)
        return out

    def _steps(self, layer: str, steps: Sequence[int] | None) -> list[int]:
        t = self.num_steps(layer)
        if t == 1:
            return [0]  # feedforward features stand for every step
        chosen = list(range(t)) if steps is None else sorted(set(int(s) for s in steps))
        if not chosen or any(not 0 <= s < t for s in chosen):
            raise ValueError(f"steps {steps} out of range for {layer!r} with {t} stored steps.")
        return chosen

    def gram_features(self, layer: str, steps: Sequence[int] | None = None, max_bytes: int = 2**31):
        """GramFeatures of `flat(layer, steps)` without holding it: row blocks of at most `max_bytes` each.

        One pass for the column means, then the N x N Gram of the centred rows block pair by block pair (k blocks:
        k (k + 1) / 2 block reads), so memory stays at two blocks whatever the layer's size.
        """
        n, p = int(self[layer].shape[0]), int(np.prod(self[layer].shape[2:]))
        rows = max(1, int(max_bytes) // (8 * p * len(self._steps(layer, steps))))
        starts = list(range(0, n, rows))
        mean = sum(self.flat_rows(layer, steps, i, i + rows).sum(axis=0, dtype=np.float64) for i in starts) / n
        gram = np.empty((n, n))
        for a, i in enumerate(starts):
            block_i = self.flat_rows(layer, steps, i, i + rows) - mean
            for j in starts[a:]:
                block_j = block_i if j == i else self.flat_rows(layer, steps, j, j + rows) - mean
                gram[i : i + rows, j : j + rows] = block_i @ block_j.T
                gram[j : j + rows, i : i + rows] = gram[i : i + rows, j : j + rows].T
        return GramFeatures(gram=gram, n_features=p)

    def flat_rows(self, layer: str, steps: Sequence[int] | None, start: int, stop: int) -> np.ndarray:
        """(rows, p) float64: rows start..stop of `flat(layer, steps)`, reading only those steps."""
        steps = self._steps(layer, steps)
        data = self[layer]
        block = np.asarray(data[start:stop, steps] if len(steps) < data.shape[1] else data[start:stop])  # (b, s, ...)
        return block.mean(axis=1, dtype=np.float64).reshape(len(block), -1)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @classmethod
    def open(cls, path: str) -> "FeatureStore":
        """A store reading the HDF5 file written by `extract_features(out_path=path)`."""
        if not os.path.exists(path):
            partial = path + ".partial"
            hint = f" (an interrupted extraction left {partial}; rerun it to finish)" if os.path.exists(partial) else ""
            raise FileNotFoundError(f"no feature file {path}{hint}.")
        f = h5py.File(path, "r")
        if not f.attrs.get("complete", False):
            f.close()
            raise ValueError(f"{path} is an incomplete feature file; rerun the extraction that wrote it.")
        presentation = Presentation(
            times=int(f.attrs["times"]), image_on=int(f.attrs["image_on"]), step_ms=float(f.attrs["step_ms"])
        )
        arrays = {name: f["features"][name] for name in f.attrs["layers"]}
        ids = f["stimulus_ids"].asstr()[...]
        attrs = {k: f.attrs[k] for k in ("model", "checkpoint") if k in f.attrs}
        return cls(arrays, stimulus_ids=ids, presentation=presentation, attrs=attrs, file=f)


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
    log: Callable[[str], None] = print,
) -> FeatureStore:
    """Runs `model` over `stimuli` (pixels; an array or an h5py dataset) batch by batch and collects `layers`.

    Returns a FeatureStore in memory (out_path None) or backed by the HDF5 file at `out_path` (streamed, resumable).
    """
    check_stimuli(stimuli)
    n = int(stimuli.shape[0])
    strategy = strategy or tf.distribute.get_strategy()
    presentation = presentation or Presentation()
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16'. Received: {dtype!r}")
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

    sink, start, f = _open_sink(out_path, n, names, shapes, dtype, presentation, ids, checkpoint, model, log)

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


def _open_sink(out_path, n, names, shapes, dtype, presentation, ids, checkpoint, model, log):
    """Arrays to write into (in memory, or the datasets of the partial HDF5 file) and the first row still to do."""
    if out_path is None:
        return {k: np.zeros((n, *shapes[k]), dtype) for k in names}, 0, None
    if os.path.exists(out_path):
        raise FileExistsError(f"{out_path} exists; remove it or choose another path (features are never overwritten).")
    partial = out_path + ".partial"
    signature = _signature(names, presentation, ids, checkpoint)
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
