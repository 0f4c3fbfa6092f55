"""HDF5 and image-file helpers of the neural data format, and the error type `NeuralDataError`.

Reference: A. Nayebi, PhD thesis (2022), Sections 2.5.6 / 2.5.8 / 3.6.1 (the recordings stored in this format); the
on-disk layout is documented in docs/neural_data_format.md. `neural_data.py` re-exports
`NeuralDataError` and uses these helpers to save and load `NeuralData`; they take plain h5py objects and arrays.

Strings are UTF-8 variable-length HDF5 strings (nothing is pickled). Metadata trees map to HDF5 as:
    dict -> group;  str/int/float/bool -> attribute;  NumPy array -> dataset (str arrays as string datasets)
Stimulus images live in a .npy file or in an .h5 file's root dataset "stimuli" (or its only root dataset).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import h5py
import numpy as np

# n: stimuli, u: units, t: time bins, r: trials, h/w/c: stimulus image height/width/channels


class NeuralDataError(ValueError):
    """A neural data array or file breaks the format; the message names the field, the problem and the fix."""


def open_hdf5(path: str, fix: str) -> h5py.File:
    """The HDF5 file at `path` opened for reading; a NeuralDataError naming `fix` when it is not HDF5."""
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise NeuralDataError(f"{path} is not a readable HDF5 file ({error}). Fix: {fix}") from error


def read_dataset(f: h5py.File, name: str, path: str, strings: bool = False) -> np.ndarray:
    """The whole dataset `name` of the open file (decoded to str if `strings`); a NeuralDataError naming the file and
    the dataset when HDF5 cannot read it (a corrupted or truncated chunk fails its checksum or decompression)."""
    try:
        return read_strings(f[name]) if strings else f[name][()]
    except OSError as error:
        detail = " ".join(str(error).split())
        raise NeuralDataError(
            f"{path}: dataset {name!r} cannot be read ({detail}); the file is damaged (a corrupted or truncated "
            "chunk). Fix: copy or export the file again from its source."
        ) from error


def as_str_array(value) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return array
    if array.dtype.kind in "SO":
        flat = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.reshape(-1).tolist()]
        return np.array(flat, dtype=str).reshape(array.shape) if flat else np.zeros(array.shape, dtype="U1")
    return array.astype(str)


def resolve_path(path, base_dir) -> str | None:
    if path is None:
        return None
    path = os.path.expanduser(os.fspath(path))
    return path if os.path.isabs(path) else os.path.join(base_dir or os.getcwd(), path)


def _image_dataset(f: h5py.File, path: str) -> h5py.Dataset:
    if isinstance(f.get("stimuli"), h5py.Dataset):
        return f["stimuli"]
    datasets = [item for item in f.values() if isinstance(item, h5py.Dataset)]
    if len(datasets) != 1:
        raise NeuralDataError(f"{path}: expected a root dataset named 'stimuli' (or a single root dataset).")
    return datasets[0]


def image_file_shape(path: str) -> tuple:
    with _damaged_image_file(path):
        if path.endswith(".npy"):
            return np.load(path, mmap_mode="r", allow_pickle=False).shape
        with h5py.File(path, "r") as f:
            return _image_dataset(f, path).shape


def read_image_file(path: str) -> np.ndarray:
    """The (n, h, w, c) images of a .npy or .h5 stimuli file; a NeuralDataError naming the file when it is damaged."""
    with _damaged_image_file(path):
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with h5py.File(path, "r") as f:
            return _image_dataset(f, path)[()]


@contextlib.contextmanager
def _damaged_image_file(path: str) -> Iterator[None]:
    """Turns the errors of reading a damaged .npy / .h5 stimuli file into a NeuralDataError naming the file."""
    try:
        yield
    except NeuralDataError:
        raise
    except (OSError, ValueError, EOFError) as error:
        raise NeuralDataError(
            f"stimuli file {path} cannot be read ({' '.join(str(error).split())}); it is damaged or not an image "
            "array. Fix: write it again (an (n, h, w, c) .npy array or an .h5 file with a root dataset 'stimuli')."
        ) from error


def decode_attr(value):
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


def write_strings(group: h5py.Group, name: str, values: np.ndarray) -> None:
    group.create_dataset(name, data=np.array(values.tolist(), dtype=object), dtype=h5py.string_dtype("utf-8"))


def read_strings(dataset: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return as_str_array(dataset.asstr()[()])
    return as_str_array(dataset[()])


def write_tree(group: h5py.Group, tree: dict) -> None:
    for key, value in tree.items():
        if isinstance(value, dict):
            write_tree(group.create_group(key), value)
        elif isinstance(value, np.ndarray):
            if value.dtype.kind == "U":
                write_strings(group, key, value)
            else:
                group.create_dataset(key, data=value)
        else:
            group.attrs[key] = value


def read_tree(group: h5py.Group) -> dict:
    out = {key: decode_attr(value) for key, value in group.attrs.items()}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            out[key] = read_tree(item)
        elif h5py.check_string_dtype(item.dtype) is not None:
            out[key] = read_strings(item)
        else:
            out[key] = item[()]
    return out
