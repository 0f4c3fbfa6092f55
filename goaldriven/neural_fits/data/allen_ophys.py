"""Allen Brain Observatory two-photon natural scenes from an ophys experiment NWB 1.x file, without AllenSDK.

Reference: A. Nayebi, PhD thesis (2022), Section 3.6.1 (spec ch3 A1, Ambiguity 1): the calcium responses are the
AllenSDK `NaturalScenes` "mean sweep response", (50 trials, 118 images, cells), grey frame -1 dropped; units are
then selected with Allen's `p_run_mod_ns` (allen_selection.py). Layout and decisions: docs/allen_data.md.

HDF5 paths read (AllenSDK allensdk/core/brain_observatory_nwb_data_set.py, `BrainObservatoryNwbDataSet`):

    stimulus/presentation/natural_scenes_stimulus/data             (P,) image index, -1 = grey
    stimulus/presentation/natural_scenes_stimulus/frame_duration   (P, 2) [start, end] imaging-frame indices
    stimulus/templates/natural_scenes_image_stack/data             (118, 918, 1174) uint8 (optional)
    processing/brain_observatory_pipeline/ImageSegmentation/cell_specimen_ids            (cells,)
    processing/brain_observatory_pipeline/Fluorescence/imaging_plane_1/{data, timestamps, neuropil_traces, r}
        pipeline >= 2.0: .../Fluorescence/imaging_plane_1_demixed_signal/data and
                         .../Fluorescence/imaging_plane_1_neuropil_response/{data, r}
    processing/brain_observatory_pipeline/DfOverF/imaging_plane_1/{data, timestamps}      (cells, T)
    processing/brain_observatory_pipeline/BehavioralTimeSeries/running_speed/{data, timestamps}   cm/s
    general/optophysiology/imaging_plane_1/{location, imaging depth}, general/{specimen_name, session_id,
        experiment_container_id, generated_by}

Mean sweep response, as AllenSDK's StimulusAnalysis.get_sweep_response computes it (response="sweep", default):
L = end - start of the second presentation (sorted by start), the trace F is the neuropil-corrected fluorescence
F_cell - r F_neuropil (demixed F_cell from pipeline 2.0), and for a presentation starting at imaging frame s

    mean_sweep = 100 * ( mean(F[s : s + 2L]) / mean(F[s - 4L : s]) - 1 )       (percent dF/F, 1 s baseline)

response="dff" averages the pipeline's DfOverF trace over the same [s, s + 2L) frames instead (no baseline).
Running speed per presentation = mean speed over [s, s + 2L) (NaN if any sample is NaN, as AllenSDK's np.mean).
"""

from __future__ import annotations

import h5py
import numpy as np
import scipy.stats

from goaldriven.neural_fits.data.allen_arrays import NUM_SCENES, from_allen_arrays, preferred_images, trials_by_frame
from goaldriven.neural_fits.data.neural_data import NeuralData, NeuralDataError

# P: presentations, T: imaging frames, c: cells, r: trials, n: images

__all__ = [
    "read_ophys_nwb",
    "mean_sweep_responses",
    "sweep_running_speed",
    "ophys_running_modulation",
    "align_running_speed",
]

PIPELINE = "processing/brain_observatory_pipeline"
STIMULUS = "stimulus/presentation/natural_scenes_stimulus"
TEMPLATE = "stimulus/templates/natural_scenes_image_stack/data"


