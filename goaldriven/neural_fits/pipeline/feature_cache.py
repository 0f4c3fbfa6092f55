"""The feature cache: which HDF5 file holds the features of this model, these weights and these stimuli, and its key.

A cache file is reused only when its key matches. The key is a digest of these parts (`key_parts`):
  checkpoint    the restored checkpoint's step and a SHA-256 of its files (the prefix's .index and .data-* files),
                so a retrained checkpoint at the same path is a different key, and a copy elsewhere the same one
  model         the model's class, its Keras config (architecture and build options, e.g. a ConvRNN's blank_value)
                and its variables (path, shape, dtype)
  input         the stimulus transform: image size and pixel mean / std (the task's InputSpec)
  presentation  the schedule (times, image_on, step_ms)
  dtype         the stored feature precision
  layers        the layers extracted
  stimuli       the stimulus ids and a SHA-256 of the pixels
Where caches live: `out_path` (features.h5 in a fit's workdir) belongs to the first key extracted there; every other
key gets its own file beside it, `<stem>.<first 12 hex digits of its key><ext>` (features.3f9a0c41d2e7.h5), so
switching back and forth between checkpoints, image sizes or dtypes re-extracts each once and never overwrites an
older cache. A file is written as `<path>.partial` and renamed when complete; an interrupted extraction resumes from
the last written batch. A damaged cache (truncated, unreadable) is moved aside to `<path>.damaged` with a note and
extracted again; a damaged .partial is started over with a note.
"""

# n: stimuli, t: time steps
import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Callable

import h5py
import numpy as np
import tensorflow as tf

from goaldriven.neural_fits.pipeline.feature_store import FORMAT_VERSION, FeatureStore
from goaldriven.neural_fits.pipeline.stimuli import Presentation

ON_MISMATCH = ("refuse", "extract")
PART_NAMES = {  # how a note names a part of the key that differs
    "checkpoint": "checkpoint (step or file contents)",
    "model": "model (architecture or build options)",
    "input": "image size or pixel normalisation",
    "presentation": "presentation schedule",
    "dtype": "feature dtype",
    "layers": "layer list",
    "stimuli": "stimuli (ids or pixels)",
}
_BLOCK = 1 << 23  # bytes per read when hashing files and pixels


def _sha256_file(path: str, digest) -> None:
    with tf.io.gfile.GFile(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)


def checkpoint_content(checkpoint: str) -> dict[str, Any]:
    """{"step", "sha256"} of a checkpoint prefix (its .index and .data-* files, by name and content); a string that
    names no checkpoint (e.g. "" for weights passed in memory) is keyed by the string itself."""
    if not checkpoint or not tf.io.gfile.exists(checkpoint + ".index"):
        return {"name": str(checkpoint)}
    digest = hashlib.sha256()
    files = [checkpoint + ".index", *sorted(tf.io.gfile.glob(checkpoint + ".data-*"))]
    for path in files:
        digest.update(os.path.basename(path)[len(os.path.basename(checkpoint)) :].encode() + b"\0")
        _sha256_file(path, digest)
    step = re.search(r"-(\d+)$", checkpoint)
    return {"step": int(step.group(1)) if step else None, "sha256": digest.hexdigest()}


def model_description(model) -> dict[str, Any]:
    """The model's class, a digest of its Keras config and its variables (path, shape, dtype)."""
    try:
        config = json.dumps(model.get_config(), sort_keys=True, default=str)
    except (NotImplementedError, TypeError, AttributeError):
        config = ""  # a model without a config is keyed by its class and variables only
    variables = [(getattr(v, "path", v.name), list(v.shape), str(v.dtype)) for v in model.variables]
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "name": str(getattr(model, "name", "")),
        "config_sha256": hashlib.sha256(config.encode()).hexdigest(),
        "variables_sha256": hashlib.sha256(json.dumps(variables).encode()).hexdigest(),
        "num_variables": len(variables),
    }


def transform_description(transform) -> Any:
    """A StimulusTransform's fields (image size, mean, std); any other callable is keyed by its qualified name."""
    if dataclasses.is_dataclass(transform):
        return {"class": type(transform).__name__, **json.loads(json.dumps(dataclasses.asdict(transform)))}
    return {"callable": f"{getattr(transform, '__module__', '')}.{getattr(transform, '__qualname__', repr(transform))}"}


