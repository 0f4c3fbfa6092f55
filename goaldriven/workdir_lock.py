"""One process per workdir: an exclusive lock that names its holder, survives crashes and works on gs://.

Local (and mounted) folders: `<workdir>/.goaldriven.lock` is locked with `fcntl.flock`, which the operating system
releases when the holding process ends, however it ends (SIGKILL, out of memory, a crash). The file records who
holds it (host, pid, start time, what it runs). A second process that cannot take the lock refuses in one line that
names the holder; a process that finds the file left by a dead holder takes the lock over and says so.

Remote folders (gs://, any URL): object stores have no locks through tf.io.gfile, so the lock is the file itself,
checked and written (check-then-write, a window of a second or so) and deleted on exit. A holder that crashed leaves
the file behind; it is taken over, with a note, when its host and pid are this machine's and the pid is gone, and
otherwise the refusal says to delete the file once that run is known to be over (another host cannot be asked).
"""

import contextlib
import errno
import json
import os
import socket
import sys
import time
from typing import Callable, Iterator

LOCK_NAME = ".goaldriven.lock"


class WorkdirBusyError(RuntimeError):
    """Another live process holds the workdir."""


def _holder_record(purpose: str) -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "purpose": purpose,
        "command": " ".join(sys.argv)[:300],
    }


def _describe(record: dict) -> str:
    return (
        f"pid {record.get('pid')} on {record.get('host')} ({record.get('purpose', '?')}, started "
        f"{record.get('started', '?')})"
    )


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True  # another user's live process (or an unreadable record): assume alive
    return True


def _parse(text: str) -> dict:
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


@contextlib.contextmanager
def hold(workdir: str, purpose: str, log: Callable[[str], None] = print) -> Iterator[None]:
    """Holds the exclusive lock of `workdir` (created if needed) for the duration of the context.

    Raises WorkdirBusyError (one line: the holder and the fix) when another live process holds it.
    """
    if "://" in workdir:
        with _hold_remote(workdir, purpose, log):
            yield
        return
    import fcntl  # pylint: disable=g-import-not-at-top  POSIX only; imported here so the module imports anywhere.

    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = _parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
            raise WorkdirBusyError(
                f"{workdir} is in use by {_describe(holder)}; wait for it to finish, stop it, or use another "
                "--workdir (two processes must never write one workdir)."
            ) from None
        previous = _parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        if previous:
            log(f"note: taking over the lock of {workdir} left by {_describe(previous)}, which is no longer running")
        record = json.dumps(_holder_record(purpose)).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # an empty file: released cleanly (the flock goes with the descriptor)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _hold_remote(workdir: str, purpose: str, log: Callable[[str], None]) -> Iterator[None]:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top  Only remote folders need gfile.

    path = workdir.rstrip("/") + "/" + LOCK_NAME
    tf.io.gfile.makedirs(workdir)
    if tf.io.gfile.exists(path):
        with tf.io.gfile.GFile(path) as f:
            holder = _parse(f.read())
        same_host = holder.get("host") == socket.gethostname()
        if not (same_host and not _pid_alive(holder.get("pid"))):
            raise WorkdirBusyError(
                f"{workdir} is in use by {_describe(holder)} (lock file {path}); wait for it to finish or use another "
                "--workdir. If that run is known to be over (it crashed), delete the lock file."
            )
        log(f"note: taking over the lock of {workdir} left by {_describe(holder)}, which is no longer running")
    mine = _holder_record(purpose)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(mine))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            tf.io.gfile.remove(path)
