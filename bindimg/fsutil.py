"""Atomic file replacement: a reader sees the old file or the new one, never half of either.

New content is written to an anonymous file (O_TMPFILE) in the destination's directory, so a
run killed while writing leaves nothing behind; it gets a name only for the instant between
`link` and `rename` (replacing a file atomically needs a second name: no way around that).
Filesystems without O_TMPFILE get a named temporary file instead. Either kind of leftover of a
killed run ends in `.tmp`, so Quadlet, which picks units by extension and does not skip dot
files, never runs it as a second unit; it is swept the next time bindimg writes in that
directory. A new symlink is created under its final name in one `symlink()`, with no
temporary name at all: bootc reads every entry of bound-images.d, hidden ones included.
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

from bindimg.errors import InputError

TEMP_PREFIX = ".bindimg-"
TEMP_SUFFIX = ".tmp"  # no unit extension: a leftover is never read as a Quadlet unit


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
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory)
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
        temp = os.path.join(
            directory, f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(staged.path)}{TEMP_SUFFIX}"
        )
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


def symlink_new(target: str, path: str) -> None:
    """Create the symlink `path` -> `target` under its final name: atomic, and a killed run
    leaves either no entry or the complete link, never a temporary name. An entry that
    appeared meanwhile is replaced as `symlink_atomic` does."""
    try:
        os.symlink(target, path)
    except FileExistsError:
        symlink_atomic(target, path)
        return
    fsync_dir(os.path.dirname(path) or ".")


def symlink_atomic(target: str, path: str) -> None:
    """Create or replace the symlink `path` -> `target` with a rename."""
    directory = os.path.dirname(path) or "."
    temp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.path.basename(path)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    os.symlink(target, temp)
    os.replace(temp, path)
    fsync_dir(directory)


_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotRegularFileError(OSError):
    """The path exists but is no regular file; `kind` says what it is ("a FIFO")."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path} is {kind}")
        self.kind = kind


class FileTooLargeError(OSError):
    """The file is larger than the caller's limit; nothing of it was read."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(f"{path} is larger than {limit} bytes")
        self.limit = limit


def _check_regular(st: os.stat_result, path: str, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "not a regular file")
        raise NotRegularFileError(path, kind)
    if st.st_size > limit:
        raise FileTooLargeError(path, limit)


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; anything else is refused unread.

    The type is checked with stat *before* opening: opening a FIFO for reading blocks until a
    writer comes, /dev/zero never ends and opening some devices has side effects. The open is
    then non-blocking and checked again with fstat (same inode, still regular), so a file
    swapped for a FIFO in between is refused too. The size is checked before reading, so a
    50 MB file passed by mistake costs neither time nor memory, and a file that fits is read
    into one buffer (no second copy). OSError (missing, permission, loop) reaches the caller.
    """
    before = os.stat(path)
    _check_regular(before, path, limit)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise NotRegularFileError(path, "a file that was replaced while it was opened")
        _check_regular(st, path, limit)
        chunks: list[bytes] = []
        total = 0
        while total <= limit:  # one read for a regular file; more only if it grows meanwhile
            chunk = os.read(fd, max(min(st.st_size, limit) + 1 - total, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:
        raise FileTooLargeError(path, limit)
    return b"".join(chunks)


def read_input(
    path: str,
    limit: int,
    *,
    what: str,
    missing: Optional[str],
    shown: Optional[str] = None,
    fix: str = "make it a regular file",
) -> bytes:
    """`read_regular` for a file bindimg takes as input (a unit, a drop-in, a lock): every
    refusal is an InputError naming the file. `missing` is the message for a missing file;
    with None, FileNotFoundError reaches the caller (for whom a missing file is no error)."""
    where = shown or path
    try:
        return read_regular(path, limit)
    except NotRegularFileError as error:
        raise InputError(f"is {error.kind}, not a {what}; {fix}", path=where) from None
    except FileTooLargeError:
        raise InputError(f"larger than {limit // (1024 * 1024)} MiB; not a {what}", path=where) from None
    except FileNotFoundError:
        if missing is None:
            raise
        raise InputError(missing, path=where) from None
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", path=where) from None
