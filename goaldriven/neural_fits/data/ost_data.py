"""The object-solution-time (OST) targets of a neural data file: behavioural I1 d' and IT OST per image.

Reference: A. Nayebi, PhD thesis (2022), Sections 2.3.2 and 2.5.8 (Kar et al. 2019: 1320 images of 10 objects, the
pooled primate behavioural d' per image and the IT population OST); implementation spec ch2 Sections 9.1, 9.5-9.8 and
ambiguity A-14. The layout is documented in docs/neural_data_format.md ("Object solution times").

An OST file is a neural data file (format_version 1: the stimuli, their object labels in `stimulus_labels`, and the IT
(and V4) responses used to choose the IT-preferred layers and to train the PLS-OST variants) plus a root group `ost`:

    ost/behavioral_dprime   (n,) float   primate I1 d' per image, in [-5, 5]; NaN: no behavioural d' for the image
    ost/it_ost_ms           (n,) float   IT OST per image in ms after stimulus onset; NaN: IT did not solve the image
    ost/it_dprime_defined   (n,) bool    optional; the images with an IT d' (the OST evaluation images). The others
                                         (Kar et al.: 526 of 1320) train the PLS-OST mapping (spec 9.8). Default: the
                                         images with a finite behavioural d'
    ost attribute bin_times "start" or "center" (optional, default "start"): the convention of it_ost_ms (A-14)

`load_ost_data` returns (NeuralData, OSTTargets), checked together; every problem is one NeuralDataError line naming
the field, the problem and the fix.
"""

from __future__ import annotations

import dataclasses
import os

import h5py
import numpy as np

from goaldriven import atomic_write
from goaldriven.neural_fits.data.hdf5_io import NeuralDataError, decode_attr, open_hdf5, read_dataset
from goaldriven.neural_fits.data.neural_data import NeuralData, load_neural_data, save_neural_data

# n: stimuli

OST_GROUP = "ost"
DPRIME_BOUND = 5.0  # thesis: d' "bounded between -5 and 5"
MAX_OST_MS = 1000.0  # an OST beyond 1 s is not a within-trial time (the trial is 260 ms)
BIN_TIMES = ("start", "center")
_DOC = "docs/neural_data_format.md, 'Object solution times'"


@dataclasses.dataclass(frozen=True, eq=False)
class OSTTargets:
    """The primate ground truth of an OST fit, one entry per stimulus of the data file (module docstring)."""

    behavioral_dprime: np.ndarray  # (n,) float64
    it_ost_ms: np.ndarray  # (n,) float64, NaN where IT did not solve the image
    it_dprime_defined: np.ndarray  # (n,) bool
    bin_times: str = "start"

    @classmethod
    def create(cls, behavioral_dprime, it_ost_ms, it_dprime_defined=None, bin_times: str = "start") -> "OSTTargets":
        beh = np.asarray(behavioral_dprime, dtype=np.float64)
        defined = np.isfinite(beh) if it_dprime_defined is None else np.asarray(it_dprime_defined)
        return cls(beh, np.asarray(it_ost_ms, dtype=np.float64), defined, bin_times)

    @property
    def evaluation_images(self) -> np.ndarray:
        """(e,) indices of the images with an IT d' (where model and IT OSTs are compared)."""
        return np.flatnonzero(self.it_dprime_defined)

    @property
    def pls_training_images(self) -> np.ndarray:
        """(m,) indices of the images without an IT d' (the PLS-OST training set, disjoint from the evaluation)."""
        return np.flatnonzero(~self.it_dprime_defined)


