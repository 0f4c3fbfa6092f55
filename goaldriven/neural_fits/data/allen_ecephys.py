"""Allen Visual Coding Neuropixels natural scenes from a session NWB 2 file, without AllenSDK or pynwb.

Reference: A. Nayebi, PhD thesis (2022), Section 3.6.1 (spec ch3 A1): spike counts in 10 ms bins from 0 to 250 ms
after each natural scene onset, as rates (count / 0.01 s): (50 trials, 118 images, 25 bins, units), grey frame -1
dropped. Window and unit selection: allen_selection.py. Layout and decisions: docs/allen_data.md.

HDF5 paths read (NWB 2 DynamicTables as AllenSDK writes / reads them: allensdk/brain_observatory/ecephys/
ecephys_session_api/ecephys_nwb_session_api.py, _units.py, _channels.py, probes.py, stimulus_analysis/):

    units/{id, spike_times, spike_times_index, peak_channel_id}      spike_times_index = end offsets (ragged)
    units/{quality, amplitude_cutoff, presence_ratio, isi_violations}     optional: AllenSDK's default unit filter
    general/extracellular_ephys/electrodes/{id, location, valid_data}     location = ecephys structure acronym
    intervals/natural_scenes_presentations/{start_time, stop_time, frame}   frame -1 = grey (float or str column)
    processing/running/running_speed/{data, timestamps}                    cm/s (optional: running modulation)
    general/subject/subject_id                                             the specimen (mouse) id

AllenSDK's `EcephysSession.units` default filter (kept here, `unit_filter=True`): peak channel valid_data and in the
brain (location not empty / "None"), quality == "good", amplitude_cutoff <= 0.1, presence_ratio >= 0.95,
isi_violations <= 0.5 (ecephys/__init__.py UNIT_FILTER_DEFAULTS). Columns absent from the file are not filtered on.
"""

from __future__ import annotations

import h5py
import numpy as np
import scipy.stats

from goaldriven.neural_fits.data.allen_arrays import (
    NUM_SCENES,
    VISUAL_AREAS,
    from_allen_arrays,
    preferred_images,
    trials_by_frame,
)
from goaldriven.neural_fits.data.neural_data import NeuralData, NeuralDataError

# P: presentations, u: units, t: time bins (25 x 10 ms), r: trials, n: images

__all__ = ["read_ecephys_nwb", "binned_spike_counts", "ecephys_running_modulation", "UNIT_FILTER_DEFAULTS"]

UNIT_FILTER_DEFAULTS = {"amplitude_cutoff_maximum": 0.1, "presence_ratio_minimum": 0.95, "isi_violations_maximum": 0.5}
PRESENTATIONS = "intervals/natural_scenes_presentations"
ELECTRODES = "general/extracellular_ephys/electrodes"


def binned_spike_counts(spike_times, onsets, edges_s) -> np.ndarray:
    """(P, t) spikes of one unit in [onset + e_k, onset + e_{k+1}) for every presentation onset (seconds)."""
    spikes = np.sort(np.asarray(spike_times, dtype=np.float64))
    bounds = np.asarray(onsets, dtype=np.float64)[:, None] + np.asarray(edges_s, dtype=np.float64)[None, :]
    return np.diff(np.searchsorted(spikes, bounds, side="left"), axis=1)


def ecephys_running_modulation(counts, frames, speeds, threshold: float = 1.0) -> np.ndarray:
    """(u,) AllenSDK `p_run_mod_ns` (ecephys stimulus_analysis.py `running_modulation` at the preferred image).

    Preferred image = the non-grey image with the largest mean spike count in 0-250 ms. Its presentations split
    into running (mean speed >= threshold cm/s) and stationary (the rest, NaN speeds included, as `np.invert` in
    AllenSDK); with at least 2 of each, p = Welch's t-test p-value, NaN if both means are 0 or too few trials.

    Args:
        counts: (u, P) spike counts 0-250 ms; frames: (P,) image index (-1 grey); speeds: (P,) cm/s.
    """
    counts, frames, speeds, preferred = preferred_images(counts, frames, speeds)
    p = np.full(counts.shape[0], np.nan)
    for unit, image in enumerate(preferred):
        shown = frames == image
        running = speeds[shown] >= threshold
        if 1 < running.sum() < shown.sum() - 1:
            run, stat = counts[unit, shown][running], counts[unit, shown][~running]
            if not (run.mean() == 0 and stat.mean() == 0):
                p[unit] = scipy.stats.ttest_ind(run, stat, equal_var=False).pvalue
    return p


def presentation_running_speed(speed, speed_times, starts, stops) -> np.ndarray:
    """(P,) mean of the running-speed samples whose time lies in [start, stop) (AllenSDK), NaN if none."""
    speed = np.asarray(speed, dtype=np.float64)
    speed_times = np.asarray(speed_times, dtype=np.float64)
    lo = np.searchsorted(speed_times, starts, side="left")
    hi = np.searchsorted(speed_times, stops, side="left")
    csum = np.concatenate([[0.0], np.cumsum(speed)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > lo, (csum[hi] - csum[lo]) / np.maximum(hi - lo, 1), np.nan)


def _column(group: h5py.Group, name: str, path: str, required: bool = True):
    if name not in group:
        if required:
            raise NeuralDataError(
                f"{path}: missing {group.name}/{name}. Fix: pass a Visual Coding Neuropixels session NWB file "
                f"(session_<id>.nwb, brain_observatory_1.1 sessions show natural scenes); layout in docs/allen_data.md."
            )
        return None
    value = group[name][()]
    if value.dtype.kind in "SO":
        value = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in value.reshape(-1)])
    return value


