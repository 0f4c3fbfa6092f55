"""Allen Brain Observatory natural scenes: shared constants, presentations -> trials, arrays -> `NeuralData`.

Reference: A. Nayebi, PhD thesis (2022), Section 3.6.1 (spec ch3 A1): the Allen Brain Observatory Visual Coding
natural scenes, 118 greyscale images (918 x 1174 px) shown 50 times each; frame -1 (the grey screen) is dropped.
Layouts and decisions: docs/allen_data.md.

This module serves the two NWB readers (allen_ophys.py, allen_ecephys.py) and users who ran AllenSDK in another
environment and saved plain arrays: `from_allen_arrays` takes (trials, 118, units) mean sweep responses or
(trials, 118, units, bins) spike counts plus per-unit metadata (area, specimen, cell / unit id, running-modulation
p-value) and goes through `converters.from_trial_array`. `trials_by_frame` turns one value per presentation (in
presentation order) into the (trials, images, ...) array those calls take.
"""

from __future__ import annotations

import numpy as np

from goaldriven.neural_fits.data.converters import from_trial_array
from goaldriven.neural_fits.data.neural_data import NeuralData, NeuralDataError

# P: presentations, r: trials, n: images (118), u: units, t: time bins

__all__ = [
    "VISUAL_AREAS",
    "NUM_SCENES",
    "NUM_TRIALS",
    "GREY_FRAME",
    "trials_by_frame",
    "scene_stimuli",
    "from_allen_arrays",
]

VISUAL_AREAS = ("VISp", "VISl", "VISal", "VISrl", "VISam", "VISpm")  # thesis Section 3.6.1, Allen acronyms
NUM_SCENES = 118
NUM_TRIALS = 50
GREY_FRAME = -1  # the grey screen; dropped (spec ch3 A1)


def trials_by_frame(values, frames, num_scenes: int = NUM_SCENES) -> np.ndarray:
    """(P, ...) per-presentation values -> (r, num_scenes, ...) trials, trial k = the k-th showing in time order.

    Presentations of frame -1 (grey) and frames >= num_scenes are dropped. Images shown fewer times than the most
    shown image get NaN trials (pass `missing_trials="min"` or `"mean"` to `from_trial_array` / the readers).

    Args:
        values: (P, ...) one value (or row) per presentation, in presentation (time) order.
        frames: (P,) image index of every presentation (float or int; -1 = grey).
        num_scenes: images 0 .. num_scenes - 1 are kept (118 for the Allen set).
    """
    values = np.asarray(values, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 1 or values.shape[:1] != frames.shape:
        raise ValueError(
            f"trials_by_frame: need one frame per presentation; values {values.shape}, frames {frames.shape}."
        )
    keep = (frames >= 0) & (frames < num_scenes) & (frames == np.round(frames))
    index = frames[keep].astype(np.int64)
    counts = np.bincount(index, minlength=num_scenes)
    if counts.min() == 0:
        raise NeuralDataError(
            f"trials_by_frame: {int(np.sum(counts == 0))} of {num_scenes} images were never shown (e.g. image "
            f"{int(np.argmin(counts))}). Fix: pass the natural scenes presentations of a whole session."
        )
    out = np.full((int(counts.max()), num_scenes) + values.shape[1:], np.nan)
    kept = values[keep]
    order = np.argsort(index, kind="stable")  # stable: time order within each image
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    trial = np.arange(len(index)) - starts[index[order]]
    out[trial, index[order]] = kept[order]
    return out


def scene_stimuli(images, num_scenes: int = NUM_SCENES) -> np.ndarray | None:
    """(n, h, w) or (n, h, w, c) uint8 natural scenes (AllenSDK template, e.g. 118 x 918 x 1174) -> (n, h, w, c)."""
    if images is None:
        return None
    if isinstance(images, str) or hasattr(images, "__fspath__"):
        images = np.load(images, allow_pickle=False)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] != num_scenes:
        raise ValueError(
            f"stimuli must be ({num_scenes}, h, w) or ({num_scenes}, h, w, c) images (Allen: 118 x 918 x 1174); "
            f"received shape {images.shape}."
        )
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"stimuli must be uint8-valued 0-255; received range {images.min()}..{images.max()}.")
        images = np.round(images).astype(np.uint8)
    return images


