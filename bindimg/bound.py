"""`/usr/lib/bootc/bound-images.d`: the symlinks that make bootc pull an image.

bootc reads every entry as a symlink to a `.image` or `.container` unit, names taken from the
link itself; a regular file there makes every install and upgrade fail.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from bindimg.errors import InputError
from bindimg.rootfs import Root

BOUND_DIR = "/usr/lib/bootc/bound-images.d"
BOUND_EXTENSIONS = (".image", ".container")


@dataclass(frozen=True)
class Link:
    path: str  # host path of the link
    target: str  # absolute path inside the root
    exists: bool  # already there, pointing at the same unit


def plan_link(root: Root, unit_inner: str) -> Link:
    """The link for a unit, or an InputError if another entry already takes its name."""
    name = posixpath.basename(unit_inner)
    if posixpath.splitext(name)[1] not in BOUND_EXTENSIONS:
        raise InputError("only .image and .container units can be bound", path=unit_inner)
    path = os.path.join(root.resolve(BOUND_DIR), name)
    if not os.path.lexists(path):
        return Link(path, unit_inner, exists=False)
    if not os.path.islink(path):
        raise InputError("exists and is not a symlink (bootc refuses it); remove it", path=path)
    current = os.readlink(path)
    if current == unit_inner:
        return Link(path, unit_inner, exists=True)
    base = current if current.startswith("/") else posixpath.join(BOUND_DIR, current)
    if root.resolve(base) == root.resolve(unit_inner):
        return Link(path, current, exists=True)
    raise InputError(
        f"already links to {current}, not to {unit_inner}; remove the link or bind the unit it names",
        path=path,
    )
