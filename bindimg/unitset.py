"""Where Podman Quadlet finds units and drop-ins: search directories, drop-in directories, files.

A `UnitSet` reads units from an ordered list of search directories the way Quadlet does:
the first file of a name wins, drop-ins are collected from every search directory in
Quadlet's order and merged by base name (podman pkg/systemd/quadlet/unitdirs.go and
pkg/systemd/parser/unitfile.go). What each unit's `Image=` means is `bindimg.units`.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Optional

from bindimg import fsutil
from bindimg.errors import InputError
from bindimg.podmanversion import NEWEST_RULES, Version
from bindimg.quadlet import SOURCE_EXTENSIONS, UnitFile, decode_unit, parse_quadlet
from bindimg.rootfs import Root

# Rootful Quadlet directories, highest precedence first (podman pkg/systemd/quadlet/unitdirs.go).
ROOTFUL_DIRS = (
    "/run/containers/systemd",
    "/etc/containers/systemd",
    "/usr/share/containers/systemd",
)
INSTALL_DIR = "/usr/share/containers/systemd"
# Rootless units: Quadlet's rootful walk skips /etc/containers/systemd/users (unitdirs.go
# GetUserLevelFilter); podman 6.0 made /usr/share/containers/systemd/users rootless too (commit
# 1aadae04af). bootc pulls bound images into its rootful store only.
ROOTLESS_DIRS: tuple[tuple[str, Version], ...] = (
    ("/etc/containers/systemd/users", (0, 0, 0)),
    ("/usr/share/containers/systemd/users", (6, 0, 0)),
)
# 5.6.0 (podman#26555): drop-in directories are tried by name first (a unit's own
# foo.container.d in any search directory beats container.d), before by search directory first.
DROPIN_NAME_FIRST: Version = (5, 6, 0)
# Files with these extensions are Quadlet units (podman SupportedExtensions); `.artifact`
# since 5.7.0.
QUADLET_EXTENSIONS = (".container", ".volume", ".kube", ".network", ".image", ".build", ".pod")
ARTIFACT_UNITS: Version = (5, 7, 0)
# Quadlet's own hard cap would be memory; a unit is a few hundred bytes. Refuse absurd files
# before decoding them so that a stray disk image passed by mistake fails fast.
MAX_UNIT_BYTES = 16 * 1024 * 1024


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
    data = fsutil.read_input(
        path,
        MAX_UNIT_BYTES,
        what="unit file",
        missing="no such file (a dangling symlink?); fix or remove it",
        shown=shown,
    )
    return decode_unit(data, shown)


@dataclass(frozen=True)
class Source:
    """One parsed file: its host path, its text and Quadlet's reading of it."""

    path: str
    text: str
    unit: UnitFile


