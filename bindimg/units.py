"""Quadlet units as the two consumers see them: Podman Quadlet (drop-ins, search paths) and bootc.

A `UnitSet` reads units from an ordered list of search directories the way Quadlet does:
the first file of a name wins, drop-ins are collected from every search directory in
Quadlet's order and merged by base name. `image_setting` then answers, for one unit, which
`Image=` Podman will run, which one bootc will bind, and where each comes from.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Optional

from bindimg import reference
from bindimg.bootcini import BootcParseError, BootcValue, parse_bootc
from bindimg.errors import InputError
from bindimg.quadlet import Assignment, UnitFile, decode_unit, parse_quadlet
from bindimg.reference import ReferenceError, ValueKind
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions

# Rootful Quadlet directories, highest precedence first (podman pkg/systemd/quadlet/unitdirs.go).
ROOTFUL_DIRS = (
    "/run/containers/systemd",
    "/etc/containers/systemd",
    "/usr/share/containers/systemd",
)
INSTALL_DIR = "/usr/share/containers/systemd"
# Quadlet's own hard cap would be memory; a unit is a few hundred bytes. Refuse absurd files
# before decoding them so that a stray disk image passed by mistake fails fast.
MAX_UNIT_BYTES = 16 * 1024 * 1024

IMAGE_GROUPS = {".container": "Container", ".image": "Image", ".volume": "Volume"}


def dropin_dir_names(filename: str) -> list[str]:
    """Drop-in directory names for a unit, most specific first (podman GetUnitDropinPaths)."""
    stem, ext = posixpath.splitext(filename)
    unit, sep, instance = stem.partition("@")
    is_template = bool(sep)
    dropin_ext = ext + ".d"
    names = [dropin_ext.lstrip(".")]
    parts = unit.split("-")
    for i in range(len(parts) - 1):
        truncated = "-".join(parts[: i + 1]) + "-"
        names.append(truncated + dropin_ext)
        if is_template:
            names.append(truncated + "@" + dropin_ext)
    if instance:
        names.append(unit + "@" + dropin_ext)
    names.append(filename + ".d")
    names.reverse()
    return names


def read_text(path: str, display: Optional[str] = None) -> str:
    """A unit or drop-in's text, refusing what neither parser could read sensibly."""
    shown = display or path
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_UNIT_BYTES + 1)
    except IsADirectoryError:
        raise InputError("is a directory, not a unit file", path=shown) from None
    except FileNotFoundError:
        raise InputError("no such file", path=shown) from None
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror}", path=shown) from None
    if len(data) > MAX_UNIT_BYTES:
        raise InputError(f"larger than {MAX_UNIT_BYTES // (1024 * 1024)} MiB; not a unit file", path=shown)
    return decode_unit(data, shown)


@dataclass(frozen=True)
class Source:
    """One parsed file: its host path, its text and Quadlet's reading of it."""

    path: str
    text: str
    unit: UnitFile


class UnitSet:
    """Units and drop-ins found in ordered search directories (host paths)."""

    def __init__(self, search_dirs: list[str]) -> None:
        self.search_dirs = search_dirs
        self._cache: dict[str, Source] = {}

    def load(self, path: str, text: Optional[str] = None) -> Source:
        if path not in self._cache:
            body = read_text(path) if text is None else text
            self._cache[path] = Source(path, body, parse_quadlet(body, path))
        return self._cache[path]

    def find(self, filename: str) -> Optional[str]:
        """Host path of the unit Quadlet would use for `filename`, if any."""
        for directory in self.search_dirs:
            candidate = os.path.join(directory, filename)
            if os.path.isfile(candidate):
                return candidate
        return None

    def dropins(self, filename: str) -> list[Source]:
        """The drop-ins Quadlet merges into `filename`, in merge order."""
        chosen: dict[str, str] = {}
        for directory in self.search_dirs:
            for name in dropin_dir_names(filename):
                dropin_dir = os.path.join(directory, name)
                try:
                    entries = sorted(os.listdir(dropin_dir))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                for entry in entries:
                    if entry.endswith(".conf") and entry not in chosen:
                        chosen[entry] = os.path.join(dropin_dir, entry)
        return [self.load(chosen[name]) for name in sorted(chosen, key=lambda n: n.encode())]


def search_dirs(root: Root, inner_dirs: tuple[str, ...] = ROOTFUL_DIRS) -> list[str]:
    """Each directory then its subdirectories, depth first, skipping `*.d` (AppendSubPaths)."""
    found: list[str] = []
    seen: set[str] = set()

    def walk(path: str) -> None:
        real = os.path.realpath(path)
        if real in seen or not os.path.isdir(path):
            return
        seen.add(real)
        found.append(path)
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return
        for name in names:
            child = os.path.join(path, name)
            if name.endswith(".d") or not os.path.isdir(child):
                continue
            inner = root.inner_path(child)
            walk(root.resolve(inner) if inner is not None else child)

    for inner in inner_dirs:
        walk(root.resolve(inner))
    return found


@dataclass(frozen=True)
class ImageSetting:
    """The `Image=` of one unit under both readings."""

    source: Source
    group: str
    assignment: Optional[Assignment]  # the assignment Quadlet uses (main file or a drop-in)
    value: Optional[str]  # Quadlet's effective value (Lookup semantics)
    merged: UnitFile  # the unit with its drop-ins applied
    bootc_value: Optional[BootcValue]
    bootc_error: Optional[BootcParseError]

    @property
    def from_dropin(self) -> bool:
        return self.assignment is not None and self.assignment.path != self.source.path


