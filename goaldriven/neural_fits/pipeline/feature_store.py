"""A stimulus set's features per layer (in memory or in an extraction's HDF5 file) and the views the mappings take.

A layer is stored as (n, t, ...): n stimuli, t model steps (1 for a feedforward model, which stands for every step),
then the layer's own axes, e.g. (h, w, c). The file written by extraction.py:
  /features/<layer>   (n, t, ...) float32 or float16, one chunk per stimulus
  /stimulus_ids       (n,) str
  attrs: format_version, layers, times, image_on, step_ms, model, checkpoint, cache_key, cache_key_parts (the JSON
         of what the key digests: feature_cache.py), rows_written, complete

`store.layer(name)` is a LayerFeatures view; nothing is read until one of its methods asks. `steps` are model steps
(`steps_at` turns time-bin starts in ms into them):
    flat(steps)      (n, p) float32, the features averaged over `steps` and flattened; read in row chunks
    per_step(steps)  (n, t', p) float32, flattened at each of `steps`
    maps(steps)      a lazy (n, t', h, w, c) view: indexing reads only the rows asked for (the factored readout)
    gram(steps)      mappings.gram.GramFeatures of flat(steps): from memory when the float32 features fit the view's
                     `max_bytes`, otherwise streamed from the file in row blocks (memory: two blocks)
    for_mapping(mapping, steps, over_time)  the one of these a mapping class takes, by its capability flags
"""

# n: stimuli, t: model steps, t': chosen steps, h/w: space, c: channels, p: flattened features
import os
from typing import Any, Sequence

import h5py
import numpy as np

from goaldriven.neural_fits.mappings.base import Mapper
from goaldriven.neural_fits.mappings.gram import GramFeatures
from goaldriven.neural_fits.pipeline.stimuli import Presentation

FORMAT_VERSION = 1
MAX_FEATURE_BYTES = 4 * 2**30  # a layer's float32 (n, p) features above this reach Gram mappings streamed from file


class StepMaps:
    """A lazy (n, t', ...) view of a stored layer (n, t, ...) at chosen steps; indexing reads only those rows."""

    def __init__(self, array, steps: Sequence[int]):
        self.array, self.steps = array, list(steps)
        self.shape = (array.shape[0], len(self.steps), *array.shape[2:])
        self.dtype = np.float32
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, index):
        if isinstance(index, np.ndarray | list):  # h5py reads increasing indices only: read sorted, then reorder
            index = np.asarray(index)
            order = np.argsort(index)
            block = np.asarray(self.array[np.sort(index).tolist()], np.float32)[:, self.steps]
            out = np.empty_like(block)
            out[order] = block
            return out
        return np.asarray(self.array[index], np.float32)[:, self.steps]


