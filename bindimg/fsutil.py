"""Atomic file replacement: a reader sees the old file or the new one, never half of either.

New content is written to an anonymous file (O_TMPFILE) in the destination's directory, so a
run killed while writing leaves nothing behind; it gets a name only for the instant between
`link` and `rename`. Filesystems without O_TMPFILE get a named temporary file instead, and
any such leftover of a killed run is swept the next time bindimg writes in that directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import tempfile
from dataclasses import dataclass
from typing import Optional

TEMP_PREFIX = ".bindimg-"


@dataclass
class Staged:
    """Content written and synced, waiting for `commit`: an open O_TMPFILE or a named file."""

    path: str
    data: bytes
    fd: Optional[int] = None
    temp: Optional[str] = None


def _mode_of(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o644


def stage(path: str, data: bytes) -> Staged:
    """Write `data` beside `path` (same directory, so the final rename is atomic)."""
    directory = os.path.dirname(path) or "."
    mode = _mode_of(path)
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode)
        staged = Staged(path, data, fd=fd)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        staged = Staged(path, data, temp=temp)
    try:
        _write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        discard(staged)
        raise
    if staged.temp is not None:
        os.close(fd)
    return staged


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def commit(staged: Staged) -> None:
    """Put staged content in place with one rename and make the rename durable."""
    directory = os.path.dirname(staged.path) or "."
    if staged.fd is not None:
        temp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(staged.path)}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        linked = _link_anonymous(staged.fd, temp)
        os.close(staged.fd)
        staged.fd = None
        if not linked:  # no way to name the anonymous file here: write a named one
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _write_all(fd, staged.data)
                os.fchmod(fd, _mode_of(staged.path))
                os.fsync(fd)
            finally:
                os.close(fd)
        staged.temp = temp
    assert staged.temp is not None
    os.replace(staged.temp, staged.path)
    staged.temp = None
    fsync_dir(directory)


_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_libc: Optional[ctypes.CDLL] = None


def _link_anonymous(fd: int, name: str) -> bool:
    """Give an O_TMPFILE file a name: linkat(AT_EMPTY_PATH), else through /proc/self/fd."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        if _libc.linkat(fd, b"", _AT_FDCWD, os.fsencode(name), _AT_EMPTY_PATH) == 0:
            return True
    except (OSError, AttributeError):
        pass
    try:
        os.link(f"/proc/self/fd/{fd}", name, follow_symlinks=True)
        return True
    except OSError:
        return False


def discard(staged: Staged) -> None:
    if staged.fd is not None:
        os.close(staged.fd)
        staged.fd = None
    if staged.temp is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged.temp)
        staged.temp = None


def write_atomic(path: str, data: bytes) -> None:
    commit(stage(path, data))


def sweep(directory: str) -> None:
    """Remove temporary files a killed bindimg left in `directory`."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if name.startswith(TEMP_PREFIX):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(os.path.join(directory, name))


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
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    os.symlink(target, temp)
    os.replace(temp, path)
    fsync_dir(directory)