def mean_sweep_responses(traces, starts, sweep_length: int, baseline: bool = True) -> np.ndarray:
    """(c, P) mean response of every cell to every presentation (module docstring formula).

    Args:
        traces: (c, T) fluorescence (baseline=True, AllenSDK) or dF/F (baseline=False).
        starts: (P,) imaging frame of each presentation onset.
        sweep_length: L, imaging frames of one presentation (AllenSDK: end - start of the 2nd presentation).
        baseline: divide by the mean of the 4L frames before onset (percent change) as AllenSDK does.
    """
    traces = np.asarray(traces, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    L = int(sweep_length)
    if L < 1:
        raise ValueError(f"sweep_length must be >= 1 imaging frame; received {sweep_length}.")
    first = 4 * L if baseline else 0
    if starts.min() < first or starts.max() + 2 * L > traces.shape[1]:
        raise NeuralDataError(
            f"mean_sweep_responses: presentations need frames [{first} before, {2 * L} after] onset inside the "
            f"{traces.shape[1]}-frame trace; onsets span {starts.min()}..{starts.max()}. Fix: pass the matching trace."
        )
    csum = np.concatenate([np.zeros((traces.shape[0], 1)), np.cumsum(traces, axis=1)], axis=1)  # (c, T + 1)
    response = (csum[:, starts + 2 * L] - csum[:, starts]) / (2 * L)
    if not baseline:
        return response
    base = (csum[:, starts] - csum[:, starts - 4 * L]) / (4 * L)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 100.0 * (response / base - 1.0)


def sweep_running_speed(speed, starts, sweep_length: int) -> np.ndarray:
    """(P,) mean running speed over each presentation's [s, s + 2L) frames (NaN if a sample there is NaN)."""
    speed = np.asarray(speed, dtype=np.float64)
    return np.array([speed[s : s + 2 * int(sweep_length)].mean() for s in np.asarray(starts, dtype=np.int64)])


def align_running_speed(speed, speed_times, frame_times) -> np.ndarray:
    """Running speed on the imaging frames: NaN where the speed trace starts late or ends early (AllenSDK)."""
    speed = np.asarray(speed, dtype=np.float64).reshape(len(speed_times), -1)[:, 0]
    frame_times = np.asarray(frame_times, dtype=np.float64)
    offset = int(np.searchsorted(frame_times, speed_times[0]))
    out = np.full(len(frame_times), np.nan)
    n = min(len(speed), len(frame_times) - offset)
    out[offset : offset + n] = speed[:n]
    return out


def ophys_running_modulation(sweeps, frames, speeds, threshold: float = 1.0, min_trials: int = 5) -> np.ndarray:
    """(c,) AllenSDK `p_run_mod_ns` of every cell (natural_scenes.py NaturalScenes.get_peak, "p_run_ns").

    The preferred image is the non-grey image with the largest mean sweep response. Its presentations are split
    into running (speed >= threshold cm/s) and stationary (speed < threshold; NaN speeds are in neither); with at
    least `min_trials` (AllenSDK: > 4) of each, p is Welch's t-test p-value, else NaN.

    Args:
        sweeps: (c, P) mean sweep responses; frames: (P,) image index (-1 grey); speeds: (P,) cm/s.
    """
    sweeps, frames, speeds, preferred = preferred_images(sweeps, frames, speeds)
    p = np.full(sweeps.shape[0], np.nan)
    for cell, image in enumerate(preferred):
        shown = frames == image
        run, stat = shown & (speeds >= threshold), shown & (speeds < threshold)
        if run.sum() >= min_trials and stat.sum() >= min_trials:
            p[cell] = scipy.stats.ttest_ind(sweeps[cell, run], sweeps[cell, stat], equal_var=False).pvalue
    return p


def _text(f: h5py.File, name: str, default=None):
    if name not in f:
        return default
    value = f[name][()]
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[-1] if value.size else default
    return value.decode("utf-8") if isinstance(value, bytes) else (None if value is None else str(value))


def _pipeline_version(f: h5py.File) -> tuple:
    text = _text(f, "general/generated_by", "0.9") or "0.9"  # AllenSDK: the last entry, "0.9" when absent
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return (0, 9)


def _need(f: h5py.File, name: str, path: str) -> h5py.Dataset:
    if name not in f:
        raise NeuralDataError(
            f"{path}: missing {name}. Fix: pass an Allen Brain Observatory ophys experiment NWB file of a session "
            f"with natural scenes (three_session_B); layout in docs/allen_data.md."
        )
    return f[name]


def _corrected_fluorescence(f: h5py.File, path: str) -> np.ndarray:
    group = f"{PIPELINE}/Fluorescence"
    if _pipeline_version(f) >= (2, 0):
        cell = _need(f, f"{group}/imaging_plane_1_demixed_signal/data", path)[()]
        neuropil = _need(f, f"{group}/imaging_plane_1_neuropil_response/data", path)[()]
        r = _need(f, f"{group}/imaging_plane_1_neuropil_response/r", path)[()]
    else:
        cell = _need(f, f"{group}/imaging_plane_1/data", path)[()]
        neuropil = _need(f, f"{group}/imaging_plane_1/neuropil_traces", path)[()]
        r = _need(f, f"{group}/imaging_plane_1/r", path)[()]
    return np.asarray(cell, np.float64) - np.asarray(neuropil, np.float64) * np.asarray(r, np.float64)[:, None]


def read_ophys_nwb(
    path,
    *,
    response: str = "sweep",
    specimen=None,
    area: str | None = None,
    stimuli=None,
    missing_trials: str | None = None,
) -> NeuralData:
    """NeuralData (118 images, cells, 1 window, 50 trials) of one ophys experiment NWB file (module docstring).

    Args:
        path: the ophys experiment NWB file of a session with natural scenes (three_session_B), from an AllenSDK
            BrainObservatoryCache or the S3 bucket allen-brain-observatory (docs/allen_data.md).
        response: "sweep" (AllenSDK mean sweep response, default) or "dff" (mean DfOverF over the same frames).
        specimen: the mouse id used as `animal`; default general/specimen_name of the file.
        area: override the targeted structure (general/optophysiology/imaging_plane_1/location).
        stimuli: (118, h, w) images or a .npy path; default (None) the file's natural scenes template when present;
            False: no images (merge many experiments, then attach the images once).
        missing_trials: None (error if an image has fewer presentations), "min" or "mean".

    Returns:
        NeuralData with attrs["per_unit"] = {allen_id (cell_specimen_id), p_run_mod_ns, imaging_depth_um,
        ophys_experiment_id} and attrs = {modality: calcium, response, sweep_length_frames, pipeline_version}.
    """
    if response not in ("sweep", "dff"):
        raise ValueError(f"response must be 'sweep' (AllenSDK mean sweep response) or 'dff'; received {response!r}.")
    path = str(path)
    with h5py.File(path, "r") as f:
        frames = np.asarray(_need(f, f"{STIMULUS}/data", path)[()], dtype=np.float64).reshape(-1)
        bounds = np.asarray(_need(f, f"{STIMULUS}/frame_duration", path)[()]).astype(np.int64)
        order = np.lexsort((bounds[:, 1], bounds[:, 0]))  # AllenSDK sorts the table by (start, end)
        frames, bounds = frames[order], bounds[order]
        sweep_length = int(bounds[1, 1] - bounds[1, 0])
        cell_ids = _need(f, f"{PIPELINE}/ImageSegmentation/cell_specimen_ids", path)[()]
        if response == "sweep":
            traces = _corrected_fluorescence(f, path)
            times = _need(f, f"{PIPELINE}/Fluorescence/imaging_plane_1/timestamps", path)[()]
        else:
            traces = np.asarray(_need(f, f"{PIPELINE}/DfOverF/imaging_plane_1/data", path)[()], np.float64)
            times = _need(f, f"{PIPELINE}/DfOverF/imaging_plane_1/timestamps", path)[()]
        running = f"{PIPELINE}/BehavioralTimeSeries/running_speed"
        if running in f:
            speed = align_running_speed(f[f"{running}/data"][()], f[f"{running}/timestamps"][()], times)
        else:
            speed = None
        location = area or _text(f, "general/optophysiology/imaging_plane_1/location", "unknown")
        depth = _text(f, "general/optophysiology/imaging_plane_1/imaging depth", "")
        animal = specimen if specimen is not None else _text(f, "general/specimen_name", "unknown")
        experiment = _text(f, "general/session_id", "")
        if stimuli is None and TEMPLATE in f:
            stimuli = f[TEMPLATE][()]
        version = ".".join(str(x) for x in _pipeline_version(f))
    if traces.shape[0] != len(cell_ids):
        raise NeuralDataError(f"{path}: {traces.shape[0]} traces but {len(cell_ids)} cell_specimen_ids.")
    sweeps = mean_sweep_responses(traces, bounds[:, 0], sweep_length, baseline=response == "sweep")  # (c, P)
    if speed is None:
        p_run = np.full(len(cell_ids), np.nan)
    else:
        p_run = ophys_running_modulation(sweeps, frames, sweep_running_speed(speed, bounds[:, 0], sweep_length))
    trials = trials_by_frame(sweeps.T, frames, NUM_SCENES)  # (r, n, c)
    rate = 1.0 / float(np.median(np.diff(times)))
    depth_um = float(depth.split()[0]) if depth and depth.split()[0].replace(".", "", 1).isdigit() else np.nan
    return from_allen_arrays(
        trials,
        area=location,
        specimen=str(animal),
        unit_ids=np.asarray(cell_ids).astype(np.int64).astype(str),
        p_run_mod=p_run,
        time_window_ms=(0.0, 1000.0 * 2 * sweep_length / rate),
        stimuli=None if stimuli is False else stimuli,
        missing_trials=missing_trials,
        modality="calcium",
        per_unit={
            "imaging_depth_um": np.full(len(cell_ids), depth_um),
            "ophys_experiment_id": np.full(len(cell_ids), str(experiment)),
        },
        attrs={"response": response, "sweep_length_frames": sweep_length, "pipeline_version": version},
    )