def _as_float(values) -> np.ndarray:
    """Frame column: floats, or strings like '12.0' / 'null' (non-numbers become NaN and are dropped)."""
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    out = np.full(values.shape, np.nan)
    for k, v in enumerate(values.tolist()):
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def read_ecephys_nwb(
    path,
    *,
    areas=VISUAL_AREAS,
    specimen=None,
    unit_filter: bool = True,
    bin_width_ms: float = 10.0,
    window_ms: float = 250.0,
    stimuli=None,
    missing_trials: str | None = None,
) -> NeuralData:
    """NeuralData (118 images, units, 25 bins, 50 trials) of rates in spikes/s from one session NWB file.

    Args:
        path: session_<id>.nwb (EcephysProjectCache, DANDI or the allen-brain-observatory S3 bucket).
        areas: keep units whose peak channel lies in these structures (the thesis' six visual areas).
        specimen: the mouse id used as `animal`; default general/subject/subject_id.
        unit_filter: apply AllenSDK's default unit quality filter (module docstring).
        bin_width_ms, window_ms: bins [k w, (k + 1) w) ms up to window_ms (thesis: 10, 250 -> 25 bins).
        stimuli: optional (118, h, w) natural scenes or a .npy path (session files hold no template).
        missing_trials: None (error if an image was shown fewer times), "min" or "mean".

    Returns:
        NeuralData; attrs["per_unit"] = {allen_id (unit id), p_run_mod_ns, peak_channel_id}.
    """
    path = str(path)
    with h5py.File(path, "r") as f:
        for group in ("units", ELECTRODES, PRESENTATIONS):
            if group not in f:
                _column(f, group, path)
        units, electrodes, table = f["units"], f[ELECTRODES], f[PRESENTATIONS]
        unit_ids = _column(units, "id", path)
        spike_times = _column(units, "spike_times", path)
        ends = _column(units, "spike_times_index", path).astype(np.int64)
        peak = _column(units, "peak_channel_id", path)
        channel_ids = _column(electrodes, "id", path)
        location = _column(electrodes, "location", path)
        valid = _column(electrodes, "valid_data", path, required=False)
        starts = _column(table, "start_time", path).astype(np.float64)
        stops = _column(table, "stop_time", path).astype(np.float64)
        frames = _as_float(_column(table, "frame", path))
        quality = {k: _column(units, k, path, required=False) for k in ("quality", *_METRIC_COLUMNS)}
        running = "processing/running/running_speed"
        speed = (f[f"{running}/data"][()], f[f"{running}/timestamps"][()]) if running in f else None
        animal = specimen if specimen is not None else _text(f, "general/subject/subject_id")
    channel_row = {int(c): k for k, c in enumerate(channel_ids)}
    missing = [int(c) for c in peak if int(c) not in channel_row]
    if missing:
        raise NeuralDataError(f"{path}: peak_channel_id {missing[:3]} not in the electrodes table.")
    rows = np.array([channel_row[int(c)] for c in peak])
    unit_area = location[rows]
    keep = np.isin(unit_area, list(areas))
    if unit_filter:
        keep &= ~np.isin(unit_area, ["", "None", "none", "nan"])
        if valid is not None:
            keep &= valid[rows].astype(bool)
        if quality["quality"] is not None:
            keep &= quality["quality"] == "good"
        for column, (bound, is_max) in _METRIC_COLUMNS.items():
            if quality[column] is not None:
                values = quality[column].astype(np.float64)
                keep &= values <= bound if is_max else values >= bound
    if not keep.any():
        raise NeuralDataError(f"{path}: no unit in areas {list(areas)} passes the unit filter (unit_filter=False?).")
    order = np.argsort(starts, kind="stable")
    starts, stops, frames = starts[order], stops[order], frames[order]
    shown = frames >= -1  # drops NaN frames ('null')
    starts, stops, frames = starts[shown], stops[shown], frames[shown]
    n_bins = int(round(window_ms / bin_width_ms))
    edges = np.arange(n_bins + 1) * bin_width_ms / 1000.0
    begin = np.concatenate([[0], ends[:-1]])
    index = np.flatnonzero(keep)
    counts = np.stack([binned_spike_counts(spike_times[begin[j] : ends[j]], starts, edges) for j in index])  # (u,P,t)
    if speed is None:
        p_run = np.full(len(index), np.nan)
    else:
        speeds = presentation_running_speed(speed[0], speed[1], starts, stops)
        p_run = ecephys_running_modulation(counts.sum(axis=2), frames, speeds)
    trials = trials_by_frame(np.transpose(counts, (1, 0, 2)), frames, NUM_SCENES)  # (r, n, u, t)
    return from_allen_arrays(
        trials,
        area=unit_area[index],
        specimen=str(animal),
        unit_ids=np.asarray(unit_ids)[index].astype(np.int64).astype(str),
        p_run_mod=p_run,
        bin_width_ms=bin_width_ms,
        stimuli=stimuli,
        missing_trials=missing_trials,
        modality="neuropixels",
        per_unit={"peak_channel_id": np.asarray(peak)[index].astype(np.int64)},
        attrs={"unit_filter": bool(unit_filter)},
    )


_METRIC_COLUMNS = {  # column: (bound, bound is a maximum)
    "amplitude_cutoff": (UNIT_FILTER_DEFAULTS["amplitude_cutoff_maximum"], True),
    "presence_ratio": (UNIT_FILTER_DEFAULTS["presence_ratio_minimum"], False),
    "isi_violations": (UNIT_FILTER_DEFAULTS["isi_violations_maximum"], True),
}


def _text(f: h5py.File, name: str) -> str:
    if name not in f:
        return "unknown"
    value = f[name][()]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
