"""`bindimg list`: the images a root binds (bootc's answer) or that units run (Quadlet's answer).

With a root, the logical images are exactly what `bootc image list --type logical` prints,
and the listing fails where bootc fails, with bootc's reason; the embedded store's images
follow, then those the root's units pull at first start (`unbound`, `coverage.py`). With
source paths, each unit's image is the string Podman Quadlet will run: drop-ins,
continuations and quotes applied, `Image=foo.image` followed. Nothing here touches a network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from bindimg import boundimages
from bindimg.coverage import Pulled, quadlet_units, unbound_in_root
from bindimg.errors import InputError
from bindimg.podmanversion import NEWEST_RULES, Version
from bindimg.quadlet import CONTAINER, KEY_ROOTFS, SOURCE_EXTENSIONS
from bindimg.rootfs import Display, Root, cwd_display, root_display
from bindimg.store import store_images
from bindimg.units import image_setting, quadlet_image
from bindimg.unitset import UnitSet, parsed_dropins, search_dirs, source_units


@dataclass(frozen=True)
class Listed:
    """One image: `type` is logical, embedded, unbound or unit; `line` is in the file supplying it."""

    type: str
    image: str
    quadlet: Optional[str]  # the unit (logical, unit) or the file naming it (unbound); None: the store
    line: Optional[int]


def list_images(paths: list[str], root: Optional[str] = None, podman: Version = NEWEST_RULES) -> list[Listed]:
    """`bindimg list`: what the image root `root` binds and embeds, or else each unit's image
    as the Quadlet of podman `podman` reads it."""
    if root is not None:
        image_root = Root(root)
        return list_root(image_root, root_display(image_root, root))
    return list_units(paths, podman=podman)


def list_root(root: Root, display: Display) -> list[Listed]:
    """bootc's logical images (readdir order), then the embedded store's, then the unbound
    ones by unit; fails like bootc."""
    listed: list[Listed] = []
    entries = boundimages.scan(root)
    for entry in entries:
        failure = entry.failure
        if failure is not None:
            raise InputError(
                f"bootc fails here: {failure.bootc_message}; run `bindimg lint --root` for every problem",
                path=display(failure.path),
                line=failure.line,
            )
        assert entry.image is not None and entry.target is not None  # no failure: bootc read it
        listed.append(Listed("logical", entry.image.value, display(entry.target), entry.image.line))
    listed.extend(Listed("embedded", name, None, None) for name in store_images(root))
    units = UnitSet(search_dirs(root), root)
    for pulled in unbound_in_root(root, units, quadlet_units(units)[0], entries):
        if not isinstance(pulled, Pulled):
            continue  # a YAML file lint reports (`kube-yaml-unreadable`), no image
        listed.append(Listed("unbound", pulled.image, display(pulled.path), pulled.line))
    return listed


def list_units(
    paths: list[str], display: Display = cwd_display, podman: Version = NEWEST_RULES
) -> list[Listed]:
    """Each unit's image as Podman Quadlet will run it; a unit Quadlet rejects is an InputError."""
    units, files = source_units(paths, podman)
    listed: list[Listed] = []
    for path in files:
        name = os.path.basename(path)
        if not name.endswith(SOURCE_EXTENSIONS):
            raise InputError("not a .container, .image or .volume unit", path=display(path))
        item = unit_image(units, path)
        if item is not None:
            listed.append(Listed("unit", item[0], display(path), item[1]))
    return listed


def unit_image(units: UnitSet, path: str) -> Optional[tuple[str, int]]:
    """(image, its physical line in the file that supplies it); None if the unit runs no image."""
    name = os.path.basename(path)
    setting = image_setting(units, units.load(path), name, parsed_dropins(units, name)[0])
    if not setting.names_image:
        return None
    if setting.runs_rootfs:
        return None
    if setting.group == CONTAINER and setting.merged.lookup(CONTAINER, KEY_ROOTFS):  # and an Image=
        # podman quadlet.go ConvertContainer: the keys conflict
        raise InputError("Quadlet refuses this unit: Image= and Rootfs= conflict; keep one", path=path)
    found = quadlet_image(units, setting)
    if found is None:
        raise InputError(f"Quadlet refuses this unit: no Image= in [{setting.group}]; add one", path=path)
    return found[0], found[1].line
