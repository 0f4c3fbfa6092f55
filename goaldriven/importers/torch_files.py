"""Reads PyTorch `.pt` / `.pth` files without PyTorch and without running any code the file names.

`torch.save` (PyTorch >= 1.6) writes a zip: `<stem>/data.pkl` (a protocol-2 pickle of the saved object),
`<stem>/data/<key>` (one raw little-endian buffer per tensor storage), `<stem>/byteorder`, `<stem>/version`. The pickle
builds tensors by calling `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` on storages given as
persistent ids `("storage", torch.FloatStorage, key, location, numel)`.

`load(path)` unpickles `data.pkl` with an unpickler that maps exactly these names to its own functions:

    collections.OrderedDict                       -> OrderedDict
    torch._utils._rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter, torch._tensor._rebuild_from_type_v2
                                                  -> a `LazyTensor` (dtype, shape, strides; read on `.numpy()`)
    torch.<Float|Double|Half|BFloat16|Long|Int|Short|Char|Byte|Bool>Storage  -> its dtype

Every other global (numpy scalars in a trainer's `results`, optimizer classes, anything a malicious file might name)
becomes an inert `Opaque` placeholder that records its name and arguments: no class or function of the file's
choice is ever imported or called, which is stricter than `torch.load(weights_only=True)`. Tensors are read from the
zip only when asked for, so a 656 MB memory bank or the optimizer state that no goaldriven weight needs costs
nothing. Files in PyTorch's pre-1.6 (non-zip) format are read with `torch.load(weights_only=True)` when PyTorch is
installed (the `torch` extra), and are otherwise a one-line error saying how to re-save them.
"""

import collections
import dataclasses
import os
import pickle
import zipfile
from typing import Any

import numpy as np

from goaldriven.importers import common

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # read as uint16 bits, widened to float32 (NumPy has no bfloat16)
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_REBUILDERS = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"),
}


class TorchFileError(common.WeightImportError):
    """A file that is not a readable PyTorch checkpoint (the message says what to do)."""


@dataclasses.dataclass(frozen=True)
class _Storage:
    archive: "_Archive"
    key: str
    storage_type: str
    numel: int


class LazyTensor:
    """A tensor of a `.pt` file, read from the zip when `.numpy()` is called (then cached)."""

    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset = storage, int(offset)
        self.shape, self.stride = tuple(int(n) for n in shape), tuple(int(n) for n in stride)
        self._value = None

    @property
    def dtype_name(self) -> str:
        return self.storage.storage_type

    def numpy(self) -> np.ndarray:
        if self._value is None:
            flat = self.storage.archive.storage(self.storage)
            itemsize = flat.dtype.itemsize
            needed = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) + 1
            if min(self.shape, default=1) > 0 and needed > flat.size:
                raise TorchFileError(
                    f"{self.storage.archive.path}: tensor on storage {self.storage.key} reaches element {needed} of "
                    f"{flat.size}; the file is truncated or corrupt (download it again)"
                )
            count = int(np.prod(self.shape, dtype=np.int64))
            contiguous = tuple(int(np.prod(self.shape[i + 1 :], dtype=np.int64)) for i in range(len(self.shape)))
            if all(n == 1 or s == c for n, s, c in zip(self.shape, self.stride, contiguous)):
                value = flat[self.offset : self.offset + count].reshape(self.shape)  # read-only, no copy
            else:
                view = np.lib.stride_tricks.as_strided(
                    flat[self.offset :], self.shape, tuple(s * itemsize for s in self.stride), writeable=False
                )
                value = np.array(view)  # a contiguous copy
            if self.storage.storage_type == "BFloat16Storage":
                value = (value.astype(np.uint32) << 16).view(np.float32)
            self._value = value
        return self._value

    def __repr__(self) -> str:
        return f"LazyTensor({self.storage.storage_type}, shape={self.shape})"


class Opaque:
    """Stands in for any object of a name outside the allowlist: keeps the name and arguments, runs nothing."""

    global_name = "?"

    def __new__(cls, *args, **kwargs):
        instance = object.__new__(cls)
        instance.args, instance.state = args, None
        return instance

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f"Opaque({self.global_name})"


def _opaque(module: str, name: str) -> type:
    return type(f"Opaque_{name}", (Opaque,), {"global_name": f"{module}.{name}"})


@dataclasses.dataclass(frozen=True)
class _StorageType:
    name: str


