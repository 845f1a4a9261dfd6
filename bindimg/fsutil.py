"""Atomic file replacement: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

TEMP_PREFIX = ".bindimg-"


def stage(path: str, data: bytes) -> str:
    """Write `data` to a temporary file beside `path`, mode copied, fsynced; return its name.

    The temporary file lives in the same directory so that the final rename is atomic.
    """
    directory = os.path.dirname(path) or "."
    mode = 0o644
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
    except BaseException:
        discard(temp)
        raise
    return temp


def commit(temp: str, path: str) -> None:
    """Rename a staged file over its destination and make the rename durable."""
    os.replace(temp, path)
    fsync_dir(os.path.dirname(path) or ".")


def discard(temp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def symlink_atomic(target: str, path: str) -> None:
    """Create or replace the symlink `path` -> `target` with a rename."""
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(path)}")
    discard(temp)
    os.symlink(target, temp)
    commit(temp, path)
