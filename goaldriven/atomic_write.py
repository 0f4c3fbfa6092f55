"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Every output of the library that is rewritten in place (metrics.json, summaries, configs, plots, neural data files)
goes through `atomic_path`: the content is written to a temporary file in the destination folder and moved over the
destination with `os.replace`, which is atomic on POSIX file systems; if writing fails, the temporary file is removed
and the destination is untouched. Remote paths (`gs://...`, anything with a URL scheme) are written locally and
uploaded with `tf.io.gfile.copy`: a Cloud Storage object appears whole when its upload completes.
"""

import contextlib
import glob
import json
import os
import tempfile
from typing import Any, Iterator


def _is_remote(path: str) -> bool:
    return "://" in path


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path to write instead of `path`; on success it replaces `path` (created folders included).

    `suffix` is the temporary file's ending, for writers that infer the format from it (matplotlib: ".png").
    """
    remote = _is_remote(path)
    directory = tempfile.gettempdir() if remote else (os.path.dirname(path) or ".")
    if not remote:
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix)
    os.close(fd)
    try:
        yield tmp
        if remote:
            import tensorflow as tf  # pylint: disable=g-import-not-at-top  Only remote paths need TensorFlow's gfile.

            tf.io.gfile.makedirs(os.path.dirname(path))
            tf.io.gfile.copy(tmp, path, overwrite=True)
            os.remove(tmp)
        else:
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the output follows the user's umask like open()
            os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError) and not e.filename and e.errno:
            raise OSError(e.errno, e.strerror, path) from e  # name the file (a write error does not)
        raise


def leftovers(path: str) -> list[str]:
    """Temporary files that killed atomic writes to `path` left beside it (safe to delete when nobody writes it)."""
    pattern = os.path.join(
        glob.escape(os.path.dirname(path) or "."), glob.escape(f".{os.path.basename(path)}.") + "*.tmp*"
    )
    return sorted(glob.glob(pattern))


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str | None = "utf-8"):
    """`open(path, mode)` that replaces `path` only when the block completes ('w' or 'wb')."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files; mode must be 'w' or 'wb'. Received: {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def write_text(path: str, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json(path: str, payload: Any) -> None:
    """JSON (indented, sorted keys; NumPy values as lists) written atomically."""
    with atomic_open(path) as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=_json_default)


def save_figure(figure, path: str, **savefig_kwargs) -> None:
    """Saves a matplotlib Figure atomically (the format follows `path`'s ending)."""
    with atomic_path(path, suffix=os.path.splitext(path)[1]) as tmp:
        figure.savefig(tmp, **savefig_kwargs)


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