class LayerFeatures:
    """One stored layer (n, t, ...) in the shapes the mappings take (module docstring); owned by a FeatureStore."""

    def __init__(self, name: str, array, presentation: Presentation, max_bytes: int = MAX_FEATURE_BYTES):
        self.name, self.array, self.presentation, self.max_bytes = name, array, presentation, int(max_bytes)
        self.num_stimuli, self.num_steps = int(array.shape[0]), int(array.shape[1])
        self.num_features = int(np.prod(array.shape[2:]))  # p per step

    def steps_at(self, starts_ms: Sequence[float]) -> list[int]:
        """The stored step standing for each time bin starting at `starts_ms` (feedforward features: the only one)."""
        if self.num_steps == 1:
            return [0] * len(starts_ms)
        steps = [self.presentation.step_of(start) for start in starts_ms]
        for start, step in zip(starts_ms, steps):
            if not 0 <= step < self.num_steps:
                raise ValueError(
                    f"the bin at {start} ms maps to model step {step}, but {self.name!r} has steps 0.."
                    f"{self.num_steps - 1} ({self.presentation.step_ms} ms each); extract with more time steps "
                    "(Presentation(times=...))."
                )
        return steps

    def flat(self, steps: Sequence[int] | None = None, chunk_bytes: int = 2**28) -> np.ndarray:
        """(n, p) float32: the features averaged over `steps` (all stored steps if None), read in row chunks."""
        rows = max(1, chunk_bytes // (8 * self.num_features * len(self._steps(steps))))
        out = np.empty((self.num_stimuli, self.num_features), np.float32)
        for i in range(0, self.num_stimuli, rows):
            out[i : i + rows] = self._rows(steps, i, i + rows)
        return out

    def per_step(self, steps: Sequence[int]) -> np.ndarray:
        """(n, t', p) float32: the features at each of `steps`, flattened per step."""
        return np.stack([self.flat([s]) for s in steps], axis=1)

    def maps(self, steps: Sequence[int]) -> StepMaps:
        """A lazy (n, t', ...) view of the unflattened features at `steps` (feedforward: the one step, repeated)."""
        return StepMaps(self.array, [0] * len(steps) if self.num_steps == 1 else steps)

    def gram(self, steps: Sequence[int] | None = None) -> GramFeatures:
        """GramFeatures of `flat(steps)`: computed in memory, or streamed when the float32 features exceed max_bytes."""
        if 4 * self.num_stimuli * self.num_features > self.max_bytes:
            return self.streamed_gram(steps, block_bytes=self.max_bytes // 2)
        return GramFeatures(self.flat(steps))

    def streamed_gram(self, steps: Sequence[int] | None, block_bytes: int) -> GramFeatures:
        """GramFeatures of `flat(steps)` without holding it: row blocks of at most `block_bytes` (float64) each.

        One pass for the column means, then the N x N Gram of the centred rows block pair by block pair (k blocks:
        k (k + 1) / 2 block reads), so memory stays at two blocks whatever the layer's size.
        """
        n = self.num_stimuli
        rows = max(1, int(block_bytes) // (8 * self.num_features * len(self._steps(steps))))
        starts = list(range(0, n, rows))
        mean = sum(self._rows(steps, i, i + rows).sum(axis=0, dtype=np.float64) for i in starts) / n
        gram = np.empty((n, n))
        for a, i in enumerate(starts):
            block_i = self._rows(steps, i, i + rows) - mean
            for j in starts[a:]:
                block_j = block_i if j == i else self._rows(steps, j, j + rows) - mean
                gram[i : i + rows, j : j + rows] = block_i @ block_j.T
                gram[j : j + rows, i : i + rows] = gram[i : i + rows, j : j + rows].T
        return GramFeatures(gram=gram, n_features=self.num_features)

    def for_mapping(self, mapping: type[Mapper], steps: Sequence[int], *, over_time: bool = False):
        """What `mapping` (a class of mappings.MAPPINGS) takes for these steps.

        over_time False (one mapping of the features averaged over `steps`): the shared Gram for an accepts_gram
        mapping when the layer is wider than the stimuli (p > n), else flat(steps). over_time True (one mapping
        shared by the steps, a temporally fixed fit): maps(steps) for a needs_maps mapping, else per_step(steps).
        """
        if over_time:
            return self.maps(steps) if mapping.needs_maps else self.per_step(steps)
        if mapping.accepts_gram and self.num_features > self.num_stimuli:
            return self.gram(steps)
        return self.flat(steps)

    def _steps(self, steps: Sequence[int] | None) -> list[int]:
        if self.num_steps == 1:
            return [0]  # feedforward features stand for every step
        chosen = list(range(self.num_steps)) if steps is None else sorted(set(int(s) for s in steps))
        if not chosen or any(not 0 <= s < self.num_steps for s in chosen):
            raise ValueError(f"steps {steps} out of range for {self.name!r} with {self.num_steps} stored steps.")
        return chosen

    def _rows(self, steps: Sequence[int] | None, start: int, stop: int) -> np.ndarray:
        """(rows, p) float64: rows start..stop of `flat(steps)`, reading only those steps."""
        steps = self._steps(steps)
        block = self.array[start:stop, steps] if len(steps) < self.num_steps else self.array[start:stop]
        block = np.asarray(block)  # (b, s, ...)
        return block.mean(axis=1, dtype=np.float64).reshape(len(block), -1)


class FeatureStore:
    """Per-layer features (n, t, ...) of a stimulus set, held in memory or read from an HDF5 file on demand."""

    def __init__(self, arrays: dict[str, Any], *, stimulus_ids, presentation: Presentation, attrs=None, file=None):
        self.arrays = arrays
        self.stimulus_ids = np.asarray(stimulus_ids).astype(str)
        self.presentation = presentation
        self.attrs = dict(attrs or {})
        self._file = file
        self.path = None if file is None else file.filename  # the HDF5 file of a file-backed store

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def __getitem__(self, layer: str):
        """The stored (n, t, ...) array (an h5py dataset for a file-backed store)."""
        if layer not in self.arrays:
            raise KeyError(f"no features of layer {layer!r}; the store has {list(self.arrays)}.")
        return self.arrays[layer]

    def layer(self, name: str, max_bytes: int = MAX_FEATURE_BYTES) -> LayerFeatures:
        """The views of one layer; `max_bytes` bounds the float32 (n, p) features `gram` computes in memory."""
        return LayerFeatures(name, self[name], self.presentation, max_bytes)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @classmethod
    def open(cls, path: str) -> "FeatureStore":
        """A store reading the HDF5 file written by `extraction.extract_features(out_path=path)`."""
        if not os.path.exists(path):
            partial = path + ".partial"
            hint = f" (an interrupted extraction left {partial}; rerun it to finish)" if os.path.exists(partial) else ""
            raise FileNotFoundError(f"no feature file {path}{hint}.")
        try:
            f = h5py.File(path, "r")
        except OSError as error:
            raise ValueError(
                f"{path} cannot be read as a feature file ({' '.join(str(error).split())}): it is truncated or damaged. "
                "Fix: delete it and extract again (goaldriven-fit moves a damaged cache aside by itself)."
            ) from error
        if not f.attrs.get("complete", False):
            f.close()
            raise ValueError(f"{path} is an incomplete feature file; rerun the extraction that wrote it.")
        try:
            presentation = Presentation(
                times=int(f.attrs["times"]), image_on=int(f.attrs["image_on"]), step_ms=float(f.attrs["step_ms"])
            )
            arrays = {name: f["features"][name] for name in f.attrs["layers"]}
            ids = f["stimulus_ids"].asstr()[...]
        except (KeyError, OSError) as error:
            f.close()
            raise ValueError(
                f"{path} is not a readable feature file ({type(error).__name__}: {' '.join(str(error).split())}). "
                "Fix: delete it and extract again."
            ) from error
        attrs = {k: f.attrs[k] for k in ("model", "checkpoint", "cache_key") if k in f.attrs}
        return cls(arrays, stimulus_ids=ids, presentation=presentation, attrs=attrs, file=f)
