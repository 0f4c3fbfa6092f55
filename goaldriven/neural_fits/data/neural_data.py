"""The neural data container `NeuralData` and saving / loading it in its HDF5 file format.

Reference: A. Nayebi, PhD thesis (2022), Section 2.5.6 (Majaj et al. 2015 V4/IT data: 5120 images x 256 units x
25 bins of 10 ms, ~50 trials), Section 2.5.8 (aIT data, 1100 images) and Section 3.6.1 (Allen natural scenes:
118 images x 50 trials). The on-disk layout is documented in docs/neural_data_format.md.

One recording is a 4-D array of responses plus named axes:

    responses[i, j, k, l] = response of unit j to stimulus i in time bin k on trial l
    time bin k covers [time_bins_ms[k, 0], time_bins_ms[k, 1]) ms after stimulus onset (spec ch2 A-2: models are
    indexed by ms, never by array position)

Trial averages only (no trials): r = 1 and has_trials = False. Missing trials are not representable (no NaN);
trim every stimulus to a common trial count first (converters' `trials="min"`).

Validation lives in checks.py and the HDF5 / image-file helpers in hdf5_io.py; `NeuralDataError` and `validate` are
re-exported here, so `from goaldriven.neural_fits.data.neural_data import ...` covers the whole public API.

Files are written atomically (goaldriven.atomic_write: a temporary file in the same folder, moved into place), so a
crash never leaves a half-written file. Nothing is pickled: strings are UTF-8 variable-length HDF5 strings.
"""

from __future__ import annotations

import dataclasses
import os

import h5py
import numpy as np

from goaldriven import atomic_write
from goaldriven.neural_fits.data.checks import normalize_tree, validate
from goaldriven.neural_fits.data.hdf5_io import (
    NeuralDataError,
    as_str_array,
    decode_attr,
    open_hdf5,
    read_dataset,
    read_image_file,
    read_tree,
    resolve_path,
    write_strings,
    write_tree,
)

# n: stimuli, u: units, t: time bins, r: trials, h/w/c: stimulus image height/width/channels

__all__ = ["NeuralData", "NeuralDataError", "validate", "save_neural_data", "load_neural_data", "FORMAT_VERSION"]

FORMAT_VERSION = 1
FORMAT_NAME = "goaldriven.neural_data"
REQUIRED_DATASETS = ("responses", "stimulus_ids", "unit_ids", "animal", "area", "time_bins_ms")
_CHUNK_BYTES = 1 << 20  # target size of one compressed chunk of `responses`


