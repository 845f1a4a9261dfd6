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

Each unit reports each image once, at the line that supplies it. A `Yaml=` file whose images
cannot be known (missing, not YAML, …) is reported instead (`Unreadable`): skipping it would
make the root look covered.
"""

from __future__ import annotations

import csv
import os
import posixpath
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, Union

from bindimg import fsutil, pin, reference
from bindimg.boundimages import Entry
from bindimg.errors import InputError
from bindimg.kube import MAX_KUBE_YAML_BYTES, KubeYamlError, kube_images
from bindimg.quadlet import (
    ARTIFACT,
    CONTAINER,
    GROUP_OF_EXTENSION,
    IMAGE,
    KEY_ARTIFACT,
    KEY_DRIVER,
    KEY_GLOBAL_ARGS,
    KEY_IMAGE,
    KEY_MOUNT,
    KEY_YAML,
    KUBE,
    SOURCE_EXTENSIONS,
    VOLUME,
    QuadletParseError,
    UnitDecodeError,
    UnitFile,
    split_args,
)
from bindimg.reference import ReferenceError, ValueKind
from bindimg.rootfs import Root
from bindimg.store import DEFAULT_STORE, VFS_KEYS, store_images
from bindimg.unitset import UnitSet, parsed_dropins

# Unit types that run or fetch an image: those bootc can bind, and the others.
COVERED_EXTENSIONS = (*SOURCE_EXTENSIONS, ".artifact", ".kube")
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


@dataclass(frozen=True)
class Unreadable:
    """A `Yaml=` file of a `.kube` unit whose images cannot be known (`kube-yaml-unreadable`)."""

    path: str  # host path of the file at fault: the YAML, or the unit when `Yaml=` names no file
    line: Optional[int]  # None: the whole file
    unit: str  # host path of the unit
    message: str
    podman_fails: bool = True  # `podman kube play` fails too; else only bindimg cannot read it


def quadlet_units(
    units: UnitSet, extensions: tuple[str, ...] = COVERED_EXTENSIONS
) -> tuple[dict[str, str], list[InputError]]:
    """The unit Quadlet generates for each name (`UnitSet.quadlet_units`) of the `extensions`,
    resolved inside the root (a unit that is a symlink reads the root's file, never the
    host's), and the parse failures met on the way; any other error of a unit is raised."""
    chosen, errors = units.quadlet_units()
    for error in errors:
        if not isinstance(error, (QuadletParseError, UnitDecodeError)):
            raise error
    runs = {name: units.host(path) for name, path in chosen.items() if name.endswith(extensions)}
    return runs, errors


def message(pulled: Pulled) -> str:
    """The `unbound-image` message: what pulls the image, when, and what to do."""
    unit = os.path.basename(pulled.unit)
    if pulled.how == "Yaml=":
        what = f"{pulled.image} (image: of a container that {unit} plays)"
    elif pulled.how == "Image=" or pulled.how == "Artifact=":
        what = f"{pulled.how}{pulled.image}"
    else:
        what = f"{pulled.image} ({pulled.how} of {unit})"
    return (
        f"{what} is neither bound nor embedded: podman pulls it when {unit} first starts "
        "(network needed, a tag may move, not part of the OS update); bind it (`bindimg add` "
        "of a unit with this Image=) or embed it (`bindimg add --embed`)"
    )


def adds_embedded_store(global_args: list[str]) -> bool:
    """The unit's podman reads the embedded store (overlay or vfs style): an embedded unit."""
    return any(pin.has_storage_arg(global_args, DEFAULT_STORE, keys) for keys in (pin.STORAGE_KEYS, VFS_KEYS))


def image_key(image: str) -> Optional[str]:
    """What two names of one registry image have in common (`name@digest`, else the tag
    reference); None for what is no registry image (a transport, an ID, a local name).

    A value with a specifier or `${VAR}`, and a short name, is its own key: only systemd knows
    what the one expands to, only the device's registries.conf what the other resolves to, so
    either is bound only when bound word for word."""
    kind = reference.classify(image)
    if kind is ValueKind.SPECIFIER:
        return image
    if kind is not ValueKind.REGISTRY:
        return None
    try:
        ref = reference.parse(image)
    except ReferenceError:
        return None
    if ref.domain == "localhost":  # podman's name for an image built on the machine
        return None
    if not ref.domain:
        return image
    return f"{ref.canonical_name}@{ref.digest}" if ref.digest else ref.tag_reference


def unbound_in_root(
    root: Root, units: UnitSet, runs: Mapping[str, str], entries: Sequence[Entry]
) -> list[Union[Pulled, Unreadable]]:
    """`unbound_images` of the units `runs` names, against what the root binds (`entries`, its
    bound-images.d as `boundimages.scan` reads it) and what its embedded store holds."""
    present = [entry.image.value for entry in entries if entry.image is not None] + store_images(root)
    linked = {entry.target for entry in entries if entry.target is not None}
    return list(unbound_images(root, units, runs, present, linked))


def unbound_images(
    root: Root,
    units: UnitSet,
    runs: Mapping[str, str],
    present: Iterable[str],
    linked: Collection[str] = (),
) -> Iterator[Union[Pulled, Unreadable]]:
    """Each image the units Quadlet runs (`runs`: file name -> host path) pull at first start,
    and each `Yaml=` file of theirs whose images cannot be known (`Unreadable`).

    `present`: the images bootc binds (bound-images.d) and the embedded store holds, in any
    spelling `image_key` folds. `linked`: host paths of the units bound-images.d links to,
    whose own `Image=` is bootc's to pull (when bootc cannot, the link rules say why). A unit
    that cannot be read is skipped: lint reports it as a `parse-error`.
    """
    have = {key for key in map(image_key, present) if key is not None}
    for name, path in sorted(runs.items()):
        try:
            named = list(_named_images(root, units, name, path))
        except InputError:
            continue
        seen: set[str] = set()
        for pulled in named:
            if isinstance(pulled, Unreadable):
                yield pulled
                continue
            if pulled.how == "Image=" and path in linked:
                continue
            key = image_key(pulled.image)
            if key is not None and key not in have and key not in seen:
                seen.add(key)
                yield pulled


def _named_images(root: Root, units: UnitSet, name: str, path: str) -> Iterator[Union[Pulled, Unreadable]]:
    ext = posixpath.splitext(name)[1]
    merged = units.load(path).unit.merged([d.unit for d in parsed_dropins(units, name)[0]])
    group = GROUP_OF_EXTENSION.get(ext, "")
    embedded = adds_embedded_store(merged.lookup_all_args(group, KEY_GLOBAL_ARGS))
    if group in (CONTAINER, IMAGE) and not embedded:  # else the store's (or `embedded-missing`)
        yield from _setting(merged, path, group, KEY_IMAGE)
    if group == CONTAINER:
        yield from _mounts(merged, path)
    elif group == VOLUME and merged.lookup(VOLUME, KEY_DRIVER) == "image":
        yield from _setting(merged, path, VOLUME, KEY_IMAGE)
    elif ext == ".artifact":
        yield from _setting(merged, path, ARTIFACT, KEY_ARTIFACT)
    elif ext == ".kube":
        yield from _kube(root, merged, path)


def _setting(merged: UnitFile, unit: str, group: str, key: str) -> Iterator[Pulled]:
    value, where = merged.lookup(group, key), merged.lookup_last(group, key)
    if value and where is not None:
        yield Pulled(value, where.path, where.line, unit, f"{key}=")


def _mounts(merged: UnitFile, unit: str) -> Iterator[Pulled]:
    """The registry sources of `Mount=type=image|artifact` (each value split as Quadlet's
    LookupAllArgs does, each word a CSV list of key=value tokens, as podman's FindMountType)."""
    for item in merged.lookup_all(CONTAINER, KEY_MOUNT):
        for word in split_args(item.value) or []:
            tokens = next(csv.reader([word]), [])
            fields = dict(token.partition("=")[::2] for token in tokens)
            source = fields.get("source") or fields.get("src") or ""
            kind = fields.get("type", "")
            if kind in _MOUNT_TYPES and source and not source.endswith(_QUADLET_UNITS):
                yield Pulled(source, item.path, item.line, unit, f"Mount=type={kind}")


def _kube(root: Root, merged: UnitFile, unit: str) -> Iterator[Union[Pulled, Unreadable]]:
    """`image:` of the YAML files, or why a file's images cannot be known; a relative `Yaml=` is
    beside the unit (Quadlet's getAbsolutePath), a symlink resolves inside the root (as on the
    booted system: nothing outside the root is read)."""
    inner_unit = root.inner_path(unit)
    name = os.path.basename(unit)
    for item in merged.lookup_all(KUBE, KEY_YAML):
        value = item.value.strip()
        if "%" in value or inner_unit is None:
            continue  # a specifier: only systemd knows the file
        inner = posixpath.join(posixpath.dirname(inner_unit), value)
        try:
            host = root.resolve(inner)
        except InputError as error:  # a symlink loop
            yield Unreadable(item.path, item.line, unit, f"Yaml={value}: {error.message}")
            continue
        try:
            data = fsutil.read_regular(host, MAX_KUBE_YAML_BYTES)
        except fsutil.FileTooLargeError:
            yield Unreadable(
                host,
                None,
                unit,
                f"larger than {MAX_KUBE_YAML_BYTES // 1024} KiB: bindimg does not read it, so the images "
                f"{name} pulls at first start are not checked; split it (several Yaml= from podman 5.7)",
                podman_fails=False,
            )
            continue
        except OSError as error:  # missing, a directory or other non-file, unreadable
            yield Unreadable(item.path, item.line, unit, _unreachable(root, value, host, error, name))
            continue
        try:
            images = kube_images(data, host)
        except KubeYamlError as error:
            if error.podman_fails:
                why = f"podman kube play fails when {name} starts, and its images are not checked; fix it"
            else:
                why = f"the images {name} pulls at first start are not checked; simplify it"
            yield Unreadable(host, error.line, unit, f"{error.message}: {why}", error.podman_fails)
            continue
        for image, line in images:
            yield Pulled(image, host, line, unit, "Yaml=")


def _unreachable(root: Root, value: str, host: str, error: OSError, unit: str) -> str:
    """Why `Yaml=value` names no file podman can read (the message at the `Yaml=` line)."""
    if isinstance(error, fsutil.NotRegularFileError):
        what = f"is {error.kind}, not a file"
    elif isinstance(error, FileNotFoundError):
        what = "is not in the image"
    else:
        what = f"cannot be read ({error.strerror})"
    return (
        f"Yaml={value}: {root.inner_path(host) or host} {what}: podman kube play fails when {unit} "
        "starts, and its images are not checked; fix the path"
    )