class UnitSet:
    """Units and drop-ins found in ordered search directories (host paths).

    With a `root`, every path under it is resolved inside it before it is read (SPEC
    invariant 6): a unit, drop-in directory or drop-in that is a symlink to `/etc/passwd` or
    `../../..` means that path *in the image*, never the host's file.
    """

    def __init__(
        self, search_dirs: list[str], root: Optional[Root] = None, podman: Version = NEWEST_RULES
    ) -> None:
        self.search_dirs = search_dirs
        self.root = root
        self.podman = podman  # whose Quadlet rules apply
        self._cache: dict[str, Source] = {}
        self._units: Optional[tuple[dict[str, str], list[InputError]]] = None
        self._listings: dict[str, Optional[frozenset[str]]] = {}
        # A run reads a tree that does not change under it; `lint --root` asks each of these
        # several times per unit (its rules, then the coverage of what units pull).
        self._hosts: dict[str, str] = {}
        self._dropin_paths: dict[str, list[str]] = {}

    def _listed(self, directory: str, name: str) -> bool:
        """Whether `name` may be in a search directory, each listed once: most of the drop-in
        directory names tried for every unit do not exist, and resolving each one inside the
        root would cost more than the whole rest of a lint run."""
        if directory not in self._listings:
            try:
                self._listings[directory] = frozenset(os.listdir(directory))
            except OSError:
                self._listings[directory] = None  # unknown: try every name
        names = self._listings[directory]
        return names is None or name in names

    def host(self, path: str) -> str:
        """`path` with its symlinks resolved inside the root (unchanged without a root)."""
        if self.root is None:
            return path
        if path not in self._hosts:
            inner = self.root.inner_path(path)
            self._hosts[path] = path if inner is None else self.root.resolve(inner)
        return self._hosts[path]

    def load(self, path: str, text: Optional[str] = None) -> Source:
        if path not in self._cache:
            body = read_text(self.host(path), path) if text is None else text
            self._cache[path] = Source(path, body, parse_quadlet(body, path, self.podman))
        return self._cache[path]

    def find(self, filename: str) -> Optional[str]:
        """Host path of the unit Quadlet would use for `filename`, if any (resolved in the root)."""
        for directory in self.search_dirs:
            candidate = self.host(os.path.join(directory, filename))
            if os.path.isfile(candidate):
                return candidate
        return None

    def dropins(self, filename: str) -> list[Source]:
        """The drop-ins Quadlet merges into `filename`, in merge order."""
        return [self.load(path) for path in self.dropin_paths(filename)]

    def dropin_paths(self, filename: str) -> list[str]:
        """Host paths of those drop-ins, unparsed: a caller can then skip one that fails, as Quadlet does.

        The first drop-in of a file name found wins; the podman version decides the order in
        which directories are tried (cmd/quadlet/main.go loadUnitDropins).
        """
        if filename not in self._dropin_paths:
            self._dropin_paths[filename] = self._find_dropins(filename)
        return list(self._dropin_paths[filename])

    def _find_dropins(self, filename: str) -> list[str]:
        names = dropin_dir_names(filename)
        if self.podman >= DROPIN_NAME_FIRST:
            tried = [(directory, name) for name in names for directory in self.search_dirs]
        else:
            tried = [(directory, name) for directory in self.search_dirs for name in names]
        chosen: dict[str, str] = {}
        for directory, name in tried:
            if not self._listed(directory, name):
                continue
            dropin_dir = self.host(os.path.join(directory, name))
            try:
                entries = sorted(os.listdir(dropin_dir))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as error:  # e.g. EACCES: its drop-ins could change Image=
                reason = f"cannot read: {error.strerror}; fix its permissions"
                raise InputError(reason, path=dropin_dir) from None
            for entry in entries:
                if entry.endswith(".conf") and entry not in chosen:
                    chosen[entry] = os.path.join(dropin_dir, entry)
        # Byte-wise order, as Quadlet sorts; fsencode keeps a non-UTF-8 name's own bytes.
        return [chosen[name] for name in sorted(chosen, key=os.fsencode)]

    def quadlet_units(self) -> tuple[dict[str, str], list[InputError]]:
        """The file Quadlet generates each unit from, and the errors of the files it cannot load.

        Paths are in their search directory, symlinks unresolved: a unit is named by its link.
        As podman's loadUnitsFromDir (cmd/quadlet/main.go): the first file of a name that loads
        wins; one that does not load is passed over, and takes every other unit of its
        directory down with it (those names still count as found, so a lower directory's file
        of the same name is not used either).
        """
        if self._units is not None:
            return self._units
        extensions = QUADLET_EXTENSIONS + ((".artifact",) if self.podman >= ARTIFACT_UNITS else ())
        chosen: dict[str, str] = {}
        errors: list[InputError] = []
        seen: set[str] = set()
        for directory in self.search_dirs:
            try:
                names = sorted(os.listdir(directory), key=os.fsencode)
            except OSError:
                continue
            loaded: dict[str, str] = {}
            failed = False
            for name in names:
                if name in seen or not name.endswith(extensions):
                    continue
                path = os.path.join(directory, name)
                try:
                    self.load(path)
                except InputError as error:
                    errors.append(error)
                    failed = True
                    continue
                seen.add(name)
                loaded[name] = path
            if not failed:
                chosen.update(loaded)
        self._units = chosen, errors
        return self._units


