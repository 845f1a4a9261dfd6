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
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
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
        write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        discard(staged)
        raise
    if staged.temp is not None:
        os.close(fd)
    return staged


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (os.write may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def commit(staged: Staged, *, sync_dir: bool = True) -> None:
    """Put staged content in place with one rename and make the rename durable (unless
    `sync_dir` is False: the caller syncs the directory once after several renames)."""
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
                write_all(fd, staged.data)
                os.fchmod(fd, _mode_of(staged.path))
                os.fsync(fd)
            finally:
                os.close(fd)
        staged.temp = temp
    assert staged.temp is not None
    os.replace(staged.temp, staged.path)
    staged.temp = None
    if sync_dir:
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


# What `commit` names a staged file for an instant: `.bindimg-PID-NAME.tmp`.
_LEFTOVER = re.compile(re.escape(TEMP_PREFIX) + r"([0-9]+)-.+" + re.escape(TEMP_SUFFIX), re.DOTALL)


def sweep(directory: str) -> None:
    """Remove what a killed bindimg left in `directory`: only names bindimg makes, and only
    those of a process that no longer runs (another run's file is in use; a user's
    `.bindimg-notes.container` is the user's)."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if is_leftover(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(os.path.join(directory, name))


def is_leftover(name: str) -> bool:
    """Whether `name` is a file `commit` names for an instant, of a process no longer running
    (what `sweep` removes)."""
    match = _LEFTOVER.fullmatch(name)
    return match is not None and not running(int(match.group(1)))


def running(pid: int) -> bool:
    """Whether another process `pid` runs (a leftover named by it is in use)."""
    if pid == os.getpid():
        return False  # ours from an earlier run of a reused pid (a new container); not in use now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A run's temporary directories in TMPDIR (a RUN step's TMPDIR is the image's own /tmp).
RUN_DIR_PREFIX = "bindimg-run-"


class RunDir:
    """A private temporary directory of this run, removed by `close` (or, if the run is
    killed, by the next run: while in use it holds an flock that the kernel drops when the
    process dies, however it dies)."""

    def __init__(self, label: str) -> None:
        sweep_run_dirs()
        self.path = tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{label}-", dir=temp_dir())
        self._fd: Optional[int] = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def close(self) -> None:
        if self._fd is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            os.close(self._fd)
            self._fd = None


def temp_dir() -> str:
    """The directory for temporary data, as Python's `tempfile` chooses it (TMPDIR, TEMP, TMP,
    /tmp, /var/tmp, /usr/tmp: the first writable directory), found without writing into it:
    `tempfile.gettempdir` probes each candidate by creating a file, which a kill at that
    moment leaves behind (in a RUN step, in the image's /tmp). Set as `tempfile.tempdir`."""
    if tempfile.tempdir is None:
        candidates = [os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")]
        for candidate in [*candidates, "/tmp", "/var/tmp", "/usr/tmp"]:
            if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
                tempfile.tempdir = os.path.abspath(candidate)
                break
        else:
            return tempfile.gettempdir()  # Python's own search (the working directory) or error
    return tempfile.tempdir


def sweep_run_dirs() -> None:
    """Remove the temporary directories of runs that were killed: those whose lock is free."""
    top = temp_dir()
    try:
        names = [n for n in os.listdir(top) if n.startswith(RUN_DIR_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(top, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a running bindimg's
        else:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Done:
    """One change made, and how to take it back."""

    path: str
    old: Optional[bytes]  # a replaced file's bytes; None: the entry is new
    times: Optional[tuple[int, int]] = None  # its (atime, mtime) in ns


def apply_changes(
    files: dict[str, tuple[Optional[bytes], bytes]], links: list[tuple[str, str]], *, make_dirs: bool = True
) -> None:
    """Write `files` (host path -> (old bytes or None, new bytes)) and then create `links`
    ((host path, target) symlinks, under their final names): all of it, or none.

    Everything that can fail without changing anything comes first: each directory is made
    (with `make_dirs`; else a missing one fails) or found in the way, and swept once; each
    file is staged and synced. Then the renames, one directory sync each, then the links. A
    failure at any step, a terminating signal included, takes back what was done (files get
    their old bytes and times, new entries and made directories go) and is an InputError
    naming the file. Only a kill leaves a partial result: each file old or new, links only
    once every file is written.
    """
    made: list[str] = []
    staged: list[Staged] = []
    done: list[_Done] = []
    current = ""
    try:
        for directory in sorted({os.path.dirname(p) for p in files} | {os.path.dirname(p) for p, _ in links}):
            current = directory
            if make_dirs:
                _make_dirs(directory, made)
            sweep(directory)
        for path, (_, new) in sorted(files.items()):
            current = path
            staged.append(stage(path, new))
        for item in staged:
            current = item.path
            before = os.stat(item.path) if files[item.path][0] is not None else None
            commit(item, sync_dir=False)
            times = (before.st_atime_ns, before.st_mtime_ns) if before is not None else None
            done.append(_Done(item.path, files[item.path][0], times))
        for directory in sorted({os.path.dirname(p) for p in files}):
            current = directory
            fsync_dir(directory)
        for path, target in links:
            current = path
            os.symlink(target, path)
            done.append(_Done(path, None))
        for directory in sorted({os.path.dirname(p) for p, _ in links}):
            current = directory
            fsync_dir(directory)
    except BaseException as error:
        for item in staged:
            discard(item)
        _undo(done, made)
        if isinstance(error, OSError):
            raise InputError(f"cannot write: {error.strerror}; nothing was changed", path=current) from None
        raise


def _make_dirs(directory: str, made: list[str]) -> None:
    """os.makedirs, adding each directory it makes to `made` (outermost first) at once, so
    that a failure half-way can remove them."""
    missing: list[str] = []
    path = directory
    while not os.path.isdir(path):
        if os.path.lexists(path):
            raise InputError("is in the way: not a directory; remove it", path=path)
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        os.mkdir(path, 0o755)
        made.append(path)


def _undo(done: list[_Done], made: list[str]) -> None:
    """Take back `done`, newest first, and remove the directories made; best effort: what
    cannot be taken back stays as the kill of a run would leave it."""
    for item in reversed(done):
        with contextlib.suppress(OSError):
            if item.old is None:
                os.unlink(item.path)
                continue
            write_atomic(item.path, item.old)
            if item.times is not None:
                os.utime(item.path, ns=item.times)
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(directory)


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
    with _refusals(shown or path, limit, what, missing, fix):
        return read_regular(path, limit)
    raise AssertionError("unreachable")  # for mypy: _refusals re-raises as InputError


def check_input(path: str, limit: int, *, what: str) -> None:
    """`read_input`'s refusals without reading: for a file another tool (skopeo) opens."""
    with _refusals(path, limit, what, "no such file; fix the path", "make it a regular file"):
        _check_regular(os.stat(path), path, limit)


@contextlib.contextmanager
def _refusals(where: str, limit: int, what: str, missing: Optional[str], fix: str) -> Iterator[None]:
    try:
        yield
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


def load_json(data: bytes) -> object:
    """`json.loads`, where input nested too deep for Python's parser is a ValueError like any
    other malformed JSON (a manifest nested 100,000 levels deep is hostile, not a bug)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
