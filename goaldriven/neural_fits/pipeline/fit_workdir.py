"""Where the files of a fit go in its workdir: a fit with other options never overwrites an earlier fit's files.

A fit is identified by its options (`fit_options`): the key of its feature cache (checkpoint content, model config,
input, schedule, dtype, stimuli: feature_cache.py), its recordings (a SHA-256 of the data, or the simulation
settings) and its FitConfig. `claim` writes them to fit_options.json in the folder that will hold the fit's reports
(units.csv, summary.json, the plots and, with --simulate, synthetic_neural_data.h5), before anything else goes there:
  - the workdir itself holds the first fit;
  - a rerun with the same options uses the same folder again and rewrites its files (every random draw is seeded,
    so the files are rewritten with the same content);
  - a fit with other options goes to the first of fit.1/, fit.2/, ... that is free or holds the same options (as
    training writes eval/step_N.1/ beside an earlier evaluation), and the log says where and what differs.
A folder is taken when it has fit_options.json, or any report file (a fit written before fit_options.json existed).
The feature caches stay in the workdir, shared by its fits. The caller holds the workdir lock (workdir_lock), so no
other process writes there; `remove_interrupted_writes` then deletes the temporary files that a killed write of a
report or of the simulated recordings left (atomic_write writes `.<name>.<random>.tmp` and renames it).
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable

import numpy as np

from goaldriven import atomic_write
from goaldriven.neural_fits.data.neural_data import NeuralData

OPTIONS_FILE = "fit_options.json"
REPORT_FILES = (
    "units.csv",
    "summary.json",
    "predictivity_by_layer.png",
    "time_courses.png",
    "synthetic_neural_data.h5",
    OPTIONS_FILE,
)


def recordings_digest(data: NeuralData) -> str:
    """SHA-256 of the responses and of every label the fit reads (ids, animals, areas, time bins, stimulus labels)."""
    digest = hashlib.sha256(f"{data.responses.shape} {data.responses.dtype}".encode())
    digest.update(memoryview(np.ascontiguousarray(data.responses)).cast("B"))
    for values in (data.stimulus_ids, data.unit_ids, data.animal, data.area, data.stimulus_labels):
        digest.update(("\n".join([] if values is None else values.tolist()) + "\0").encode())
    digest.update(np.ascontiguousarray(data.time_bins_ms, np.float64).tobytes())
    return digest.hexdigest()


def _json_ready(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def fit_options(*, features_key: str, recordings: NeuralData | None, recordings_path: str | None, simulate, config):
    """What identifies a fit (module docstring), JSON-ready."""
    if simulate is not None:
        source = {"simulate": dataclasses.asdict(simulate)}
    else:
        source = {
            "path": None if recordings_path is None else os.path.abspath(recordings_path),
            "sha256": recordings_digest(recordings),
        }
    return _json_ready({"features": features_key, "recordings": source, "config": dataclasses.asdict(config)})


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for key in keys:
        if key == "config" and isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            out += [f"config.{k}" for k in _differences(old[key], new[key])]
        elif old.get(key) != new.get(key):
            out.append(key)
    return out


def _recorded_options(folder: str) -> dict | None:
    """The options of the fit in `folder`: {} if free, None if taken by a fit that recorded none (or unreadably)."""
    path = os.path.join(folder, OPTIONS_FILE)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                options = json.load(f)
            return options if isinstance(options, dict) and options else None
        except (OSError, ValueError):
            return None
    if any(os.path.exists(os.path.join(folder, name)) for name in REPORT_FILES):
        return None
    return {}


def claim(workdir: str, options: dict[str, Any], log: Callable[[str], None] = print) -> str:
    """The folder for the reports of a fit with `options` (module docstring); writes its fit_options.json."""
    first = _recorded_options(workdir)
    folder, index, recorded = workdir, 0, first
    while recorded != {} and recorded != options:
        index += 1
        folder = os.path.join(workdir, f"fit.{index}")
        recorded = _recorded_options(folder)
    if index:
        what = "a fit written without " + OPTIONS_FILE if first is None else "a fit with other options"
        differs = "" if first is None else f" ({', '.join(_differences(first, options))} differ)"
        log(f"fit: {workdir} holds {what}{differs}; writing this one to {folder} (the earlier files are kept)")
    if recorded == {}:
        atomic_write.write_json(os.path.join(folder, OPTIONS_FILE), options)
    return folder


def remove_interrupted_writes(
    folder: str, log: Callable[[str], None] = print, names: tuple[str, ...] = (*REPORT_FILES, "error_traceback.txt")
) -> None:
    """Deletes the temporary files that killed writes of the files `names` (default: the neural fit's) left in `folder`
    (caller holds the lock)."""
    for name in names:
        for leftover in atomic_write.leftovers(os.path.join(folder, name)):
            log(f"note: removing {leftover}, left by an interrupted write of {name}")
            os.remove(leftover)