def validate_ost(data: NeuralData, targets: OSTTargets, where: str = "OST data") -> None:
    """Raise NeuralDataError naming the first problem of `targets` for the stimuli of `data`."""
    n = data.num_stimuli
    if data.stimulus_labels is None:
        raise NeuralDataError(
            f"{where}: no stimulus_labels; OSTs decode the object of each image. Fix: write each image's object name "
            "as the string dataset stimulus_labels."
        )
    if len(set(data.stimulus_labels.tolist())) < 2:
        raise NeuralDataError(f"{where}: stimulus_labels name a single object; OST decoding needs >= 2 objects.")
    for name in ("behavioral_dprime", "it_ost_ms", "it_dprime_defined"):
        value = getattr(targets, name)
        if value.shape != (n,):
            raise NeuralDataError(
                f"{where}: ost/{name} has shape {value.shape}; expected ({n},), one entry per stimulus in "
                f"stimulus_ids order. Fix: write it for every stimulus (NaN where undefined)."
            )
    if targets.it_dprime_defined.dtype != bool:
        raise NeuralDataError(
            f"{where}: ost/it_dprime_defined must be bool; received {targets.it_dprime_defined.dtype}. Fix: write "
            "np.asarray(mask, dtype=bool)."
        )
    beh, ost, defined = targets.behavioral_dprime, targets.it_ost_ms, targets.it_dprime_defined
    if np.isinf(beh).any() or np.isinf(ost).any():
        raise NeuralDataError(f"{where}: ost/behavioral_dprime or ost/it_ost_ms holds inf. Fix: use NaN for undefined.")
    if np.any(np.abs(beh[np.isfinite(beh)]) > DPRIME_BOUND):
        raise NeuralDataError(
            f"{where}: ost/behavioral_dprime reaches {np.nanmax(np.abs(beh)):.3g}, beyond the +-{DPRIME_BOUND:g} bound "
            f"of the model d' (spec 9.5), so such images could never be solved. Fix: clip it to [-5, 5]."
        )
    missing = defined & ~np.isfinite(beh)
    if missing.any():
        raise NeuralDataError(
            f"{where}: {int(missing.sum())} image(s) have an IT d' but no behavioural d' (first: stimulus "
            f"{data.stimulus_ids[np.argmax(missing)]!r}). Fix: give their ost/behavioral_dprime or mark them False in "
            "ost/it_dprime_defined."
        )
    stray = ~defined & np.isfinite(ost)
    if stray.any():
        raise NeuralDataError(
            f"{where}: {int(stray.sum())} image(s) have an IT OST but no IT d' (ost/it_dprime_defined False). Fix: set "
            "their it_ost_ms to NaN, or mark them True in ost/it_dprime_defined."
        )
    solved = ost[np.isfinite(ost)]
    if solved.size < 3:
        raise NeuralDataError(
            f"{where}: only {solved.size} image(s) have a finite ost/it_ost_ms; a Spearman consistency needs >= 3."
        )
    if solved.min() < 0 or solved.max() > MAX_OST_MS:
        raise NeuralDataError(
            f"{where}: ost/it_ost_ms spans {solved.min():.3g}..{solved.max():.3g}; OSTs are ms after stimulus onset, "
            f"in [0, {MAX_OST_MS:g}]. Fix: convert seconds to ms, or subtract the onset time."
        )
    if targets.bin_times not in BIN_TIMES:
        raise NeuralDataError(
            f"{where}: ost attribute bin_times must be one of {BIN_TIMES}; received {targets.bin_times!r}."
        )


def save_ost_data(path, data: NeuralData, targets: OSTTargets, overwrite: bool = False) -> str:
    """Write `data` (save_neural_data) with the `ost` group, atomically; returns the path."""
    path = os.fspath(path)
    validate_ost(data, targets, where=path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it (the old file stays until success).")
    with atomic_write.atomic_path(path) as tmp:
        save_neural_data(tmp, data, overwrite=True)
        with h5py.File(tmp, "a") as f:
            group = f.create_group(OST_GROUP)
            group.create_dataset("behavioral_dprime", data=targets.behavioral_dprime)
            group.create_dataset("it_ost_ms", data=targets.it_ost_ms)
            group.create_dataset("it_dprime_defined", data=targets.it_dprime_defined.astype(bool))
            group.attrs["bin_times"] = targets.bin_times
    return path


def load_ost_data(path, *, allow_external_stimuli: bool = False) -> tuple[NeuralData, OSTTargets]:
    """The neural data of the OST file at `path` and its `ost` targets, validated together."""
    path = os.fspath(path)
    data = load_neural_data(path, allow_external_stimuli=allow_external_stimuli)
    with open_hdf5(path, f"write it with h5py ({_DOC}).") as f:
        group = f.get(OST_GROUP)
        if not isinstance(group, h5py.Group):
            raise NeuralDataError(
                f"{path}: no root group 'ost' (behavioural d' and IT OST per image). Fix: write ost/behavioral_dprime "
                f"and ost/it_ost_ms ({_DOC}), e.g. with ost_data.save_ost_data."
            )
        values = {}
        for name in ("behavioral_dprime", "it_ost_ms", "it_dprime_defined"):
            if name not in group:
                if name == "it_dprime_defined":
                    continue
                raise NeuralDataError(f"{path}: dataset ost/{name} is missing. Fix: write it ({_DOC}).")
            array = np.asarray(read_dataset(f, f"{OST_GROUP}/{name}", path))
            kinds = "b" if name == "it_dprime_defined" else "fiu"
            if array.dtype.kind not in kinds:
                expected = "bool" if kinds == "b" else "float"
                raise NeuralDataError(
                    f"{path}: ost/{name} has dtype {array.dtype}; expected {expected}. Fix: write it as {expected} "
                    "(NaN for undefined values)."
                )
            values[name] = array
        bin_times = decode_attr(group.attrs.get("bin_times", "start"))
    targets = OSTTargets.create(
        values["behavioral_dprime"], values["it_ost_ms"], values.get("it_dprime_defined"), str(bin_times)
    )
    validate_ost(data, targets, where=path)
    return data, targets