def image_setting(units: UnitSet, source: Source, filename: str) -> ImageSetting:
    ext = posixpath.splitext(filename)[1]
    group = IMAGE_GROUPS.get(ext)
    if group is None:
        raise InputError("not a .container or .image unit", path=source.path)
    merged = source.unit.merged([d.unit for d in units.dropins(filename)])
    bootc_value: Optional[BootcValue] = None
    bootc_error: Optional[BootcParseError] = None
    try:
        bootc_value = parse_bootc(source.text, source.path).get(group, {}).get("Image")
    except BootcParseError as error:
        bootc_error = error
    return ImageSetting(
        source=source,
        group=group,
        assignment=merged.lookup_last(group, "Image"),
        value=merged.lookup(group, "Image"),
        merged=merged,
        bootc_value=bootc_value,
        bootc_error=bootc_error,
    )


def bound_value(setting: ImageSetting) -> str:
    """The `Image=` both readings agree on, or an InputError saying why they do not."""
    path = setting.source.path
    if setting.bootc_error is not None:
        raise InputError(
            f"bootc cannot read this unit ({setting.bootc_error.message}); "
            "write every setting on one line, without continuations",
            path=path,
            line=setting.bootc_error.line,
        )
    assignment = setting.assignment
    if assignment is None or not setting.value:
        line = assignment.line if assignment else None
        raise InputError(
            f"no Image= in [{setting.group}]; add one",
            path=assignment.path if assignment else path,
            line=line,
        )
    if setting.from_dropin:
        raise InputError(
            "Image= is set by this drop-in, which bootc does not read; move it into the unit file",
            path=assignment.path,
            line=assignment.line,
        )
    if assignment.end_line != assignment.line:
        raise InputError(
            "Image= is continued over several lines, which bootc reads differently; write it on one line",
            path=path,
            line=assignment.line,
        )
    bootc = setting.bootc_value
    if bootc is None or bootc.value != setting.value or bootc.line != assignment.line:
        seen = repr(bootc.value) if bootc is not None else "nothing"
        raise InputError(
            f"Podman Quadlet reads Image={setting.value!r} but bootc reads {seen} "
            "(quotes, an inline comment or a continuation); write a bare reference",
            path=path,
            line=assignment.line,
        )
    return setting.value


def image_reference(value: str, path: str, line: int) -> reference.Reference:
    """A bindable registry reference from an `Image=` value, or an InputError saying why not."""
    kind = reference.classify(value)
    reasons = {
        ValueKind.SPECIFIER: "contains a systemd specifier or variable, which bootc cannot "
        "bind; write the image out",
        ValueKind.UNIT_REFERENCE: "names a unit, not an image; bind the unit it names",
        ValueKind.IMAGE_ID: "is an image ID, which no registry serves; use a registry reference",
        ValueKind.TRANSPORT: "is not a registry image; only registry images can be bound",
        ValueKind.EMPTY: "is empty; set the image",
    }
    if kind in reasons:
        raise InputError(f"Image={value} {reasons[kind]}", path=path, line=line)
    try:
        ref = reference.parse(value)
    except ReferenceError as error:
        raise InputError(
            f"Image={value} is not a valid image reference: {error}", path=path, line=line
        ) from None
    if not ref.fully_qualified:
        raise InputError(
            f"Image={value} is not fully qualified; write the registry, e.g. docker.io/library/{value}",
            path=path,
            line=line,
        )
    if ref.digest is not None and not reference.SHA256_DIGEST_RE.fullmatch(ref.digest):
        raise InputError(
            f"Image={value} is pinned with a digest that is not sha256; bindimg pins sha256",
            path=path,
            line=line,
        )
    return ref


def is_true(value: Optional[str]) -> bool:
    """Quadlet's LookupBoolean."""
    return (value or "").lower() in ("1", "yes", "true", "on")


def image_unit_registry_options(unit: UnitFile, root: Root) -> RegistryOptions:
    """A `.image` unit's own AuthFile=/Creds=/CertDir=/TLSVerify=; its paths are inside `root`."""
    tls = unit.lookup("Image", "TLSVerify")
    authfile = unit.lookup("Image", "AuthFile")
    cert_dir = unit.lookup("Image", "CertDir")
    return RegistryOptions(
        authfile=root.resolve(authfile) if authfile else None,
        creds=unit.lookup("Image", "Creds") or None,
        cert_dir=root.resolve(cert_dir) if cert_dir else None,
        tls_verify=None if tls is None else is_true(tls),
    )


SOURCE_EXTENSIONS = (".container", ".image", ".volume")


def source_units(paths: list[str]) -> tuple[UnitSet, list[str]]:
    """Units named by PATHs (files, or directories searched recursively) in a source tree.

    Directories are searched as Quadlet searches its own (subdirectories, `*.d` skipped), so
    that drop-ins next to the units apply; the result is sorted for stable output.
    """
    host = Root("/")
    searched: list[str] = []  # directories whose units are all taken
    dirs: list[str] = []  # directories that drop-ins and `.image` references come from
    files: set[str] = set()
    for path in paths:
        absolute = os.path.abspath(path)
        if os.path.isdir(absolute):
            found = search_dirs(host, (absolute,))
            searched.extend(found)
            dirs.extend(d for d in found if d not in dirs)
        elif os.path.isfile(absolute):
            files.add(absolute)
            if os.path.dirname(absolute) not in dirs:
                dirs.append(os.path.dirname(absolute))
        else:
            raise InputError("no such file or directory", path=path)
    for directory in searched:
        for name in os.listdir(directory):
            candidate = os.path.join(directory, name)
            if name.endswith(SOURCE_EXTENSIONS) and os.path.isfile(candidate):
                files.add(candidate)
    return UnitSet(dirs), sorted(files)
