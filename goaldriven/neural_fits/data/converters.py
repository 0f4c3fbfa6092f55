"""Build `NeuralData` from the layouts public recordings come in; merge animals; normalize to a blank image.

Reference: A. Nayebi, PhD thesis (2022), Section 2.5.6 (Majaj et al. 2015 V4/IT data, responses "normalized to the
average response to a blank image"; spec ch2 A-6: subtraction per unit and time bin) and Section 3.6.1 (Allen
Brain Observatory natural scenes, spec ch3 A1).

Layouts read here:
- `from_trial_array`: a NumPy array (trials, stimuli, units), e.g. the AllenSDK natural-scenes "mean sweep
  response" of two-photon data (mean dF/F per presentation; 50 trials x 118 images x cells), or
  (trials, stimuli, units, bins) spike counts, e.g. Neuropixels counts in 10 ms bins from 0 to 250 ms; counts become
  rates: rate = count / (bin_width_ms / 1000) spikes/s.
- `from_brainscore_netcdf` (defined in brainscore_netcdf.py, re-exported here): a Brain-Score / brainio neural
  assembly saved as NetCDF4, e.g. "dicarlo.MajajHong2015"; layout in that module's docstring.

Unequal trial counts (some images repeated more often, or NaN-padded trials) are never handled silently: pass
trials="min" (keep the first k valid trials of every stimulus and unit, k = the smallest count; the number dropped is
logged) or trials="mean" (trial averages over the valid trials; r = 1, has_trials False).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from goaldriven.neural_fits.data.brainscore_netcdf import from_brainscore_netcdf
from goaldriven.neural_fits.data.checks import resolve_trials
from goaldriven.neural_fits.data.neural_data import NeuralData, NeuralDataError

# n: stimuli, u: units, t: time bins, r: trials, P: presentations (stimulus x repetition rows of an assembly)

__all__ = ["from_trial_array", "from_brainscore_netcdf", "concatenate_animals", "normalize_to_blank"]


def _per_unit(value, u: int, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        return np.full(u, str(array.item()))
    if array.shape != (u,):
        raise ValueError(f"{name} must be a str or one entry per unit ({u},); received shape {array.shape}.")
    return array.astype(str)


def from_trial_array(
    trials: np.ndarray,
    *,
    stimulus_ids=None,
    unit_ids=None,
    animal="animal0",
    area="unknown",
    bin_width_ms: float | None = None,
    start_ms: float = 0.0,
    time_window_ms: tuple[float, float] = (0.0, 250.0),
    counts_to_rates: bool = True,
    missing_trials: str | None = None,
    stimuli=None,
    stimulus_labels=None,
    presentation: dict | None = None,
    attrs: dict | None = None,
) -> NeuralData:
    """NeuralData from (trials, stimuli, units) or (trials, stimuli, units, bins) arrays.

    Args:
        trials: (r, n, u) responses in one window (Allen mean sweep response), or (r, n, u, t) spike counts.
        stimulus_ids: (n,) ids; default "0", "1", ... (the Allen image index).
        unit_ids: (u,) ids; default "<animal>/<index>".
        animal, area: a str for all units or one per unit.
        bin_width_ms, start_ms: 4-D input only: bin k covers [start + k w, start + (k + 1) w) ms (Neuropixels: 10, 0).
        time_window_ms: 3-D input only: the window the responses summarize (Allen natural scenes: 0-250 ms).
        counts_to_rates: 4-D input only: divide counts by the bin width in s (spikes/s).
        missing_trials: None, "min" or "mean": how NaN-marked missing trials are handled (module docstring).
        stimuli, stimulus_labels, presentation, attrs: passed to NeuralData.
    """
    array = np.asarray(trials)
    if array.ndim == 3:
        if bin_width_ms is not None:
            raise ValueError("bin_width_ms applies to 4-D (trials, stimuli, units, bins) arrays; use time_window_ms.")
        responses = np.transpose(array, (1, 2, 0))[:, :, None, :]  # (n, u, 1, r)
        time_bins = np.asarray([time_window_ms], dtype=np.float64)
    elif array.ndim == 4:
        if bin_width_ms is None or not bin_width_ms > 0:
            raise ValueError(
                f"4-D spike counts need a positive bin_width_ms (Neuropixels: 10); received {bin_width_ms}."
            )
        responses = np.transpose(array, (1, 2, 3, 0))  # (n, u, t, r)
        if counts_to_rates:
            responses = responses / (bin_width_ms / 1000.0)
        starts = start_ms + bin_width_ms * np.arange(array.shape[3])
        time_bins = np.stack([starts, starts + bin_width_ms], axis=1)
    else:
        raise ValueError(
            f"trials must be (trials, stimuli, units) or (trials, stimuli, units, bins); received shape {array.shape}."
        )
    responses = np.asarray(responses, dtype=np.float32)
    n, u = responses.shape[:2]
    responses, has_trials = resolve_trials(responses, missing_trials, "from_trial_array")
    animals = _per_unit(animal, u, "animal")
    return NeuralData(
        responses=responses,
        stimulus_ids=np.arange(n).astype(str) if stimulus_ids is None else stimulus_ids,
        unit_ids=np.char.add(np.char.add(animals, "/"), np.arange(u).astype(str)) if unit_ids is None else unit_ids,
        animal=animals,
        area=_per_unit(area, u, "area"),
        time_bins_ms=time_bins,
        has_trials=has_trials,
        stimuli=stimuli,
        stimulus_labels=stimulus_labels,
        presentation=dict(presentation or {}),
        attrs=dict(attrs or {}),
    )


# ------------------------------------------------------------------------------------------------ combinations
def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return type(a) is type(b) and a == b


def concatenate_animals(datasets: list[NeuralData]) -> NeuralData:
    """Concatenate units of recordings of the same stimuli and time bins (stimuli reordered to the first's order).

    Metadata: attrs["per_unit"] arrays present in every input are concatenated; other attrs / presentation keys are
    kept only where every input agrees.
    """
    if not datasets:
        raise ValueError("concatenate_animals needs at least one NeuralData.")
    first = datasets[0]
    ordered, indexes = [], []
    for k, data in enumerate(datasets):
        if set(data.stimulus_ids.tolist()) != set(first.stimulus_ids.tolist()):
            missing = sorted(set(first.stimulus_ids.tolist()) - set(data.stimulus_ids.tolist()))[:5]
            extra = sorted(set(data.stimulus_ids.tolist()) - set(first.stimulus_ids.tolist()))[:5]
            raise NeuralDataError(
                f"concatenate_animals: input {k} has different stimulus ids than input 0 (missing e.g. {missing}, "
                f"extra e.g. {extra}). Fix: restrict every recording to the common stimuli first."
            )
        if not np.array_equal(data.time_bins_ms, first.time_bins_ms):
            raise NeuralDataError(
                f"concatenate_animals: input {k} time bins {data.time_bins_ms.tolist()} differ from input 0 "
                f"{first.time_bins_ms.tolist()}. Fix: rebin to common bins first."
            )
        if data.num_trials != first.num_trials or data.has_trials != first.has_trials:
            raise NeuralDataError(
                f"concatenate_animals: input {k} has {data.num_trials} trials (has_trials={data.has_trials}), input 0 "
                f"has {first.num_trials} (has_trials={first.has_trials}). Fix: trim to a common trial count or average."
            )
        position = {s: i for i, s in enumerate(data.stimulus_ids.tolist())}
        index = np.array([position[s] for s in first.stimulus_ids.tolist()])
        if data.stimulus_labels is not None and first.stimulus_labels is not None:
            if not np.array_equal(data.stimulus_labels[index], first.stimulus_labels):
                raise NeuralDataError(f"concatenate_animals: input {k} stimulus_labels disagree with input 0.")
        ordered.append(data.responses[index])
        indexes.append(index)
    all_ids = np.concatenate([d.unit_ids for d in datasets])
    names, counts = np.unique(all_ids, return_counts=True)
    if np.any(counts > 1):
        raise NeuralDataError(
            f"concatenate_animals: unit ids repeat across inputs, e.g. {names[counts > 1][:5].tolist()}. Fix: prefix "
            f"unit ids with the animal name."
        )
    per_units = [d.attrs.get("per_unit", {}) for d in datasets]
    shared = [k for k in per_units[0] if all(k in p for p in per_units[1:])]
    attrs = {
        k: v for k, v in first.attrs.items() if k != "per_unit" and all(_same(v, d.attrs.get(k)) for d in datasets)
    }
    if shared:
        attrs["per_unit"] = {k: np.concatenate([p[k] for p in per_units]) for k in shared}
    presentation = {
        k: v for k, v in first.presentation.items() if all(_same(v, d.presentation.get(k)) for d in datasets)
    }
    stimuli = first.stimuli
    if stimuli is None and first.stimuli_path is None:  # images held by a later input, put in input 0's order
        source = next((k for k, d in enumerate(datasets) if d.stimuli is not None), None)
        stimuli = None if source is None else datasets[source].stimuli[indexes[source]]
    return NeuralData(
        responses=np.concatenate(ordered, axis=1),
        stimulus_ids=first.stimulus_ids,
        unit_ids=all_ids,
        animal=np.concatenate([d.animal for d in datasets]),
        area=np.concatenate([d.area for d in datasets]),
        time_bins_ms=first.time_bins_ms,
        has_trials=first.has_trials,
        stimuli=stimuli,
        stimuli_path=first.stimuli_path,
        stimulus_labels=first.stimulus_labels,
        presentation=presentation,
        attrs=attrs,
        base_dir=first.base_dir,
    )


def normalize_to_blank(data: NeuralData, blank_responses, mode: str = "subtract") -> NeuralData:
    """Responses relative to the mean response to a blank image, per unit and time bin (spec ch2 A-6).

    subtract: x - b (default, A-6);  divide: x / b (needs b > 0).  blank_responses: (u, t) trial-averaged blank
    responses, or (u,) applied to every bin.
    """
    if mode not in ("subtract", "divide"):
        raise ValueError(f"mode must be 'subtract' or 'divide'; received {mode!r}.")
    blank = np.asarray(blank_responses, dtype=np.float64)
    u, t = data.num_units, data.num_time_bins
    if blank.shape == (u,):
        blank = blank[:, None]
    if blank.shape not in ((u, t), (u, 1)):
        raise ValueError(f"blank_responses must be (u, t) = ({u}, {t}) or (u,) = ({u},); received {blank.shape}.")
    blank = np.broadcast_to(blank, (u, t))
    if not np.all(np.isfinite(blank)):
        raise NeuralDataError("normalize_to_blank: blank_responses has NaN/inf. Fix: average valid blank trials only.")
    if mode == "divide" and np.any(blank <= 0):
        bad = np.flatnonzero(np.any(blank <= 0, axis=1))
        raise NeuralDataError(
            f"normalize_to_blank(mode='divide'): {bad.size} unit(s) have a blank response <= 0 (e.g. "
            f"{data.unit_ids[bad[:3]].tolist()}). Fix: use mode='subtract' or drop those units."
        )
    b = blank[None, :, :, None]
    responses = data.responses - b if mode == "subtract" else data.responses / b
    note = "subtracted" if mode == "subtract" else "divided by"
    note = f"{note} the mean blank-image response per unit and time bin"
    presentation = dict(data.presentation)
    previous = presentation.get("normalization")
    presentation["normalization"] = note if not previous else f"{previous}; {note}"
    return dataclasses.replace(data, responses=responses.astype(np.float32), presentation=presentation)