@dataclasses.dataclass(eq=False)
class NeuralData:
    """Neural responses with named stimuli, units and time bins (validated on construction).

    Args:
        responses: (n, u, t, r) float32 responses; finite. r = 1 for trial averages.
        stimulus_ids: (n,) unique str ids.
        unit_ids: (u,) unique str ids.
        animal: (u,) str, the animal (specimen) of each unit.
        area: (u,) str, the brain area of each unit.
        time_bins_ms: (t, 2) [start, end) ms after stimulus onset; increasing and non-overlapping.
        has_trials: whether the last axis holds single trials; default r > 1. False requires r = 1.
        stimuli: optional (n, h, w, c) images, uint8 or float32 in [0, 1].
        stimuli_path: optional .npy / .h5 file of the (n, h, w, c) images instead of `stimuli`; a relative path is
            resolved against the data file's folder (against the working directory for unsaved data).
        stimulus_labels: optional (n,) str object / category labels (stratified splits, OSTs).
        presentation: timing facts, e.g. {"image_on_ms": 100, "trial_ms": 260, "normalization": "..."}.
        attrs: free metadata: str/int/float/bool, NumPy arrays and nested dicts of these. Lists become arrays.
            Convention: attrs["per_unit"] is a dict of arrays whose first axis is u; `select_units` and
            `concatenate_animals` index / concatenate them along with the units.
    """

    responses: np.ndarray
    stimulus_ids: np.ndarray
    unit_ids: np.ndarray
    animal: np.ndarray
    area: np.ndarray
    time_bins_ms: np.ndarray
    has_trials: bool | None = None
    stimuli: np.ndarray | None = None
    stimuli_path: str | None = None
    stimulus_labels: np.ndarray | None = None
    presentation: dict = dataclasses.field(default_factory=dict)
    attrs: dict = dataclasses.field(default_factory=dict)
    base_dir: str | None = dataclasses.field(default=None, repr=False)  # where a relative stimuli_path lives

    def __post_init__(self):
        if isinstance(self.responses, (list, tuple)):
            self.responses = np.asarray(self.responses)
        if isinstance(self.responses, np.ndarray) and self.responses.dtype.kind in "fiub":
            self.responses = np.asarray(self.responses, dtype=np.float32)
        for name in ("stimulus_ids", "unit_ids", "animal", "area", "stimulus_labels"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, as_str_array(value))
        self.time_bins_ms = np.asarray(self.time_bins_ms, dtype=np.float64)
        if self.has_trials is None and getattr(self.responses, "ndim", 0) == 4:
            self.has_trials = bool(self.responses.shape[3] > 1)
        if self.stimuli is not None:
            self.stimuli = np.asarray(self.stimuli)
        if self.stimuli_path is not None:
            self.stimuli_path = os.fspath(self.stimuli_path)
        self.presentation = normalize_tree(self.presentation, "presentation")
        self.attrs = normalize_tree(self.attrs, "attrs")
        validate(self)

    # ----------------------------------------------------------------------------------------------- shape facts
    @property
    def num_stimuli(self) -> int:
        return self.responses.shape[0]

    @property
    def num_units(self) -> int:
        return self.responses.shape[1]

    @property
    def num_time_bins(self) -> int:
        return self.responses.shape[2]

    @property
    def num_trials(self) -> int:
        return self.responses.shape[3]

    def areas(self) -> list[str]:
        """Sorted unique area names."""
        return sorted(set(self.area.tolist()))

    def animals(self) -> list[str]:
        """Sorted unique animal names."""
        return sorted(set(self.animal.tolist()))

    # ---------------------------------------------------------------------------------------------- derived data
    def trial_mean(self) -> np.ndarray:
        """(n, u, t) float32 mean over trials (accumulated in float64)."""
        return self.responses.mean(axis=3, dtype=np.float64).astype(np.float32)

    def time_window(self, start_ms: float, end_ms: float) -> np.ndarray:
        """(n, u, r) float32 mean over the time bins lying inside [start_ms, end_ms) (e.g. 70-170 ms)."""
        inside = (self.time_bins_ms[:, 0] >= start_ms) & (self.time_bins_ms[:, 1] <= end_ms)
        if not inside.any():
            raise NeuralDataError(
                f"time_window({start_ms}, {end_ms}): no time bin lies inside [{start_ms}, {end_ms}) ms; the bins span "
                f"{self.time_bins_ms[0, 0]:g}-{self.time_bins_ms[-1, 1]:g} ms. Fix: widen the window to cover whole bins."
            )
        return self.responses[:, :, inside, :].mean(axis=2, dtype=np.float64).astype(np.float32)

    def select_units(self, mask=None, *, area=None, animal=None) -> NeuralData:
        """New NeuralData with the units in `mask` (bool (u,) or indices) AND in `area` AND in `animal` (str or list)."""
        keep = np.ones(self.num_units, dtype=bool)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype == bool:
                if mask.shape != (self.num_units,):
                    raise NeuralDataError(
                        f"select_units: boolean mask must have shape ({self.num_units},) (one entry per unit); "
                        f"got {mask.shape}."
                    )
                keep &= mask
            else:
                chosen = np.zeros(self.num_units, dtype=bool)
                chosen[mask.astype(np.int64)] = True
                keep &= chosen
        for name, wanted, values, known in (
            ("area", area, self.area, self.areas),
            ("animal", animal, self.animal, self.animals),
        ):
            if wanted is not None:
                wanted = [wanted] if isinstance(wanted, str) else list(wanted)
                unknown = sorted(set(wanted) - set(known()))
                if unknown:
                    raise NeuralDataError(f"select_units: unknown {name} {unknown}; known: {known()}.")
                keep &= np.isin(values, wanted)
        if not keep.any():
            raise NeuralDataError("select_units: the selection matched no units. Fix: check the mask / area / animal.")
        index = np.flatnonzero(keep)
        attrs = dict(self.attrs)
        if isinstance(attrs.get("per_unit"), dict):
            attrs["per_unit"] = {key: value[index] for key, value in attrs["per_unit"].items()}
        return dataclasses.replace(
            self,
            responses=self.responses[:, index],
            unit_ids=self.unit_ids[index],
            animal=self.animal[index],
            area=self.area[index],
            attrs=attrs,
        )

    def resolved_stimuli_path(self) -> str | None:
        """Absolute path of `stimuli_path` (relative paths resolve against the data file's folder)."""
        return resolve_path(self.stimuli_path, self.base_dir)

    def load_stimuli(self) -> np.ndarray | None:
        """(n, h, w, c) images: `stimuli` if held in memory, else read from `stimuli_path` (None when neither)."""
        if self.stimuli is not None:
            return self.stimuli
        if self.stimuli_path is None:
            return None
        return read_image_file(self.resolved_stimuli_path())

    def summary(self) -> str:
        """A few lines for logs: sizes, time span, areas and animals with unit counts."""
        n, u, t, r = self.responses.shape
        bins = self.time_bins_ms
        areas = ", ".join(f"{a} ({int(np.sum(self.area == a))})" for a in self.areas())
        animals = ", ".join(f"{a} ({int(np.sum(self.animal == a))})" for a in self.animals())
        trials = f"{r} trials" if self.has_trials else "trial-averaged"
        lines = [
            f"NeuralData: {n} stimuli x {u} units x {t} time bins ({bins[0, 0]:g}-{bins[-1, 1]:g} ms) x {trials}",
            f"  areas: {areas}",
            f"  animals: {animals}",
        ]
        if self.stimuli is not None:
            lines.append(f"  stimuli: {self.stimuli.shape} {self.stimuli.dtype}")
        elif self.stimuli_path is not None:
            lines.append(f"  stimuli: file {self.stimuli_path}")
        if self.stimulus_labels is not None:
            lines.append(f"  labels: {len(set(self.stimulus_labels.tolist()))} distinct")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------- HDF5
