"""Per-cell arrays (spike counts and occupancy per spatial bin) -> the MEC rate-map layout (ratemap_file.py).

Reference: thesis Section 4.8.2 (spec ch3_ch4 B2): rate = spikes / occupancy per 5 cm bin, NaN where the animal never
was, then Gaussian smoothing with sigma = 1 bin (NaN-aware, goaldriven.spatial.ratemaps.smooth_ratemap; a track is
smoothed along its axis only, one trial at a time).

Input: one .npz file per cell (e.g. exported from the published per-cell MATLAB structures), fields
    animal          str, the animal id
    session         str, optional (default: the animal); a track recording is one session
    cell_id         str, unique within the session
    spike_counts    box: (h, w) spikes per bin (rows = y); track: (r, n) spikes per trial and bin
    occupancy_s     same shape, seconds spent in each bin (0 = unvisited)
    trial_maps      track only: (r,) int map (remapping state) of each trial (default: all trials map 0)
  or, instead of spike_counts + occupancy_s, `rate_maps` (same shape, Hz, NaN = unvisited; smoothed here unless
  smoothing_sigma_bins = 0). Cells of one session must share the trial count and trial_maps.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import scipy.ndimage

from goaldriven.neural_fits.mec.ratemap_file import Environment, MECDataError, Recording
from goaldriven.spatial import ratemaps

# h/w: box bins (rows = y), r: trials, n: track bins


@dataclasses.dataclass
class CellArrays:
    """One cell's binned arrays (module docstring): either spike_counts + occupancy_s, or rate_maps."""

    animal: str
    cell_id: str
    session: str | None = None
    spike_counts: np.ndarray | None = None
    occupancy_s: np.ndarray | None = None
    rate_maps: np.ndarray | None = None
    trial_maps: np.ndarray | None = None


def rates(cell: CellArrays, sigma_bins: float, kind: str) -> np.ndarray:
    """The cell's smoothed rate map(s): box (h, w), track (r, n); NaN where occupancy is 0."""
    where = f"cell {cell.cell_id!r} of {cell.animal!r}"
    if cell.rate_maps is not None:
        raw = np.asarray(cell.rate_maps, dtype=np.float64)
    else:
        if cell.spike_counts is None or cell.occupancy_s is None:
            raise MECDataError(f"{where}: give spike_counts and occupancy_s (or rate_maps); see docs/mec_fits.md.")
        spikes, occupancy = (np.asarray(a, dtype=np.float64) for a in (cell.spike_counts, cell.occupancy_s))
        if spikes.shape != occupancy.shape:
            raise MECDataError(
                f"{where}: spike_counts {spikes.shape} and occupancy_s {occupancy.shape} differ in shape."
            )
        if (occupancy < 0).any() or (spikes < 0).any():
            raise MECDataError(f"{where}: spike_counts and occupancy_s must be >= 0 (0 s = unvisited bin).")
        with np.errstate(invalid="ignore", divide="ignore"):
            raw = np.where(occupancy > 0, spikes / occupancy, np.nan)
    if raw.ndim != 2:
        raise MECDataError(f"{where}: arrays must be 2-D (box: (h, w); track: (trials, bins)); received {raw.shape}.")
    if sigma_bins == 0:
        return raw
    if kind == "box":
        return ratemaps.smooth_ratemap(raw, sigma_bins)
    # A track: each trial smoothed along the track only.
    return _smooth_rows(raw, sigma_bins)


def _smooth_rows(raw: np.ndarray, sigma_bins: float) -> np.ndarray:
    """NaN-aware Gaussian smoothing of each row of (r, n) along n (normalised convolution, zero padding)."""
    valid = np.isfinite(raw)
    values = scipy.ndimage.gaussian_filter1d(np.where(valid, raw, 0.0), sigma_bins, axis=1, mode="constant")
    weights = scipy.ndimage.gaussian_filter1d(valid.astype(np.float64), sigma_bins, axis=1, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = values / weights
    out[~valid] = np.nan
    return out


def environment_from_cells(
    cells: list[CellArrays],
    *,
    name: str,
    kind: str,
    extent_m: tuple[float, ...],
    bin_size_m: float = 0.05,
    smoothing_sigma_bins: float = 1.0,
    source: str = "",
) -> Environment:
    """An Environment (checked) with one recording per animal (box) or session (track) from per-cell arrays."""
    groups: dict[str, list[CellArrays]] = {}
    for cell in cells:
        key = cell.animal if kind == "box" else (cell.session or cell.animal)
        groups.setdefault(str(key), []).append(cell)
    if not groups:
        raise MECDataError(f"environment {name!r}: no cells given; pass at least one CellArrays.")
    recordings = {}
    for key, members in groups.items():
        animals = {str(c.animal) for c in members}
        if len(animals) != 1:
            raise MECDataError(f"session {key!r} holds cells of animals {sorted(animals)}; give each its own session.")
        maps = np.stack([rates(c, smoothing_sigma_bins, kind) for c in members]).astype(np.float32)
        ids = np.array([str(c.cell_id) for c in members])
        if kind == "box":
            recordings[key] = Recording(animals.pop(), ids, rate_maps=maps)
            continue
        labels = {
            tuple(np.zeros(maps.shape[1], int) if c.trial_maps is None else np.asarray(c.trial_maps).tolist())
            for c in members
        }
        if len(labels) != 1:
            raise MECDataError(
                f"session {key!r}: cells disagree on trial_maps; a session's trials share one labelling."
            )
        recordings[key] = Recording(animals.pop(), ids, trials=maps, trial_maps=np.asarray(labels.pop(), np.int64))
    env = Environment(name, kind, tuple(extent_m), recordings, bin_size_m, smoothing_sigma_bins, source)
    return env.check()


def load_cell_folder(folder: str) -> list[CellArrays]:
    """CellArrays from every *.npz of `folder` (sorted by file name; fields in the module docstring)."""
    paths = sorted(glob.glob(os.path.join(folder, "*.npz")))
    if not paths:
        raise MECDataError(f"no .npz files in {folder}; export one file per cell (fields in docs/mec_fits.md).")
    cells = []
    fields = {f.name for f in dataclasses.fields(CellArrays)}
    for path in paths:
        with np.load(path, allow_pickle=False) as z:
            unknown = set(z.files) - fields
            if unknown or not {"animal", "cell_id"} <= set(z.files):
                raise MECDataError(
                    f"{path}: needs animal and cell_id and only the fields {sorted(fields)}; unknown {sorted(unknown)}."
                )
            values = {k: z[k] for k in z.files}
        for key in ("animal", "cell_id", "session"):
            if key in values:
                values[key] = str(values[key])
        cells.append(CellArrays(**values))
    return cells
