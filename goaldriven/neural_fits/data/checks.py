"""Validation of `NeuralData` fields and the missing-trial policy shared by the converters.

Reference: A. Nayebi, PhD thesis (2022), Sections 2.5.6 / 2.5.8 / 3.6.1 (the recordings validated here); the rules
are those of docs/neural_data_format.md. `neural_data.py` re-exports `validate` and runs it on every
`NeuralData` construction, save and load.

Rules checked (the first broken one raises NeuralDataError naming the field, expected vs received, and the fix):
    responses: numeric, 4-D (n, u, t, r), no empty axis, every value finite (missing trials are not representable)
    stimulus_ids (n,) and unit_ids (u,) unique str; animal / area (u,) str; stimulus_labels (n,) str
    time_bins_ms (t, 2): finite, start < end, sorted by start, non-overlapping
    has_trials False  =>  r = 1;  stimuli (n, h, w, c) uint8 or float32 in [0, 1], or an existing stimuli_path
    presentation / attrs: dicts of str/int/float/bool, NumPy arrays and nested dicts; attrs["per_unit"] arrays (u, ...)

Missing-trial policy (`resolve_trials`, used by the converters): NaN marks a missing trial; None refuses unequal
trial counts, "min" keeps the first k valid trials (k = the smallest count), "mean" keeps trial averages (r = 1).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from goaldriven.neural_fits.data.hdf5_io import NeuralDataError, as_str_array, image_file_shape, resolve_path

if TYPE_CHECKING:
    from goaldriven.neural_fits.data.neural_data import NeuralData

# n: stimuli, u: units, t: time bins, r: trials, h/w/c: stimulus image height/width/channels

_LOG = logging.getLogger(__name__)
_SCALARS = (str, int, float, bool)
_TRIAL_POLICIES = (None, "min", "mean")
_DUPLICATE_FIX = {  # (what the ids name, how to make them unique)
    "stimulus_ids": (
        "stimulus",
        "give every stimulus (row of responses axis 0) its own id; repeated presentations of one image are trials "
        "of one stimulus (axis 3), not extra rows.",
    ),
    "unit_ids": ("unit", "make the unit ids unique (e.g. prefix them with the animal) or merge the repeated units."),
}


def validate(data: NeuralData) -> None:
    """Raise NeuralDataError naming the first problem found (field, expected vs received, and the fix)."""
    resp = data.responses
    if not isinstance(resp, np.ndarray) or resp.dtype.kind not in "fiub":
        raise NeuralDataError(
            f"NeuralData.responses must be a numeric NumPy array; received {type(resp).__name__} "
            f"{getattr(resp, 'dtype', '')}. Fix: pass np.asarray(responses, dtype=np.float32)."
        )
    if resp.ndim != 4:
        raise NeuralDataError(
            f"NeuralData.responses must be 4-D (n stimuli, u units, t time bins, r trials); received {resp.ndim}-D "
            f"shape {resp.shape}. Fix: for trial averages add a trial axis (responses[..., None]); for a single time "
            f"window add a bin axis (responses[:, :, None, :])."
        )
    if 0 in resp.shape:
        raise NeuralDataError(
            f"NeuralData.responses has an empty axis: shape {resp.shape}. Every axis needs >= 1 entry."
        )
    n, u, t, r = resp.shape
    _check_finite(resp)
    _check_labels("stimulus_ids", data.stimulus_ids, n, "axis 0 (stimuli)", unique=True)
    _check_labels("unit_ids", data.unit_ids, u, "axis 1 (units)", unique=True)
    _check_labels("animal", data.animal, u, "axis 1 (units)", unique=False)
    _check_labels("area", data.area, u, "axis 1 (units)", unique=False)
    _check_time_bins(np.asarray(data.time_bins_ms), t)
    if not data.has_trials and r != 1:
        raise NeuralDataError(
            f"NeuralData.has_trials is False but responses has r = {r} entries on axis 3 (trials). Fix: set "
            f"has_trials=True, or average the trials (responses.mean(axis=3, keepdims=True))."
        )
    if data.stimulus_labels is not None:
        _check_labels("stimulus_labels", data.stimulus_labels, n, "axis 0 (stimuli)", unique=False)
    _check_stimuli(data, n)
    normalize_tree(data.presentation, "presentation")
    attrs = normalize_tree(data.attrs, "attrs")
    per_unit = attrs.get("per_unit")
    if per_unit is not None:
        if not isinstance(per_unit, dict):
            raise NeuralDataError("NeuralData.attrs['per_unit'] must be a dict of arrays with first axis u (units).")
        for key, value in per_unit.items():
            if not isinstance(value, np.ndarray) or value.ndim == 0 or value.shape[0] != u:
                raise NeuralDataError(
                    f"NeuralData.attrs['per_unit']['{key}']: expected an array whose axis 0 has u = {u} entries (one "
                    f"per unit); received shape {getattr(value, 'shape', type(value).__name__)}."
                )


def _check_finite(resp: np.ndarray) -> None:
    """Count non-finite values block by block (bounded memory) and report the first one's index."""
    count, first = 0, None
    block = max(1, (64 << 20) // max(1, resp[0].nbytes))
    for start in range(0, resp.shape[0], block):
        bad = ~np.isfinite(resp[start : start + block])
        if bad.any():
            count += int(bad.sum())
            if first is None:
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                first = (first[0] + start,) + first[1:]
    if count:
        raise NeuralDataError(
            f"NeuralData.responses has {count} non-finite value(s) (NaN or inf); the first is at [stimulus {first[0]}, "
            f"unit {first[1]}, bin {first[2]}, trial {first[3]}]. Missing trials are not supported. Fix: trim every "
            f"stimulus to a common trial count (converters: trials='min'), keep trial averages only (trials='mean'), "
            f"or drop the units / stimuli with invalid values."
        )


def _check_labels(name: str, values, expected: int, axis: str, unique: bool) -> None:
    if not isinstance(values, np.ndarray) or values.dtype.kind != "U":
        raise NeuralDataError(f"NeuralData.{name} must be an array of str; received {type(values).__name__}.")
    expected_axis0 = axis.startswith("axis 0")
    if values.shape != (expected,):
        raise NeuralDataError(
            f"NeuralData.{name}: expected shape ({expected},) to match responses {axis} = {expected}; received shape "
            f"{values.shape}. Fix: give exactly one {name} entry per {'stimulus' if expected_axis0 else 'unit'}."
        )
    if unique:
        names, counts = np.unique(values, return_counts=True)
        duplicated = names[counts > 1]
        if duplicated.size:
            shown = ", ".join(repr(str(x)) for x in duplicated[:5])
            kind, fix = _DUPLICATE_FIX[name]
            raise NeuralDataError(
                f"NeuralData.{name} must be unique; {duplicated.size} id(s) repeat, e.g. {shown} ({kind} ids). Fix: {fix}"
            )


def _check_time_bins(bins: np.ndarray, t: int) -> None:
    if bins.shape != (t, 2):
        raise NeuralDataError(
            f"NeuralData.time_bins_ms: expected shape ({t}, 2) ([start, end) ms per bin, matching responses axis 2 "
            f"(time bins) = {t}); received shape {bins.shape}."
        )
    if not np.all(np.isfinite(bins)):
        raise NeuralDataError("NeuralData.time_bins_ms has NaN/inf entries. Fix: give finite [start, end) ms.")
    empty = np.flatnonzero(bins[:, 1] <= bins[:, 0])
    if empty.size:
        k = int(empty[0])
        raise NeuralDataError(
            f"NeuralData.time_bins_ms: bin {k} = [{bins[k, 0]:g}, {bins[k, 1]:g}) has end <= start. Fix: each bin is "
            f"[start, end) ms with start < end."
        )
    unsorted = np.flatnonzero(bins[1:, 0] <= bins[:-1, 0])
    if unsorted.size:
        k = int(unsorted[0]) + 1
        raise NeuralDataError(
            f"NeuralData.time_bins_ms must be sorted by start time; bin {k} starts at {bins[k, 0]:g} ms, not after bin "
            f"{k - 1} ({bins[k - 1, 0]:g} ms). Fix: sort the bins (and responses axis 2 with them)."
        )
    overlap = np.flatnonzero(bins[1:, 0] < bins[:-1, 1])
    if overlap.size:
        k = int(overlap[0]) + 1
        raise NeuralDataError(
            f"NeuralData.time_bins_ms: bins {k - 1} [{bins[k - 1, 0]:g}, {bins[k - 1, 1]:g}) and {k} "
            f"[{bins[k, 0]:g}, {bins[k, 1]:g}) overlap. Fix: use non-overlapping bins (sliding windows are not stored)."
        )


def _check_stimuli(data: NeuralData, n: int) -> None:
    if data.stimuli is not None and data.stimuli_path is not None:
        raise NeuralDataError("NeuralData has both stimuli and stimuli_path. Fix: give one of them.")
    if data.stimuli is not None:
        _check_image_shape(data.stimuli.shape, n, "NeuralData.stimuli")
        kind = data.stimuli.dtype
        if kind not in (np.uint8, np.float32):
            raise NeuralDataError(
                f"NeuralData.stimuli must be uint8 (0-255) or float32 in [0, 1]; received dtype {kind}. Fix: e.g. "
                f"stimuli.astype(np.float32) / 255."
            )
        in_range = kind != np.float32 or (
            np.all(np.isfinite(data.stimuli)) and data.stimuli.min() >= 0 and data.stimuli.max() <= 1
        )
        if not in_range:
            raise NeuralDataError(
                f"NeuralData.stimuli float32 pixels must lie in [0, 1]; received range [{data.stimuli.min():g}, "
                f"{data.stimuli.max():g}]. Fix: divide 0-255 images by 255, or pass uint8."
            )
    if data.stimuli_path is not None:
        resolved = resolve_path(data.stimuli_path, data.base_dir)
        if not os.path.exists(resolved):
            raise NeuralDataError(
                f"NeuralData.stimuli_path {data.stimuli_path!r} resolves to {resolved!r}, which does not exist. Fix: "
                f"put the image file there (relative paths are relative to the data file's folder) or fix the path."
            )
        _check_image_shape(image_file_shape(resolved), n, f"stimuli file {resolved}")


def _check_image_shape(shape: tuple, n: int, where: str) -> None:
    if len(shape) != 4:
        raise NeuralDataError(f"{where} must be 4-D (n, h, w, c); received shape {tuple(shape)}.")
    if shape[0] != n:
        raise NeuralDataError(
            f"{where} holds {shape[0]} images but responses has n = {n} stimuli (axis 0). Fix: give one image per "
            f"stimulus, in stimulus_ids order."
        )


def normalize_tree(tree, where: str) -> dict:
    """Copy of a metadata dict with lists -> arrays, NumPy scalars -> Python; rejects what HDF5 cannot hold."""
    if not isinstance(tree, dict):
        raise NeuralDataError(f"NeuralData.{where} must be a dict; received {type(tree).__name__}.")
    out = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key or "/" in key or key == ".":
            raise NeuralDataError(f"NeuralData.{where}: key {key!r} must be a non-empty str without '/'.")
        if isinstance(value, dict):
            out[key] = normalize_tree(value, f"{where}['{key}']")
            continue
        if isinstance(value, (list, tuple)):
            value = np.asarray(value)
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "SUO":
                if value.dtype.kind == "O" and not all(isinstance(x, (str, bytes)) for x in value.reshape(-1).tolist()):
                    raise NeuralDataError(f"NeuralData.{where}['{key}']: object arrays must hold str only.")
                value = as_str_array(value)
            elif value.dtype.kind not in "biuf":
                raise NeuralDataError(f"NeuralData.{where}['{key}']: arrays of dtype {value.dtype} cannot be stored.")
        elif not isinstance(value, _SCALARS):
            raise NeuralDataError(
                f"NeuralData.{where}['{key}']: a value of type {type(value).__name__} cannot be stored. Fix: use str, "
                f"int, float, bool, a NumPy array or a dict of these (omit the key for 'no value')."
            )
        out[key] = value
    return out


def resolve_trials(responses: np.ndarray, trials: str | None, source: str) -> tuple[np.ndarray, bool]:
    """(n, u, t, r) with NaN marking missing trials -> ((n, u, t, r'), has_trials) under the `trials` policy."""
    if trials not in _TRIAL_POLICIES:
        raise ValueError(f"trials must be one of {_TRIAL_POLICIES}; received {trials!r}.")
    r = responses.shape[3]
    valid = np.isfinite(responses).all(axis=2)  # (n, u, r): a trial with any invalid bin is missing
    counts = valid.sum(axis=2)  # (n, u)
    low, high = int(counts.min()), int(counts.max())
    if low == r and trials != "mean":
        return responses, r > 1
    if low == 0:
        n_empty = int(np.sum(counts == 0))
        raise NeuralDataError(
            f"{source}: {n_empty} (stimulus, unit) pair(s) have no valid trial. Fix: drop those stimuli or units first."
        )
    if trials is None:
        short = int(np.sum(np.any(counts < high, axis=1)))
        raise NeuralDataError(
            f"{source}: trial counts differ across stimuli/units (min {low}, max {high}; {short} of "
            f"{counts.shape[0]} stimuli have fewer than {high}). Fix: pass trials='min' to keep the first {low} trials "
            f"of every stimulus, or trials='mean' to keep trial averages only."
        )
    if trials == "min":
        order = np.argsort(~valid, axis=2, kind="stable")[:, :, :low]  # valid trials first, in their original order
        kept = np.take_along_axis(responses, order[:, :, None, :], axis=3)
        _LOG.info(
            "%s: trials='min' kept %d trials per stimulus and unit; dropped %d of %d trial responses.",
            source,
            low,
            int(counts.sum()) - low * counts.size,
            int(counts.sum()),
        )
        return np.ascontiguousarray(kept), low > 1
    mask = valid[:, :, None, :]
    total = np.where(mask, responses, 0.0).sum(axis=3, dtype=np.float64)
    _LOG.info("%s: trials='mean' averaged %d to %d valid trials per stimulus and unit.", source, low, high)
    return (total / counts[:, :, None]).astype(np.float32)[..., None], False
