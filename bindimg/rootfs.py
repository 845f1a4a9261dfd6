"""Paths inside an image root, resolved the way bootc resolves them (RESOLVE_IN_ROOT).

bootc opens bound-images.d links with `openat2(RESOLVE_IN_ROOT)`: an absolute symlink target
means "from the image root", and `..` never climbs above it. bindimg does the same in
userspace, so that with `--root DIR` nothing outside DIR is ever read or written, whatever
the links inside DIR say.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import posixpath
from collections import deque
from collections.abc import Callable, Iterator

from bindimg.errors import InputError

Display = Callable[[str], str]  # a host path as the user should see it

# Linux's own limit for symlinks followed in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40


class Root:
    """An image root directory on the host; inner paths are absolute paths inside it."""

    def __init__(self, path: str) -> None:
        self.host = os.path.realpath(path)
        if not os.path.isdir(self.host):
            raise InputError("the root is not a directory; pass an existing --root", path=path)

    @property
    def is_host_root(self) -> bool:
        return self.host == "/"

    def host_path(self, inner: str) -> str:
        """The host path of an inner path, without following any symlink."""
        rel = posixpath.normpath("/" + inner).lstrip("/")
        return os.path.join(self.host, rel) if rel else self.host

    def inner_path(self, host: str) -> str | None:
        """The inner path of a host path (lexically, symlinks not followed), or None if outside."""
        absolute = os.path.abspath(host)
        if self.is_host_root:
            return absolute
        if absolute == self.host:
            return "/"
        if absolute.startswith(self.host + os.sep):
            return absolute[len(self.host) :]
        return None

    def resolve(self, inner: str, *, follow_last: bool = True) -> str:
        """The host path `inner` names, every symlink resolved inside the root.

        Missing components are fine (the result is where the file would be). A symlink loop
        or more than MAX_SYMLINKS links is an InputError naming the path.
        """
        pending = deque(part for part in inner.split("/") if part)
        done: list[str] = []
        followed = 0
        while pending:
            part = pending.popleft()
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            candidate = os.path.join(self.host, *done, part)
            if (pending or follow_last) and os.path.islink(candidate):
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise InputError(
                        "too many levels of symbolic links (a loop?); fix the links",
                        path=self.host_path(inner),
                    )
                target = os.readlink(candidate)
                if target.startswith("/"):
                    done = []
                pending.extendleft(reversed([p for p in target.split("/") if p]))
                continue
            done.append(part)
        return os.path.join(self.host, *done)

    @contextlib.contextmanager
    def locked(self, progress: Callable[[str], None] = lambda _: None) -> Iterator[None]:
        """Hold the root for one run: a second bindimg on it waits until the first is done.

        The lock is an flock on the root directory itself, so nothing is created in the image
        and the kernel releases it when the process ends, however it ends. Its descriptor is
        not inherited: a skopeo that outlived a killed bindimg must not hold it.
        """
        fd = os.open(self.host, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(f"waiting for another bindimg working in {self.host}")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def resolve_within(self, inner: str, base: str, what: str) -> str:
        """`resolve(inner)`, which must stay at or below `base` (an inner path, resolved too).

        For a path bindimg or skopeo opens below a directory it trusts (a store's lock files
        and index, the store itself under /usr): a symlink further down that leads elsewhere,
        even inside the root, is an InputError naming it, with `what` saying what it is.
        """
        host = self.resolve(inner)
        top = self.resolve(base)
        if host != top and not host.startswith(top.rstrip(os.sep) + os.sep):
            shown = self.inner_path(host) or host
            raise InputError(
                f"{what} leads to {shown}, outside {base}; make it a real directory under {base}",
                path=self.host_path(inner),
            )
        return host

    def symlinks_below(self, inner: str, depth: int) -> list[tuple[str, str]]:
        """(host path, target) of every symlink at most `depth` levels below `inner`, without
        following any: what a tool walking that tree on its own (skopeo) would follow."""
        found: list[tuple[str, str]] = []
        level = [self.resolve(inner)]
        for _ in range(depth):
            below: list[str] = []
            for directory in level:
                try:
                    entries = list(os.scandir(directory))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except OSError as error:
                    raise InputError(f"cannot read: {error.strerror}", path=directory) from None
                for entry in entries:
                    if entry.is_symlink():
                        found.append((entry.path, os.readlink(entry.path)))
                    elif entry.is_dir(follow_symlinks=False):
                        below.append(entry.path)
            level = below
        return found


def root_display(root: Root, shown: str) -> Display:
    """Host paths under `root` as the user wrote the root (`--root build` -> `build/usr/...`)."""

    def display(host: str) -> str:
        inner = root.inner_path(host)
        return host if inner is None else os.path.join(shown, inner.lstrip("/"))

    return display


def cwd_display(path: str) -> str:
    """A source path relative to the working directory when it is below it (CI annotations)."""
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative
