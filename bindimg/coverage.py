"""Images a root runs that will be pulled at first start: neither bound nor embedded.

bootc pulls only the `Image=` of units linked in bound-images.d, and only those are in the OS
update; the embedded store holds what was embedded. Everything else a rootful unit runs is
pulled by podman when the unit first starts: it needs the network then, floats with its tag,
and is not part of the OS image. The ways a unit names a registry image (podman 6 Quadlet):

* `Image=` of a `.container`, `.image`, and a `.volume` with `Driver=image`;
* `Mount=type=image,source=…` and `Mount=type=artifact,source=…` of a `.container`
  (`quadlet.go` `resolveContainerMountParams`; a source naming a `.image`/`.artifact` unit is
  that unit's image, reported with the unit itself);
* `Artifact=` of an `.artifact` unit;
* `image:` of the containers and init containers in the `Yaml=` files of a `.kube` unit.

Each unit reports each image once, at the line that supplies it.
"""

from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Optional

from bindimg import fsutil, reference
from bindimg.errors import InputError
from bindimg.kube import kube_images
from bindimg.quadlet import Assignment, UnitFile, split_args
from bindimg.reference import ReferenceError, ValueKind
from bindimg.rootfs import Root
from bindimg.units import MAX_UNIT_BYTES, UnitSet, parsed_dropins

# Unit types that run or fetch an image, beyond those bootc can bind.
COVERED_EXTENSIONS = (".container", ".image", ".volume", ".artifact", ".kube")
_QUADLET_UNITS = (".image", ".artifact", ".build")  # a Mount source naming one of these units
_MOUNT_TYPES = ("image", "artifact")


@dataclass(frozen=True)
class Pulled:
    """An image a unit makes podman pull at first start."""

    image: str  # as the unit (or its YAML) names it
    path: str  # host path of the file that supplies it (unit, drop-in or YAML)
    line: int
    unit: str  # host path of the unit
    how: str  # what names it: `Image=`, `Mount=type=image`, `Artifact=`, `Yaml=`


def image_key(image: str) -> Optional[str]:
    """What two names of one registry image have in common (`name@digest`, else the tag
    reference); None for what is no registry image (a transport, an ID, a local name)."""
    if reference.classify(image) is not ValueKind.REGISTRY:
        return None
    try:
        ref = reference.parse(image)
    except ReferenceError:
        return None
    if ref.domain == "localhost":  # podman's name for an image built on the machine
        return None
    return f"{ref.canonical_name}@{ref.digest}" if ref.digest else ref.tag_reference


def unbound_images(
    root: Root, units: UnitSet, runs: Mapping[str, str], present: Iterable[str]
) -> Iterator[Pulled]:
    """Each image the units Quadlet runs (`runs`: file name -> host path) pull at first start.

    `present`: the images bootc binds (bound-images.d) and the embedded store holds, in any
    spelling `image_key` folds. A unit or YAML file that cannot be read is skipped: lint
    reports it under its own rule.
    """
    have = {key for key in map(image_key, present) if key is not None}
    for name, path in sorted(runs.items()):
        try:
            named = list(_named_images(root, units, name, path))
        except InputError:
            continue
        seen: set[str] = set()
        for pulled in named:
            key = image_key(pulled.image)
            if key is not None and key not in have and key not in seen:
                seen.add(key)
                yield pulled


def _named_images(root: Root, units: UnitSet, name: str, path: str) -> Iterator[Pulled]:
    ext = posixpath.splitext(name)[1]
    merged = units.load(path).unit.merged([d.unit for d in parsed_dropins(units, name)[0]])
    if ext == ".container":
        yield from _setting(merged, path, "Container", "Image")
        yield from _mounts(merged, path)
    elif ext == ".image":
        yield from _setting(merged, path, "Image", "Image")
    elif ext == ".volume" and merged.lookup("Volume", "Driver") == "image":
        yield from _setting(merged, path, "Volume", "Image")
    elif ext == ".artifact":
        yield from _setting(merged, path, "Artifact", "Artifact")
    elif ext == ".kube":
        yield from _kube(root, merged, path)


def _setting(merged: UnitFile, unit: str, group: str, key: str) -> Iterator[Pulled]:
    value, where = merged.lookup(group, key), merged.lookup_last(group, key)
    if value and where is not None:
        yield Pulled(value, where.path, where.line, unit, f"{key}=")


def _all(merged: UnitFile, group: str, key: str) -> list[Assignment]:
    """Quadlet's LookupAll: every assignment in order, an empty value clearing those before."""
    found: list[Assignment] = []
    for item in merged.groups.get(group, []):
        if item.key == key:
            found = [] if item.value == "" else [*found, item]
    return found


def _mounts(merged: UnitFile, unit: str) -> Iterator[Pulled]:
    """The registry sources of `Mount=type=image|artifact` (each value split as Quadlet's
    LookupAllArgs does, each word a CSV list of key=value tokens, as podman's FindMountType)."""
    for item in _all(merged, "Container", "Mount"):
        for word in split_args(item.value) or []:
            tokens = next(csv.reader([word]), [])
            fields = dict(token.partition("=")[::2] for token in tokens)
            source = fields.get("source") or fields.get("src") or ""
            kind = fields.get("type", "")
            if kind in _MOUNT_TYPES and source and not source.endswith(_QUADLET_UNITS):
                yield Pulled(source, item.path, item.line, unit, f"Mount=type={kind}")


def _kube(root: Root, merged: UnitFile, unit: str) -> Iterator[Pulled]:
    """`image:` of the YAML files; a relative `Yaml=` is beside the unit (Quadlet's getAbsolutePath)."""
    inner_unit = root.inner_path(unit)
    for item in _all(merged, "Kube", "Yaml"):
        if "%" in item.value or inner_unit is None:
            continue  # a specifier: only systemd knows the file
        inner = posixpath.join(posixpath.dirname(inner_unit), item.value.strip())
        host = root.resolve(inner)
        if not os.path.isfile(host):
            continue
        data = fsutil.read_input(host, MAX_UNIT_BYTES, what="kube YAML file", missing="no such file")
        text = data.decode("utf-8", "replace")
        for image, line in kube_images(text, host):
            yield Pulled(image, host, line, unit, "Yaml=")
