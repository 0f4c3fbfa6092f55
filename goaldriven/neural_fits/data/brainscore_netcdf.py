"""Build `NeuralData` from a Brain-Score / brainio neural assembly saved as NetCDF4 (an HDF5 file).

Reference: A. Nayebi, PhD thesis (2022), Section 2.5.6 (Majaj et al. 2015 V4/IT data, e.g. "dicarlo.MajajHong2015":
5120 images x 256 units x 25 bins of 10 ms, ~50 trials). Re-exported by `goaldriven.neural_fits.data.converters`.

Layout read: one data variable with dims presentation x neuroid [x time_bin] (any order; read from the
netCDF dimension scales) and 1-D coordinate variables along the dims: presentation: image_id, repetition,
object_name / category_name (...); neuroid: neuroid_id, animal, region (...); time_bin: time_bin_start,
time_bin_end (ms). Presentations are grouped by image_id (first-appearance order) and ordered by repetition to give
trials. Checked against this documented layout with fabricated files (tests never download), not a real download.

Unequal repetition counts are never handled silently: pass trials="min" (keep the first k valid trials of every
stimulus and unit, k = the smallest count; the number dropped is logged) or trials="mean" (trial averages over the
valid trials; r = 1, has_trials False).
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from goaldriven.neural_fits.data.checks import resolve_trials
from goaldriven.neural_fits.data.hdf5_io import open_hdf5, read_strings
from goaldriven.neural_fits.data.neural_data import NeuralData, NeuralDataError

# n: stimuli, u: units, t: time bins, r: trials, P: presentations (stimulus x repetition rows of an assembly)

__all__ = ["from_brainscore_netcdf"]

_NETCDF_INTERNAL = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "coordinates"}


def _dim_names(dataset: h5py.Dataset) -> list[str] | None:
    names = []
    for axis in range(dataset.ndim):
        scales = dataset.dims[axis]
        if len(scales) == 0:
            return None
        names.append(scales[0].name.rsplit("/", 1)[-1])
    return names


def _is_phony_dimension(dataset: h5py.Dataset) -> bool:
    name = dataset.attrs.get("NAME", b"")
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    return name.startswith("This is a netCDF dimension but not a netCDF variable")


def _coordinates(f: h5py.File, skip: str) -> dict[str, dict[str, np.ndarray]]:
    """{dim name: {coordinate name: values}} for the 1-D variables of the file."""
    coords: dict[str, dict[str, np.ndarray]] = {}
    for name, item in f.items():
        if name == skip or not isinstance(item, h5py.Dataset) or item.ndim != 1 or _is_phony_dimension(item):
            continue
        dims = _dim_names(item)
        dim = dims[0] if dims else name
        is_text = h5py.check_string_dtype(item.dtype) is not None or item.dtype.kind in "SO"
        coords.setdefault(dim, {})[name] = read_strings(item) if is_text else item[()]
    return coords


def _require(coords: dict, dim: str, names: tuple[str, ...], path: str) -> np.ndarray:
    for name in names:
        if name in coords.get(dim, {}):
            return coords[dim][name]
    raise NeuralDataError(
        f"{path}: no coordinate {' / '.join(names)} along dimension '{dim}'; found {sorted(coords.get(dim, {}))}. "
        f"Fix: add it to the assembly, or rename the coordinate."
    )


def from_brainscore_netcdf(
    path,
    *,
    trials: str | None = None,
    variable: str | None = None,
    dims: tuple[str, ...] | None = None,
    label_coord: str | None = None,
    regions=None,
    time_bins_ms=None,
    block_presentations: int = 4096,
) -> NeuralData:
    """NeuralData from a brainio NetCDF4 neural assembly (layout in the module docstring).

    Args:
        trials: None (require equal repetition counts), "min" or "mean" (module docstring).
        variable: name of the data variable; default the only dataset with >= 2 dims.
        dims: dimension names of the data variable's axes when the file has no netCDF dimension scales.
        label_coord: presentation coordinate used as stimulus_labels; default object_name, else category_name.
        regions: keep only neuroids whose region is in this list (e.g. ["IT"]).
        time_bins_ms: (1, 2) window for assemblies without a time_bin dimension or coordinates.
        block_presentations: presentations read per block (bounds memory).
    """
    path = os.fspath(path)
    with open_hdf5(path, "NetCDF4 files are HDF5; convert NETCDF3 files with `nccopy -k nc4`.") as f:
        if variable is None:
            candidates = [k for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim >= 2]
            if len(candidates) != 1:
                raise NeuralDataError(f"{path}: found data variables {candidates}; pass variable= to choose one.")
            variable = candidates[0]
        dataset = f[variable]
        names = list(dims) if dims is not None else _dim_names(dataset)
        if names is None or len(names) != dataset.ndim:
            raise NeuralDataError(
                f"{path}: cannot tell the dimensions of '{variable}' (shape {dataset.shape}; no netCDF dimension scales "
                f"attached). Fix: pass dims=('presentation', 'neuroid', 'time_bin') in the variable's axis order."
            )
        if "presentation" not in names or "neuroid" not in names:
            raise NeuralDataError(f"{path}: '{variable}' has dims {names}; need 'presentation' and 'neuroid'.")
        coords = _coordinates(f, skip=variable)
        return _assemble(f, dataset, names, coords, path, variable, trials, label_coord, regions, time_bins_ms,
                         block_presentations)  # fmt: skip


def _assemble(f, dataset, names, coords, path, variable, trials, label_coord, regions, time_bins_ms, block):
    image_ids = _require(coords, "presentation", ("image_id", "stimulus_id"), path).astype(str)
    n_pres = image_ids.shape[0]
    repetition = coords["presentation"].get("repetition", np.zeros(n_pres))
    unique, first, inverse, counts = np.unique(image_ids, return_index=True, return_inverse=True, return_counts=True)
    by_appearance = np.argsort(first, kind="stable")
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(by_appearance.size)
    stim_index = rank[inverse]  # (P,) stimulus of each presentation
    order = np.lexsort((np.arange(n_pres), repetition, stim_index))
    starts = np.concatenate([[0], np.cumsum(counts[by_appearance])[:-1]])
    slot = np.empty(n_pres, dtype=np.int64)
    slot[order] = np.arange(n_pres) - starts[stim_index[order]]  # trial index of each presentation

    unit_ids = _require(coords, "neuroid", ("neuroid_id",), path).astype(str)
    animal = _require(coords, "neuroid", ("animal", "subject"), path).astype(str)
    region = _require(coords, "neuroid", ("region", "area"), path).astype(str)
    keep = np.ones(unit_ids.size, dtype=bool) if regions is None else np.isin(region, list(regions))
    if not keep.any():
        raise NeuralDataError(f"{path}: no neuroid has a region in {list(regions)}; regions: {sorted(set(region))}.")

    has_time = "time_bin" in names
    t = dataset.shape[names.index("time_bin")] if has_time else 1
    time_coords = coords.get("time_bin", {})
    if has_time and "time_bin_start" in time_coords and "time_bin_end" in time_coords:
        bins = np.stack([time_coords["time_bin_start"], time_coords["time_bin_end"]], axis=1).astype(np.float64)
    elif time_bins_ms is not None:
        bins = np.asarray(time_bins_ms, dtype=np.float64).reshape(-1, 2)
    else:
        raise NeuralDataError(
            f"{path}: no time_bin_start / time_bin_end coordinates. Fix: pass time_bins_ms=[[start, end]] in ms."
        )

    axes = [names.index("presentation"), names.index("neuroid")] + ([names.index("time_bin")] if has_time else [])
    extra = [i for i in range(dataset.ndim) if i not in axes]
    if extra:
        raise NeuralDataError(f"{path}: '{variable}' has extra dims {[names[i] for i in extra]}; select them first.")
    fill = dataset.attrs.get("_FillValue")
    scale, offset = dataset.attrs.get("scale_factor"), dataset.attrs.get("add_offset")
    out = np.full((unique.size, int(keep.sum()), t, int(counts.max())), np.nan, dtype=np.float32)
    pres_axis = names.index("presentation")
    for p0 in range(0, n_pres, block):
        p1 = min(n_pres, p0 + block)
        index = tuple(slice(p0, p1) if i == pres_axis else slice(None) for i in range(dataset.ndim))
        values = np.transpose(dataset[index], axes).astype(np.float64)
        if fill is not None:
            values[values == np.asarray(fill).reshape(-1)[0]] = np.nan
        if scale is not None:
            values = values * float(np.asarray(scale).reshape(-1)[0])
        if offset is not None:
            values = values + float(np.asarray(offset).reshape(-1)[0])
        values = values[:, keep]
        out[stim_index[p0:p1], :, :, slot[p0:p1]] = values.reshape(p1 - p0, -1, t)
    responses, has_trials = resolve_trials(out, trials, path)

    stimulus_ids = unique[by_appearance]
    first_pres = first[by_appearance]
    per_stimulus = {}
    for name, values in coords["presentation"].items():
        if name not in ("image_id", "stimulus_id", "repetition") and np.array_equal(
            values, values[first_pres][stim_index]
        ):
            per_stimulus[name] = values[first_pres]
    if label_coord is None:
        label_coord = next((c for c in ("object_name", "category_name") if c in per_stimulus), None)
    elif label_coord not in per_stimulus:
        raise NeuralDataError(
            f"{path}: label_coord '{label_coord}' is not a presentation coordinate constant within each image; "
            f"candidates: {sorted(per_stimulus)}."
        )
    per_unit = {k: v[keep] for k, v in coords["neuroid"].items() if k not in ("neuroid_id", "animal", "region")}
    source = {"format": "brainscore_netcdf", "file": os.path.basename(path), "variable": variable}
    source["trials_policy"] = "none" if trials is None else trials
    for key, value in list(f.attrs.items()) + list(dataset.attrs.items()):
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if not key.startswith("_") and key not in _NETCDF_INTERNAL and isinstance(value, (str, int, float, np.number)):
            source[f"attr_{key}"] = value
    return NeuralData(
        responses=responses,
        stimulus_ids=stimulus_ids,
        unit_ids=unit_ids[keep],
        animal=animal[keep],
        area=region[keep],
        time_bins_ms=bins,
        has_trials=has_trials,
        stimulus_labels=None if label_coord is None else per_stimulus[label_coord].astype(str),
        attrs={"source": source, "per_stimulus": per_stimulus, "per_unit": per_unit},
    )