def rootless_dirs(root: Root, podman: Version) -> list[str]:
    """Host paths (resolved in the root) of the directories whose units run rootless (one
    that cannot be resolved, a link loop, holds no unit: the walk reports the loop)."""
    found: list[str] = []
    for inner, since in ROOTLESS_DIRS:
        if podman >= since:
            try:
                found.append(root.resolve(inner))
            except InputError:
                continue
    return found


def in_rootless_dir(path: str, rootless: list[str]) -> bool:
    real = os.path.realpath(path)
    return any(real.startswith(d) for d in rootless)  # a plain prefix, as Quadlet compares


def search_dirs(
    root: Root, inner_dirs: tuple[str, ...] = ROOTFUL_DIRS, podman: Version = NEWEST_RULES
) -> list[str]:
    """Each directory then its subdirectories, depth first, skipping `*.d` (AppendSubPaths).

    The rootful directories skip the rootless ones (`ROOTLESS_DIRS`); a source tree (other
    `inner_dirs`) is searched whole, as QUADLET_UNIT_DIRS is.
    """
    found: list[str] = []
    seen: set[str] = set()
    rootless = rootless_dirs(root, podman) if inner_dirs == ROOTFUL_DIRS else []

    def walk(path: str) -> None:
        real = os.path.realpath(path)
        if real in seen or not os.path.isdir(path) or in_rootless_dir(real, rootless):
            return
        seen.add(real)
        found.append(path)
        try:
            with os.scandir(path) as scan:
                entries = sorted((e for e in scan if not e.name.endswith(".d")), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as error:  # Quadlet would not see its units either
            raise InputError(f"cannot read: {error.strerror}; fix its permissions", path=path) from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path)
            elif entry.is_symlink():  # followed inside the root, never on the host
                inner = root.inner_path(entry.path)
                walk(root.resolve(inner) if inner is not None else entry.path)

    for inner in inner_dirs:
        walk(root.resolve(inner))
    return found


def source_units(paths: list[str], podman: Version = NEWEST_RULES) -> tuple[UnitSet, list[str]]:
    """Units named by PATHs (files, or directories searched recursively) in a source tree.

    Directories are searched as Quadlet searches its own (subdirectories, `*.d` skipped), so
    that drop-ins next to the units apply; the result is sorted for stable output.
    """
    host = Root("/")
    dirs: list[str] = []  # directories that drop-ins and `.image` references come from
    files: set[str] = set()
    for path in paths:
        absolute = os.path.abspath(path)
        if os.path.isdir(absolute):
            found = search_dirs(host, (absolute,))
            dirs.extend(d for d in found if d not in dirs)
            names = [(d, n) for d in found for n in os.listdir(d)]
            units = {os.path.join(d, n) for d, n in names if n.endswith(SOURCE_EXTENSIONS)}
            units = {u for u in units if os.path.isfile(u)}
            if not units and not any(n.endswith(".d") for _, n in names):  # drop-ins: for other PATHs
                raise InputError("no .container, .image or .volume units in this directory", path=path)
            files |= units
        elif os.path.isfile(absolute):
            files.add(absolute)
            if os.path.dirname(absolute) not in dirs:
                dirs.append(os.path.dirname(absolute))
        else:
            raise InputError("no such file or directory", path=path)
    return UnitSet(dirs, podman=podman), sorted(files)


def parsed_dropins(units: UnitSet, filename: str) -> tuple[list[Source], list[InputError]]:
    """The drop-ins of `filename` that parse, and the errors of those that do not.

    Quadlet reports a drop-in it cannot parse and generates the unit without it; `lint` and
    `list` do the same instead of failing the whole run.
    """
    good: list[Source] = []
    errors: list[InputError] = []
    for path in units.dropin_paths(filename):
        try:
            good.append(units.load(path))
        except InputError as error:
            errors.append(error)
    return good, errors
