"""bindimg's own Quadlet reading of a unit tree, as one `Outcome` per unit (the adapter).

The differential tests compare this with the real generators (tests/quadletgen.py). Only this
module knows where bindimg's Quadlet reading lives, so moving it between modules means
updating the imports here and nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

from bindimg.commands.list import unit_image
from bindimg.errors import InputError
from bindimg.podmanversion import from_option
from bindimg.quadlet import SOURCE_EXTENSIONS
from bindimg.rootfs import Root
from bindimg.units import image_mounts, image_setting
from bindimg.unitset import UnitSet, parsed_dropins, search_dirs
from tests.quadletgen import NO_SERVICE, ROOTFUL_DIRS, Outcome

COMPARED = SOURCE_EXTENSIONS  # .build units are only followed, never listed


def read_dirs(dirs: list[Path], podman_version: str) -> dict[str, Outcome]:
    """Like QUADLET_UNIT_DIRS=dirs: each directory and its subdirectories, in that order, read
    as `--podman-version podman_version` reads them."""
    podman = from_option(podman_version).rules
    host = Root("/")
    found: list[str] = []
    for directory in dirs:
        found.extend(d for d in search_dirs(host, (str(directory),)) if d not in found)
    return _read(UnitSet(found, podman=podman))


def read_root(root: Path, podman_version: str) -> dict[str, Outcome]:
    """An image root as the rootful generator reads it (its built-in search path)."""
    podman = from_option(podman_version).rules
    image_root = Root(str(root))
    dirs = search_dirs(image_root, tuple("/" + d for d in ROOTFUL_DIRS), podman)
    return _read(UnitSet(dirs, image_root, podman))


def _read(units: UnitSet) -> dict[str, Outcome]:
    chosen, _ = units.quadlet_units()
    return {name: _outcome(units, path) for name, path in chosen.items() if name.endswith(COMPARED)}


def _outcome(units: UnitSet, path: str) -> Outcome:
    """`bindimg list`'s reading of the unit's image, plus its image mounts."""
    name = os.path.basename(path)
    try:
        found = unit_image(units, path)
        setting = image_setting(units, units.load(path), name, parsed_dropins(units, name)[0])
        mounts = tuple(mount for mount, _ in image_mounts(units, setting))
    except InputError:
        return NO_SERVICE
    return Outcome(True, None if found is None else found[0], mounts)