def save_neural_data(path, data: NeuralData, overwrite: bool = False) -> str:
    """Write `data` to the HDF5 file `path` (atomically); returns the path. Refuses to overwrite unless asked."""
    path = os.fspath(path)
    if not isinstance(data, NeuralData):
        raise TypeError(f"save_neural_data expects a NeuralData; received {type(data).__name__}.")
    validate(data)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it (the old file stays until success).")
    with atomic_write.atomic_path(path) as tmp_path:
        with h5py.File(tmp_path, "w") as f:
            _write_file(f, data)
    return path


def _write_file(f: h5py.File, data: NeuralData) -> None:
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["has_trials"] = bool(data.has_trials)
    n, u, t, r = data.responses.shape
    rows = int(max(1, min(n, _CHUNK_BYTES // max(1, u * t * r * 4))))
    f.create_dataset(
        "responses", data=data.responses, chunks=(rows, u, t, r), compression="gzip", compression_opts=4, shuffle=True
    )
    for name in ("stimulus_ids", "unit_ids", "animal", "area"):
        write_strings(f, name, getattr(data, name))
    f.create_dataset("time_bins_ms", data=data.time_bins_ms)
    if data.stimulus_labels is not None:
        write_strings(f, "stimulus_labels", data.stimulus_labels)
    if data.stimuli is not None:
        f.create_dataset("stimuli", data=data.stimuli, chunks=True, compression="gzip", compression_opts=4)
    if data.stimuli_path is not None:
        f.attrs["stimuli_path"] = data.stimuli_path
    write_tree(f.create_group("presentation"), data.presentation)
    write_tree(f.create_group("attrs"), data.attrs)


def load_neural_data(path, *, allow_external_stimuli: bool = False) -> NeuralData:
    """Read a file written by `save_neural_data` (or by hand, per docs/neural_data_format.md) and validate it.

    A data file is untrusted input: its `stimuli_path` may name only a file in the data file's folder or below
    (symbolic links resolved), unless `allow_external_stimuli` (goaldriven-fit --allow_external_stimuli).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"neural data file {path} does not exist.")
    with open_hdf5(path, "write it with h5py / HDF5 (docs/neural_data_format.md).") as f:
        version = f.attrs.get("format_version")
        if version is None:
            raise NeuralDataError(
                f"{path}: root attribute 'format_version' is missing. Fix: set it to {FORMAT_VERSION} "
                f"(see docs/neural_data_format.md)."
            )
        _check_format_version(decode_attr(version), path)
        missing = [name for name in REQUIRED_DATASETS if not isinstance(f.get(name), h5py.Dataset)]
        if missing:
            raise NeuralDataError(
                f"{path}: missing required dataset(s) {missing}; found {sorted(f.keys())}. Fix: write every one of "
                f"{list(REQUIRED_DATASETS)} at the file root (see docs/neural_data_format.md)."
            )
        stimuli_path = f.attrs.get("stimuli_path")
        if stimuli_path is not None:
            stimuli_path = decode_attr(stimuli_path)
            if not allow_external_stimuli:
                _check_confined(stimuli_path, path)
        has_trials = f.attrs.get("has_trials")
        strings = {
            name: read_dataset(f, name, path, strings=True)
            for name in ("stimulus_ids", "unit_ids", "animal", "area", "stimulus_labels")
            if name in f
        }
        return NeuralData(
            responses=read_dataset(f, "responses", path),
            time_bins_ms=read_dataset(f, "time_bins_ms", path),
            has_trials=None if has_trials is None else bool(has_trials),
            stimuli=read_dataset(f, "stimuli", path) if "stimuli" in f else None,
            stimuli_path=stimuli_path,
            stimulus_labels=strings.pop("stimulus_labels", None),
            presentation=_read_group(f, "presentation", path),
            attrs=_read_group(f, "attrs", path),
            base_dir=os.path.dirname(os.path.abspath(path)),
            **strings,
        )


def _read_group(f: h5py.File, name: str, path: str) -> dict:
    """The metadata tree of group `name` ({} when absent); a NeuralDataError naming it when a dataset is damaged."""
    if name not in f:
        return {}
    try:
        return read_tree(f[name])
    except OSError as error:
        raise NeuralDataError(
            f"{path}: group {name!r} cannot be read ({' '.join(str(error).split())}); the file is damaged. Fix: copy "
            "or export the file again from its source."
        ) from error


def _check_confined(stimuli_path: str, path: str) -> None:
    """Refuses a `stimuli_path` that leads out of the data file's folder (`..`, an absolute path, a link)."""
    folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    resolved = os.path.realpath(resolve_path(stimuli_path, folder))
    if os.path.commonpath([folder, resolved]) != folder:
        raise NeuralDataError(
            f"{path}: stimuli_path {stimuli_path!r} leads to {resolved}, outside {folder} (a data file may name "
            "images only in its own folder or below). Fix: move the images into that folder, or, if you trust this "
            "file, pass allow_external_stimuli=True (goaldriven-fit --allow_external_stimuli)."
        )


def _check_format_version(version, path: str) -> None:
    """`format_version` must be the integer 1 (any integer type, as MATLAB and h5py write it); a string, a float or
    a bool that looks like 1 is refused so that a hand-written file states its version exactly."""
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)):
        kind = {str: "string", bytes: "string"}.get(type(version)) or (
            "bool" if isinstance(version, (bool, np.bool_)) else "float" if isinstance(version, float) else None
        )
        shown = f"the {kind} {version!r}" if kind else f"{version!r} of type {type(version).__name__}"
        raise NeuralDataError(
            f"{path}: root attribute format_version is {shown}; this goaldriven reads the integer {FORMAT_VERSION}. "
            f"Fix: write it as an integer attribute (h5py: f.attrs['format_version'] = {FORMAT_VERSION}; MATLAB: "
            f"int32({FORMAT_VERSION}))."
        )
    if version != FORMAT_VERSION:
        raise NeuralDataError(
            f"{path}: unknown format_version {version!r}; this goaldriven reads version {FORMAT_VERSION}. "
            f"Fix: re-export the file in version {FORMAT_VERSION} or upgrade goaldriven."
        )