def stimuli_description(stimuli, ids: np.ndarray) -> dict[str, Any]:
    """The count, a digest of the ids and a SHA-256 of the pixels (read in blocks: an h5py dataset works too)."""
    pixels = hashlib.sha256(f"{tuple(stimuli.shape)} {np.dtype(stimuli.dtype)}".encode())
    rows = max(1, _BLOCK // max(1, int(np.prod(stimuli.shape[1:])) * np.dtype(stimuli.dtype).itemsize))
    for i in range(0, int(stimuli.shape[0]), rows):
        pixels.update(np.ascontiguousarray(stimuli[i : i + rows]).tobytes())
    return {
        "count": len(ids),
        "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "pixels_sha256": pixels.hexdigest(),
    }


def key_parts(*, checkpoint, model, transform, presentation, dtype, layers, stimuli, ids) -> dict[str, Any]:
    """Everything the features depend on (module docstring), as JSON-ready parts."""
    return {
        "checkpoint": checkpoint_content(checkpoint),
        "model": model_description(model),
        "input": transform_description(transform),
        "presentation": dataclasses.asdict(presentation),
        "dtype": str(dtype),
        "layers": list(layers),
        "stimuli": stimuli_description(stimuli, ids),
    }


def cache_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def beside(out_path: str, key: str) -> str:
    """The cache file of `key` next to `out_path`: features.h5 -> features.<12 hex digits>.h5."""
    stem, ext = os.path.splitext(out_path)
    return f"{stem}.{key[:12]}{ext}"


@dataclasses.dataclass
class Slot:
    """Where the features of one key go: a complete cache to reuse (`store`), or a partial file to fill from `start`."""

    path: str
    store: FeatureStore | None = None
    file: h5py.File | None = None
    start: int = 0

    def finish(self) -> FeatureStore:
        """Marks the partial file complete, renames it into place and opens it."""
        self.file.attrs["complete"] = True
        self.file.close()
        os.replace(self.path + ".partial", self.path)
        return FeatureStore.open(self.path)


def open_slot(
    out_path: str,
    parts: dict[str, Any],
    *,
    shapes: dict[str, tuple],
    dtype: str,
    presentation: Presentation,
    ids: np.ndarray,
    model_name: str,
    checkpoint: str,
    on_mismatch: str,
    log: Callable[[str], None],
) -> Slot:
    """The cache of `parts` at or beside `out_path` (module docstring): reused, resumed or newly created.

    on_mismatch: when `out_path` holds another key's features, "refuse" (FileExistsError: nothing is overwritten) or
    "extract" into the file beside it.
    """
    if on_mismatch not in ON_MISMATCH:
        raise ValueError(f"on_mismatch must be one of {ON_MISMATCH}. Received: {on_mismatch!r}")
    key = cache_key(parts)
    own = beside(out_path, key)
    for path in (out_path, own):
        found = _complete(path, key, log)
        if found is not None:
            log(f"features: reusing {path}")
            return Slot(path, store=found)
    target = out_path
    other = _other_key(out_path, key)
    if other is not None:
        differs = _differences(other, parts)
        if on_mismatch == "refuse" and os.path.exists(out_path):
            raise FileExistsError(
                f"{out_path} holds features of another {differs} (features are never overwritten); use a new "
                "--workdir (out_path), or on_mismatch='extract' to extract them into a file beside it."
            )
        target = own
        log(f"features: {out_path} holds features of another {differs}; extracting into {target} (it is kept)")
    file, start = _resume(target, key, log)
    if file is None:
        file = _create(target + ".partial", parts, key, shapes, dtype, presentation, ids, model_name, checkpoint)
    else:
        log(f"features: resuming {target}.partial at stimulus {start}/{len(ids)}")
    return Slot(target, file=file, start=start)


def _read_attrs(path: str) -> dict[str, Any] | None:
    """The attributes of the HDF5 file at `path`; None when it cannot be read (truncated or damaged)."""
    try:
        with h5py.File(path, "r") as f:
            return dict(f.attrs)
    except OSError:
        return None


def _complete(path: str, key: str, log) -> FeatureStore | None:
    """The complete cache at `path` when it holds `key`; a damaged file is moved aside (with a note)."""
    if not os.path.exists(path):
        return None
    attrs = _read_attrs(path)
    if attrs is not None and attrs.get("cache_key") != key:
        return None
    try:
        if attrs is not None:
            return FeatureStore.open(path)
    except ValueError:
        pass
    os.replace(path, path + ".damaged")
    log(f"note: {path} cannot be read (truncated or damaged); moved it to {path}.damaged and extracting again")
    return None


def _other_key(out_path: str, key: str) -> dict[str, Any] | None:
    """The attributes of another key's cache (complete, or partial) that occupies `out_path`; None if it is free."""
    for path in (out_path, out_path + ".partial"):
        if os.path.exists(path):
            attrs = _read_attrs(path)
            if attrs is not None and attrs.get("cache_key") != key:
                return attrs
    return None


def _differences(attrs: dict[str, Any], parts: dict[str, Any]) -> str:
    try:
        old = json.loads(attrs["cache_key_parts"])
    except (KeyError, TypeError, ValueError):
        return "kind (written without a content key, by an older goaldriven)"
    names = [PART_NAMES[k] for k in parts if old.get(k) != parts[k]]
    return ", ".join(names) or "key"


def _resume(target: str, key: str, log) -> tuple[h5py.File | None, int]:
    """The partial file of `target` to continue and its first missing row; (None, 0) to start afresh."""
    partial = target + ".partial"
    if not os.path.exists(partial):
        return None, 0
    try:
        f = h5py.File(partial, "a")
    except OSError as error:
        log(f"note: {partial} cannot be read ({' '.join(str(error).split())[:120]}); starting it over")
        os.remove(partial)
        return None, 0
    try:
        if f.attrs.get("cache_key") == key:
            return f, int(f.attrs["rows_written"])
    except (KeyError, OSError, ValueError):
        pass
    f.close()
    log(f"note: {partial} is not a resumable extraction of these features; starting it over")
    os.remove(partial)
    return None, 0


def _create(partial, parts, key, shapes, dtype, presentation, ids, model_name, checkpoint) -> h5py.File:
    os.makedirs(os.path.dirname(os.path.abspath(partial)), exist_ok=True)
    f = h5py.File(partial, "w")
    group = f.create_group("features")
    for name, shape in shapes.items():
        group.create_dataset(name, shape=(len(ids), *shape), dtype=dtype, chunks=(1, *shape))
    f.create_dataset("stimulus_ids", data=np.asarray(ids).astype(object), dtype=h5py.string_dtype())
    f.attrs.update(
        format_version=FORMAT_VERSION,
        layers=list(shapes),
        times=presentation.times,
        image_on=presentation.image_on,
        step_ms=presentation.step_ms,
        model=model_name,
        checkpoint=str(checkpoint),
        cache_key=key,
        cache_key_parts=json.dumps(parts, sort_keys=True),
        rows_written=0,
        complete=False,
    )
    return f
