"""Writes `.pt` files in torch.save's zip layout without PyTorch, for tests on machines without it.

The layout is the one `torch.save` (PyTorch >= 1.6) writes, checked against PyTorch 2.13 in
tests/importers/test_torch_files.py (torch.load(weights_only=True) reads these files back):

    <stem>/data.pkl      protocol-2 pickle; tensors as torch._utils._rebuild_tensor_v2(storage, offset, size,
                         stride, requires_grad, OrderedDict()) with persistent ids
                         ("storage", torch.<Type>Storage, "<key>", "cpu", numel)
    <stem>/data/<key>    each tensor's raw little-endian bytes
    <stem>/byteorder     "little"; <stem>/version "3"; <stem>/.format_version "1"; <stem>/.storage_alignment "64"

Leaves of the saved object: np.ndarray (float32, float64, int64, int32, uint8, bool) become tensors; dicts,
OrderedDicts, lists, numbers and strings are pickled as themselves.
"""

import collections
import io
import os
import pickle
import zipfile

import numpy as np

STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


def _global(module: str, name: str) -> type:
    """A class that pickles as GLOBAL `module name` (never imported here)."""
    return type(name, (), {"torch_global": (module, name)})


_REBUILD = _global("torch._utils", "_rebuild_tensor_v2")
_STORAGE_TYPES = {name: _global("torch", name) for name in STORAGE_NAMES.values()}


class _StorageRef:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Pickler(pickle._Pickler):  # the pure-Python pickler lets save_global be overridden
    def __init__(self, stream):
        super().__init__(stream, protocol=2)
        self.storages: list[_StorageRef] = []

    def save_global(self, obj, name=None):
        spec = getattr(obj, "torch_global", None)
        if spec is None:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{spec[0]}\n{spec[1]}\n".encode("ascii"))
        self.memoize(obj)

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", _STORAGE_TYPES[STORAGE_NAMES[obj.array.dtype]], obj.key, "cpu", obj.array.size)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            array = obj if obj.flags.c_contiguous else obj.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
            if array.dtype not in STORAGE_NAMES:
                raise TypeError(f"no torch storage for dtype {array.dtype}")
            ref = _StorageRef(str(len(self.storages)), array)
            self.storages.append(ref)
            stride = tuple(s // array.itemsize for s in array.strides) if array.size else (1,) * array.ndim
            return _REBUILD, (ref, 0, tuple(array.shape), stride, False, collections.OrderedDict())
        return NotImplemented


def save(obj, path: str) -> str:
    """Writes `obj` (module docstring) to `path` as torch.save would; returns the path."""
    stem = os.path.splitext(os.path.basename(path))[0] or "archive"
    buffer = io.BytesIO()
    pickler = _Pickler(buffer)
    pickler.dump(obj)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zipped:
        zipped.writestr(f"{stem}/data.pkl", buffer.getvalue())
        zipped.writestr(f"{stem}/.format_version", "1")
        zipped.writestr(f"{stem}/.storage_alignment", "64")
        zipped.writestr(f"{stem}/byteorder", "little")
        for ref in pickler.storages:
            zipped.writestr(f"{stem}/data/{ref.key}", ref.array.astype(ref.array.dtype.newbyteorder("<")).tobytes())
        zipped.writestr(f"{stem}/version", "3\n")
    return path
