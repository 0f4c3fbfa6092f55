"""Binned spatial responses of recorded MEC cells per environment and recording, and their HDF5 file.

Reference: thesis Sections 4.3, 4.8.1-4.8.2 (spec ch3_ch4 B1, B2): 5 cm bins, rates = spikes / occupancy smoothed with
a Gaussian of sigma = 1 bin; the 1 m box (20 x 20 bins), the 1.5 m box (30 x 30), the 4 m virtual track (80 bins,
per-trial rate maps, several "maps" per session after remapping). The layout is documented in docs/mec_fits.md:

    /                       attrs format = "goaldriven-mec-ratemaps", version = 1
    /<environment>/         attrs kind = "box" | "track", extent_m = [width, height] | [length], bin_size_m,
                            smoothing_sigma_bins, source (free text)
    /<environment>/<recording>/   one animal (box) or session (track); attrs animal (recordings of one animal are
                                  never each other's source)
        cell_ids      (u,) utf-8 strings, unique within the recording
        rate_maps     box: (u, h, w) float32 Hz, rows = y, columns = x; NaN = unvisited bin
        trials        track: (u, r, n) float32 per-trial rate maps; NaN = unvisited bin
        trial_maps    track: (r,) int, the map (remapping state, 0..M-1) of each trial; every map has >= 2 trials

Errors are MECDataError (a ValueError) in one line naming the environment, recording, field and the fix.
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np

# u: cells, h/w: spatial bins (rows = y, columns = x), n: track bins, r: trials, m: maps

FORMAT, VERSION = "goaldriven-mec-ratemaps", 1
KINDS = ("box", "track")


class MECDataError(ValueError):
    """A MEC rate-map array or file breaks the layout; the message names the field, the problem and the fix."""


@dataclasses.dataclass
class Recording:
    """One animal (box) or session (track): the cells' binned responses. See the module docstring for shapes."""

    animal: str
    cell_ids: np.ndarray
    rate_maps: np.ndarray | None = None
    trials: np.ndarray | None = None
    trial_maps: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        return len(self.cell_ids)

    @property
    def maps(self) -> list[int]:
        """The map labels of a track recording (sorted); [0] for a box."""
        return [0] if self.trial_maps is None else sorted(int(m) for m in np.unique(self.trial_maps))

    def map_trials(self, m: int) -> np.ndarray:
        """(n, u, r_m) trials of map m of a track recording (bins first, as the estimators take them)."""
        return np.transpose(self.trials[:, self.trial_maps == m, :], (2, 0, 1)).astype(np.float64)


@dataclasses.dataclass
class Environment:
    """One arena or track and its recordings {name: Recording}; `check()` validates the layout."""

    name: str
    kind: str
    extent_m: tuple[float, ...]
    recordings: dict[str, Recording]
    bin_size_m: float = 0.05
    smoothing_sigma_bins: float = 1.0
    source: str = ""

    @property
    def bins_shape(self) -> tuple[int, ...]:
        """(h, w) for a box (rows = y), (n,) for a track, from extent_m / bin_size_m."""
        counts = [int(round(e / self.bin_size_m)) for e in self.extent_m]
        return (counts[1], counts[0]) if self.kind == "box" else (counts[0],)

    @property
    def n_bins(self) -> int:
        return int(np.prod(self.bins_shape))

    def animal_of(self, recording: str) -> str:
        return self.recordings[recording].animal

    def check(self) -> Environment:
        """Raises MECDataError (one line) if the environment breaks the layout; returns self."""
        where = f"environment {self.name!r}"
        if self.kind not in KINDS:
            raise MECDataError(f"{where}: kind must be one of {KINDS}; received {self.kind!r}.")
        want = 2 if self.kind == "box" else 1
        extent = tuple(float(e) for e in np.atleast_1d(self.extent_m))
        if len(extent) != want or not all(np.isfinite(e) and e > 0 for e in extent):
            raise MECDataError(f"{where}: extent_m must be {want} positive lengths in metres; received {extent}.")
        self.extent_m = extent
        if not (np.isfinite(self.bin_size_m) and 0 < self.bin_size_m <= min(extent)):
            raise MECDataError(f"{where}: bin_size_m must lie in (0, {min(extent)}]; received {self.bin_size_m}.")
        if any(abs(e / self.bin_size_m - round(e / self.bin_size_m)) > 1e-6 for e in extent):
            raise MECDataError(f"{where}: extent_m {extent} is not a whole number of {self.bin_size_m} m bins.")
        if not self.recordings:
            raise MECDataError(f"{where} has no recordings; add at least one animal (box) or session (track).")
        for name, rec in self.recordings.items():
            _check_recording(f"{where}, recording {name!r}", rec, self.kind, self.bins_shape)
        return self