def _rebuild_tensor(storage, offset, shape, stride, *unused):
    if not isinstance(storage, _Storage):
        raise TorchFileError(f"a tensor is built on {storage!r}, not on a storage of the file")
    return LazyTensor(storage, offset, shape, stride)


def _rebuild_parameter(data, *unused):
    return data


def _rebuild_from_type(function, unused_type, args, unused_state):
    return function(*args)


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream, archive: "_Archive"):
        super().__init__(stream)
        self.archive = archive

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) in _REBUILDERS:
            return {
                "_rebuild_tensor_v2": _rebuild_tensor,
                "_rebuild_tensor": _rebuild_tensor,
                "_rebuild_parameter": _rebuild_parameter,
                "_rebuild_from_type_v2": _rebuild_from_type,
            }[name]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        return _opaque(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchFileError(f"{self.archive.path}: unknown persistent id {pid!r} (not a PyTorch storage)")
        _, storage_type, key, _, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"{self.archive.path}: storage {key} has an unsupported type {storage_type!r}")
        return _Storage(self.archive, str(key), storage_type.name, int(numel))


class _Archive:
    def __init__(self, path: str, zipped: zipfile.ZipFile):
        self.path, self.zip = path, zipped
        pickles = [n for n in zipped.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise TorchFileError(f"{path} is a zip but not a torch.save file (it has {len(pickles)} data.pkl entries)")
        self.prefix = pickles[0][: -len("data.pkl")]
        order = self.prefix + "byteorder"
        if order in zipped.namelist() and zipped.read(order).strip() != b"little":
            raise TorchFileError(f"{path} was saved on a big-endian machine; re-save it on a little-endian one")

    def storage(self, storage: _Storage) -> np.ndarray:
        name = f"{self.prefix}data/{storage.key}"
        try:
            raw = self.zip.read(name)
        except KeyError:
            raise TorchFileError(f"{self.path} lacks {name}; the file is truncated or corrupt") from None
        dtype = STORAGE_DTYPES[storage.storage_type] or np.uint16
        return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))


def load(path: str) -> Any:
    """The object saved in `path` (dicts, lists, numbers, strings; `LazyTensor` for tensors; `Opaque` otherwise)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no file at {path}: pass the released .pt file")
    if os.path.isdir(path):
        found = sorted(n for n in os.listdir(path) if n.endswith((".pt", ".pth")))
        raise FileNotFoundError(
            f"{path} is a folder: pass one .pt file{' (it holds ' + ', '.join(found) + ')' if found else ''}"
        )
    if not zipfile.is_zipfile(path):
        return _load_legacy(path)
    zipped = zipfile.ZipFile(path)
    archive = _Archive(path, zipped)
    with zipped.open(archive.prefix + "data.pkl") as stream:
        try:
            return _Unpickler(stream, archive).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as e:
            raise TorchFileError(f"{path}: data.pkl is not a readable torch.save pickle ({e})") from e


def _load_legacy(path: str) -> Any:
    try:
        import torch  # pylint: disable=g-import-not-at-top  # the optional [torch] extra
    except ImportError:
        raise TorchFileError(
            f"{path} is not a zip-format torch.save file (PyTorch < 1.6 format, or not a checkpoint); install the "
            "torch extra (pip install -e '.[torch]') to read it, or re-save it with a recent PyTorch"
        ) from None
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  # torch raises many kinds; the message is passed on
        first = str(e).strip().split("\n")[0]
        raise TorchFileError(f"{path} is not a readable PyTorch checkpoint ({first})") from e
    return _numpy_leaves(value, torch)


def _numpy_leaves(value, torch):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().float().numpy() if value.dtype == torch.bfloat16 else value.detach().cpu().numpy()
    if isinstance(value, dict):
        return type(value)((k, _numpy_leaves(v, torch)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_numpy_leaves(v, torch) for v in value)
    return value


def as_array(value) -> np.ndarray:
    """A tensor of `load`'s result (LazyTensor, or an array from the legacy path) as a NumPy array."""
    return value.numpy() if isinstance(value, LazyTensor) else np.asarray(value)


def is_tensor(value) -> bool:
    return isinstance(value, (LazyTensor, np.ndarray))


def tensor_shape(value) -> tuple:
    return value.shape if isinstance(value, LazyTensor) else tuple(np.shape(value))