def _per_unit(value, u: int, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        array = np.full(u, array.item())
    if array.shape != (u,):
        raise ValueError(f"{name} must be a scalar or one entry per unit ({u},); received shape {array.shape}.")
    return array


def from_allen_arrays(
    responses,
    *,
    area,
    specimen,
    unit_ids=None,
    p_run_mod=None,
    bin_width_ms: float | None = None,
    time_window_ms: tuple[float, float] = (0.0, 500.0),
    stimuli=None,
    missing_trials: str | None = None,
    modality: str | None = None,
    per_unit: dict | None = None,
    attrs: dict | None = None,
) -> NeuralData:
    """NeuralData of one or more specimens from arrays saved after running AllenSDK elsewhere.

    Args:
        responses: (r, 118, u) mean sweep responses (two-photon, e.g. `NaturalScenes(ds).mean_sweep_response`
            grouped by image with `trials_by_frame`) or (r, 118, u, t) spike counts in 10 ms
            bins from 0 ms (Neuropixels; become spikes/s). Grey frame already dropped. NaN marks a missing trial.
        area: str or (u,) Allen acronyms (VISp, VISl, VISal, VISrl, VISam, VISpm).
        specimen: str/int or (u,) specimen (mouse) id of every unit; it becomes `animal`.
        unit_ids: (u,) Allen cell_specimen_id / unit_id; default "<specimen>/<index>". Stored as "<specimen>/<id>".
        p_run_mod: (u,) running-modulation p-values (`p_run_mod_ns`; NaN = not computable); stored in
            attrs["per_unit"]["p_run_mod_ns"] for `allen_selection`.
        bin_width_ms: 4-D input only; 10 for the thesis' Neuropixels bins.
        time_window_ms: 3-D input only: the window the responses average. AllenSDK's mean sweep response averages
            two sweep lengths from onset (2 x 7 or 8 frames at 30 Hz, ~467-533 ms), hence the nominal (0, 500).
        stimuli: optional (118, h, w[, c]) images or a .npy path.
        missing_trials: None (error on NaN), "min" or "mean" (converters).
        modality: "calcium" or "neuropixels"; default from the array rank. Kept in attrs["modality"].
        per_unit: extra (u,) arrays for attrs["per_unit"].
        attrs: extra free metadata.
    """
    array = np.asarray(responses, dtype=np.float64)
    if array.ndim not in (3, 4) or array.shape[1] != NUM_SCENES:
        raise ValueError(
            f"responses must be (trials, {NUM_SCENES}, units) or (trials, {NUM_SCENES}, units, bins) with the grey "
            f"frame dropped; received shape {array.shape}."
        )
    u = array.shape[2]
    specimens = _per_unit(specimen, u, "specimen").astype(str)
    ids = np.arange(u).astype(str) if unit_ids is None else _per_unit(unit_ids, u, "unit_ids").astype(str)
    modality = modality or ("calcium" if array.ndim == 3 else "neuropixels")
    if modality not in ("calcium", "neuropixels"):
        raise ValueError(f"modality must be 'calcium' or 'neuropixels'; received {modality!r}.")
    extra = {k: _per_unit(v, u, f"per_unit[{k!r}]") for k, v in (per_unit or {}).items()}
    extra["allen_id"] = ids
    if p_run_mod is not None:
        extra["p_run_mod_ns"] = _per_unit(p_run_mod, u, "p_run_mod").astype(np.float64)
    presentation = {"image_on_ms": 250.0, "source": "Allen Brain Observatory Visual Coding, natural scenes"}
    return from_trial_array(
        array,
        stimulus_ids=np.arange(NUM_SCENES).astype(str),  # the Allen image (frame) index
        unit_ids=np.char.add(np.char.add(specimens, "/"), ids),
        animal=specimens,
        area=_per_unit(area, u, "area").astype(str),
        bin_width_ms=bin_width_ms,
        **({} if array.ndim == 4 else {"time_window_ms": tuple(time_window_ms)}),
        missing_trials=missing_trials,
        stimuli=scene_stimuli(stimuli),
        presentation=presentation,
        attrs={**dict(attrs or {}), "modality": modality, "per_unit": extra},
    )


def preferred_images(responses, frames, speeds) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(responses, frames, speeds) as float64 and (u,) each unit's preferred image: the non-grey image with the
    largest mean response over its presentations (AllenSDK's running-modulation tests read that image's trials).

    Args: responses (u, P) per-presentation responses; frames (P,) image index (-1 grey); speeds (P,) cm/s.
    """
    responses = np.asarray(responses, dtype=np.float64)
    frames = np.asarray(frames, dtype=np.float64)
    speeds = np.asarray(speeds, dtype=np.float64)
    images = np.unique(frames[frames >= 0])
    means = np.stack([responses[:, frames == k].mean(axis=1) for k in images], axis=1)  # (u, n)
    return responses, frames, speeds, images[np.argmax(means, axis=1)]