def _check_recording(where: str, rec: Recording, kind: str, bins: tuple[int, ...]) -> None:
    rec.cell_ids = np.asarray(rec.cell_ids).astype(str)
    if rec.cell_ids.ndim != 1 or not rec.cell_ids.size:
        raise MECDataError(f"{where}: cell_ids must be a non-empty 1-D list of strings; received {rec.cell_ids.shape}.")
    if len(set(rec.cell_ids.tolist())) != rec.cell_ids.size:
        raise MECDataError(f"{where}: cell_ids repeat; give every cell of a recording its own id.")
    u = rec.cell_ids.size
    if kind == "box":
        if rec.rate_maps is None or rec.trials is not None:
            raise MECDataError(f"{where}: a box recording holds rate_maps (u, h, w) and no trials; fix the fields.")
        data, field, shape = np.asarray(rec.rate_maps), "rate_maps", (u, *bins)
    else:
        if rec.trials is None or rec.trial_maps is None or rec.rate_maps is not None:
            raise MECDataError(
                f"{where}: a track recording holds trials (u, r, n) and trial_maps (r,); fix the fields."
            )
        data, field = np.asarray(rec.trials), "trials"
        shape = (u, data.shape[1] if data.ndim == 3 else -1, *bins)
    if data.shape != shape or not np.issubdtype(data.dtype, np.floating):
        raise MECDataError(
            f"{where}: {field} must be float {shape} (cells, ..., bins); received {data.dtype} {data.shape}."
        )
    if np.isinf(data).any():
        raise MECDataError(f"{where}: {field} has inf values; mark unvisited bins with NaN, not inf.")
    visited = np.isfinite(data).reshape(*data.shape[: data.ndim - len(bins)], -1).sum(-1)
    if (visited < 3).any():
        raise MECDataError(f"{where}: {field} has maps with < 3 visited bins; drop those cells or trials.")
    if kind == "track":
        labels = np.asarray(rec.trial_maps)
        if labels.shape != (shape[1],) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
            raise MECDataError(f"{where}: trial_maps must be ({shape[1]},) integers >= 0 (one map per trial).")
        counts = np.bincount(labels)
        if (counts[counts > 0] < 2).any():
            raise MECDataError(f"{where}: every map needs >= 2 trials for split halves; merge or drop small maps.")
        rec.trial_maps = labels.astype(np.int64)


def write_ratemaps(path: str, environments: list[Environment] | Environment) -> str:
    """Writes environments (checked first) to the HDF5 file `path` (replaced); returns path."""
    environments = [environments] if isinstance(environments, Environment) else list(environments)
    for env in environments:
        env.check()
    with h5py.File(path, "w") as f:
        f.attrs["format"], f.attrs["version"] = FORMAT, VERSION
        for env in environments:
            g = f.create_group(env.name)
            g.attrs.update(
                kind=env.kind,
                extent_m=np.asarray(env.extent_m, np.float64),
                bin_size_m=float(env.bin_size_m),
                smoothing_sigma_bins=float(env.smoothing_sigma_bins),
                source=env.source,
            )
            for name, rec in env.recordings.items():
                r = g.create_group(name)
                r.attrs["animal"] = str(rec.animal)
                r.create_dataset("cell_ids", data=rec.cell_ids.astype(object), dtype=h5py.string_dtype())
                for field in ("rate_maps", "trials"):
                    if getattr(rec, field) is not None:
                        r.create_dataset(field, data=np.asarray(getattr(rec, field), np.float32), compression="gzip")
                if rec.trial_maps is not None:
                    r.create_dataset("trial_maps", data=rec.trial_maps)
    return path


def read_ratemaps(path: str) -> dict[str, Environment]:
    """{environment name: Environment} of a MEC rate-map file, each checked; MECDataError names what is wrong."""
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise MECDataError(f"{path} is not a readable HDF5 file ({error}); write it with write_ratemaps.") from error
    with f:
        if f.attrs.get("format") != FORMAT:
            raise MECDataError(
                f"{path} is not a MEC rate-map file (format attr {f.attrs.get('format')!r}, expected {FORMAT!r}); "
                "convert the recordings with goaldriven.neural_fits.mec.converters."
            )
        if int(f.attrs.get("version", -1)) != VERSION:
            raise MECDataError(f"{path}: version {f.attrs.get('version')} is not supported (this reader: {VERSION}).")
        out = {}
        for env_name, g in f.items():
            try:
                recordings = {name: _read_recording(r) for name, r in g.items()}
                env = Environment(
                    name=env_name,
                    kind=str(g.attrs["kind"]),
                    extent_m=tuple(np.atleast_1d(g.attrs["extent_m"]).tolist()),
                    recordings=recordings,
                    bin_size_m=float(g.attrs["bin_size_m"]),
                    smoothing_sigma_bins=float(g.attrs.get("smoothing_sigma_bins", np.nan)),
                    source=str(g.attrs.get("source", "")),
                )
            except KeyError as error:
                raise MECDataError(f"{path}: environment {env_name!r} misses {error}; see docs/mec_fits.md.") from None
            try:
                out[env_name] = env.check()
            except MECDataError as error:
                raise MECDataError(f"{path}: {error}") from None
    if not out:
        raise MECDataError(f"{path} holds no environment; write at least one with write_ratemaps.")
    return out


def _read_recording(r: h5py.Group) -> Recording:
    ids = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in r["cell_ids"][()]])
    get = lambda k: r[k][()] if k in r else None  # noqa: E731
    return Recording(str(r.attrs["animal"]), ids, get("rate_maps"), get("trials"), get("trial_maps"))


def select_environment(environments: dict[str, Environment], name: str | None) -> Environment:
    """The environment `name`, or the only one when name is None; one-line error listing the choices."""
    if name is None:
        if len(environments) != 1:
            raise MECDataError(f"the file holds environments {sorted(environments)}; choose one (--mec_environment).")
        return next(iter(environments.values()))
    if name not in environments:
        raise MECDataError(f"no environment {name!r} in the file; choose one of {sorted(environments)}.")
    return environments[name]
