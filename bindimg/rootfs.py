"""Paths inside an image root, resolved the way bootc resolves them (RESOLVE_IN_ROOT).

bootc opens bound-images.d links with `openat2(RESOLVE_IN_ROOT)`: an absolute symlink target
means "from the image root", and `..` never climbs above it. bindimg does the same in
userspace, so that with `--root DIR` nothing outside DIR is ever read or written, whatever
the links inside DIR say.
"""

from __future__ import annotations

import os
import posixpath
from collections import deque
from collections.abc import Callable

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
