"""Quadlet units as the two consumers see them: Podman Quadlet (drop-ins, search paths) and bootc.

A `UnitSet` reads units from an ordered list of search directories the way Quadlet does:
the first file of a name wins, drop-ins are collected from every search directory in
Quadlet's order and merged by base name. `image_setting` then answers, for one unit, which
`Image=` Podman will run, which one bootc will bind, and where each comes from.
"""

from __future__ import annotations

import csv
import os
import posixpath
from dataclasses import dataclass
from typing import Optional

from bindimg import fsutil, pin, reference
from bindimg.bootcini import BootcParseError, BootcValue, parse_bootc
from bindimg.errors import InputError, excerpt
from bindimg.quadlet import (
    NEWEST_PODMAN,
    Assignment,
    PodmanVersion,
    UnitFile,
    decode_unit,
    parse_quadlet,
    split_args,
)
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
ROOTLESS_DIR = "/etc/containers/systemd/users"
# Quadlet's own hard cap would be memory; a unit is a few hundred bytes. Refuse absurd files
# before decoding them so that a stray disk image passed by mistake fails fast.
MAX_UNIT_BYTES = 16 * 1024 * 1024

IMAGE_GROUPS = {".container": "Container", ".image": "Image", ".volume": "Volume"}
# 5.6.0: drop-ins are chosen by directory name first, then search directory (a unit's own
# foo.container.d anywhere beats container.d); before, by search directory first.
DROPIN_NAME_FIRST = (5, 6, 0)
# Files with these extensions are Quadlet units (podman SupportedExtensions); `.artifact`
# since 5.7.0.
QUADLET_EXTENSIONS = (".container", ".volume", ".kube", ".network", ".image", ".build", ".pod")
ARTIFACT_UNITS = (5, 7, 0)
# 5.6.0: a Mount= without type= is a volume mount; before, Quadlet rejected the unit.
MOUNT_TYPE_DEFAULT = (5, 6, 0)


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
        self, search_dirs: list[str], root: Optional[Root] = None, *, podman: PodmanVersion = NEWEST_PODMAN
    ) -> None:
        self.search_dirs = search_dirs
        self.root = root
        self.podman = podman
        self._cache: dict[str, Source] = {}
        self._units: Optional[tuple[dict[str, str], list[InputError]]] = None
        self._listings: dict[str, Optional[frozenset[str]]] = {}

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
        inner = self.root.inner_path(path) if self.root is not None else None
        return path if self.root is None or inner is None else self.root.resolve(inner)

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

        Of drop-ins with the same file name the first one found wins; `DROPIN_NAME_FIRST` says
        in which order the directories are tried (podman cmd/quadlet/main.go loadUnitDropins).
        """
        chosen: dict[str, str] = {}
        pairs = [(d, n) for d in self.search_dirs for n in dropin_dir_names(filename)]
        if self.podman >= DROPIN_NAME_FIRST:
            pairs = [(d, n) for n in dropin_dir_names(filename) for d in self.search_dirs]
        for directory, name in pairs:
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


def search_dirs(root: Root, inner_dirs: tuple[str, ...] = ROOTFUL_DIRS) -> list[str]:
    """Each directory then its subdirectories, depth first, skipping `*.d` (AppendSubPaths).

    On the rootful search path, /run's and /etc's walks skip everything whose resolved path
    starts with that of /etc/containers/systemd/users: rootless units (podman unitdirs.go
    GetUserLevelFilter, a plain string prefix). A source tree (other `inner_dirs`) is searched
    whole, as QUADLET_UNIT_DIRS is.
    """
    found: list[str] = []
    seen: set[str] = set()
    rootless = root.resolve(ROOTLESS_DIR) if inner_dirs == ROOTFUL_DIRS else None

    def walk(path: str, filtered: bool) -> None:
        real = os.path.realpath(path)
        if real in seen or not os.path.isdir(path):
            return
        if filtered and rootless is not None and real.startswith(rootless):
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
            walk(root.resolve(inner) if inner is not None else child, filtered)

    for inner in inner_dirs:
        walk(root.resolve(inner), inner != INSTALL_DIR)
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


def image_setting(
    units: UnitSet, source: Source, filename: str, dropins: Optional[list[Source]] = None
) -> ImageSetting:
    """`dropins` defaults to every drop-in of `filename`; `lint` passes only those that parse."""
    ext = posixpath.splitext(filename)[1]
    group = IMAGE_GROUPS.get(ext)
    if group is None:
        raise InputError("not a .container or .image unit", path=source.path)
    applied = units.dropins(filename) if dropins is None else dropins
    merged = source.unit.merged([d.unit for d in applied])
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


class UnitProblem(InputError):
    """Why a unit's image cannot be bound as it is; `kind` is the `bindimg lint` finding id.

    `add` and `lock` stop at the first one (exit 2); `lint` reports each as a finding, so both
    hold units to the same rules with the same words.
    """

    def __init__(self, kind: str, message: str, *, path: str, line: Optional[int] = None) -> None:
        super().__init__(message, path=path, line=line)
        self.kind = kind


def bootc_problem(setting: ImageSetting) -> Optional[UnitProblem]:
    """bootc's parser rejects the unit file (a continuation, a line without `=`...)."""
    if setting.bootc_error is None:
        return None
    return UnitProblem(
        "bootc-parse-error",
        f"bootc cannot read this unit ({setting.bootc_error.message}); "
        "write every setting on one line, without continuations",
        path=setting.source.path,
        line=setting.bootc_error.line,
    )


def missing_image_problem(setting: ImageSetting) -> Optional[UnitProblem]:
    """Quadlet finds no `Image=`, or an empty one (possibly emptied by a drop-in)."""
    assignment = setting.assignment
    if assignment is not None and setting.value:
        return None
    return UnitProblem(
        "missing-image",
        f"no Image= in [{setting.group}]; add one",
        path=assignment.path if assignment else setting.source.path,
        line=assignment.line if assignment else None,
    )


def disagreement_problem(setting: ImageSetting) -> Optional[UnitProblem]:
    """Podman Quadlet and bootc read different `Image=` values (invariant 1)."""
    path = setting.source.path
    assignment = setting.assignment
    if assignment is not None and setting.from_dropin:
        return UnitProblem(
            "parser-disagreement",
            "Image= is set by this drop-in, which bootc does not read; move it into the unit file",
            path=assignment.path,
            line=assignment.line,
        )
    if assignment is not None and assignment.end_line != assignment.line:
        return UnitProblem(
            "parser-disagreement",
            "Image= is continued over several lines, which bootc reads differently; write it on one line",
            path=path,
            line=assignment.line,
        )
    bootc = setting.bootc_value
    if assignment is None and bootc is None:
        return None
    if (
        bootc is not None
        and assignment is not None
        and (bootc.value, bootc.line)
        == (
            setting.value,
            assignment.line,
        )
    ):
        return None
    seen = excerpt(repr(bootc.value)) if bootc is not None else "nothing"
    return UnitProblem(
        "parser-disagreement",
        f"Podman Quadlet reads Image={excerpt(repr(setting.value))} but bootc reads {seen} "
        "(quotes, an inline comment or a continuation); write a bare reference",
        path=path,
        line=assignment.line if assignment else bootc.line if bootc else None,
    )


def bound_value(setting: ImageSetting) -> str:
    """The `Image=` both readings agree on, or a UnitProblem saying why they do not."""
    for check in (bootc_problem, missing_image_problem, disagreement_problem):
        problem = check(setting)
        if problem is not None:
            raise problem
    assert setting.value  # missing_image_problem guarantees it
    return setting.value


_VALUE_PROBLEMS = {
    ValueKind.SPECIFIER: (
        "specifier",
        "contains a systemd specifier or variable, which bootc cannot bind; write the image out",
    ),
    ValueKind.UNIT_REFERENCE: ("unit-reference", "names a unit, not an image; bind the unit it names"),
    ValueKind.IMAGE_ID: (
        "invalid-reference",
        "is an image ID, which no registry serves; use a registry reference",
    ),
    ValueKind.TRANSPORT: (
        "invalid-reference",
        "is not a registry image; only registry images can be bound",
    ),
    ValueKind.EMPTY: ("missing-image", "is empty; set the image"),
}


def image_reference(value: str, path: str, line: int) -> reference.Reference:
    """A bindable registry reference from an `Image=` value, or a UnitProblem saying why not."""
    shown = excerpt(value)  # a 1 MB value is refused in one readable line
    kind = reference.classify(value)
    if kind in _VALUE_PROBLEMS:
        finding, reason = _VALUE_PROBLEMS[kind]
        raise UnitProblem(finding, f"Image={shown} {reason}", path=path, line=line)
    try:
        ref = reference.parse(value)
    except ReferenceError as error:
        raise UnitProblem(
            error.kind, f"Image={shown} is not a valid image reference: {error}", path=path, line=line
        ) from None
    if not ref.fully_qualified:
        raise UnitProblem(
            "short-name",
            f"Image={shown} is not fully qualified; write the registry, e.g. docker.io/library/{shown}",
            path=path,
            line=line,
        )
    if ref.digest is not None and not reference.SHA256_DIGEST_RE.fullmatch(ref.digest):
        raise UnitProblem(
            "non-canonical-name",
            f"Image={shown} is pinned with a digest that is not sha256; bindimg pins sha256",
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


def quadlet_image(units: UnitSet, setting: ImageSetting) -> Optional[tuple[str, Assignment]]:
    """The image Podman runs for this unit, and the assignment that supplies that string.

    `Image=foo.image` is followed as Quadlet's handleImageSource does: to that unit's
    `ImageTag=` if set, else its `Image=`; `Image=foo.build` to the build's first `ImageTag=`.
    None when the unit names no image at all; a UnitProblem when the named unit is unusable.
    """
    value, assignment = setting.value, setting.assignment
    if not value or assignment is None:
        return None
    if setting.group == "Image" or reference.classify(value) is not ValueKind.UNIT_REFERENCE:
        return value, assignment
    return named_unit_image(units, value, assignment, "Image")


def named_unit_image(units: UnitSet, value: str, assignment: Assignment, what: str) -> tuple[str, Assignment]:
    """The image a `foo.image` or `foo.build` named by `value` stands for (podman quadlet.go
    handleImageSource, handleStorageSource); `what` names the setting in messages."""
    path, line = assignment.path, assignment.line
    if units.find(value) is None:
        raise UnitProblem(
            "unit-reference",
            f"{what}={value} names a unit that is in no Quadlet directory; install {value} beside it",
            path=path,
            line=line,
        )
    # Quadlet follows the name to the unit it generates (a file that loads, in a directory
    # where every unit loads), not merely to the first file of that name.
    found = units.quadlet_units()[0].get(value)
    if found is None:
        raise UnitProblem(
            "unit-reference",
            f"{what}={value} names a unit that Quadlet cannot parse (or a unit file beside it); fix {value}",
            path=path,
            line=line,
        )
    source = units.load(found)
    merged = source.unit.merged([d.unit for d in parsed_dropins(units, value)[0]])
    # A .image without an Image= fails to convert and yields no name, even with an ImageTag=
    # (podman quadlet.go ConvertImage sets ResourceName only on success).
    if value.endswith(".image") and merged.lookup("Image", "Image"):
        for key in ("ImageTag", "Image"):
            named = merged.lookup("Image", key)
            supplied = merged.lookup_last("Image", key)
            if named and supplied is not None:
                return named, supplied
    else:
        tags: list[Assignment] = []
        for item in merged.groups.get("Build", []):
            if item.key == "ImageTag":
                tags = [] if item.value == "" else [*tags, item]  # LookupAll: empty resets
        if tags:
            return tags[0].value, tags[0]
    raise UnitProblem(
        "unit-reference",
        f"{what}={value} names a unit that sets no image; give {value} an Image= (or ImageTag=)",
        path=path,
        line=line,
    )


def image_mounts(units: UnitSet, setting: ImageSetting) -> list[tuple[str, Assignment]]:
    """The images a `.container` mounts (`Mount=type=image,source=IMAGE,…`), in order, each
    with the assignment supplying it; `source=foo.image` is followed like `Image=foo.image`.

    Rules of podman quadlet.go resolveContainerMountParams and specgenutilexternal
    FindMountType: each `Mount=` word is one CSV record; the first field that is exactly
    `type=T` is the type (none: rejected before podman 5.6, `volume` since); the last
    `source=`/`src=` field is the source. A mount Quadlet rejects is an InputError.
    """
    if setting.group != "Container":
        return []
    found: list[tuple[str, Assignment]] = []
    values: list[Assignment] = []
    for item in setting.merged.groups.get("Container", []):
        if item.key == "Mount":
            values = [] if item.value == "" else [*values, item]  # LookupAllArgs: empty resets
    for item in values:
        for word in split_args(item.value) or []:
            mount = _image_mount_source(word, item, units.podman)
            if mount is None:
                continue
            if mount.endswith(".image"):
                found.append(named_unit_image(units, mount, item, "Mount"))
            else:
                found.append((mount, item))
    return found


def _image_mount_source(word: str, item: Assignment, podman: PodmanVersion) -> Optional[str]:
    """The source of one `--mount` value if it is an image mount (None for other types)."""

    def refused(why: str) -> InputError:
        message = f"Quadlet refuses Mount={excerpt(word)}: it {why}; fix it"
        return InputError(message, path=item.path, line=item.line)

    try:
        records = list(csv.reader([word], strict=True))
    except csv.Error:
        raise refused("is not one comma-separated record") from None
    if len(records) != 1:
        raise refused("is not one comma-separated record")
    fields = records[0]
    types = [f.split("=")[1] for f in fields if len(f.split("=")) == 2 and f.split("=")[0] == "type"]
    if not types and podman < MOUNT_TYPE_DEFAULT:
        raise refused("has no type=")
    if not types or types[0] != "image":
        return None
    sources = [f for f in fields if f.split("=", 1)[0] in ("source", "src")]
    if not sources or "=" not in sources[-1] or sources[-1].split("=", 1)[1] == "":
        raise refused("has no source=")
    return sources[-1].split("=", 1)[1]


def provenance_tag(units: UnitSet, path: str, line: int, ref: reference.Reference) -> Optional[str]:
    """The tag a pinned value was pinned from, as its provenance comment names it."""
    origin = pin.provenance_of(units.load(path).text, line)
    if origin is None:
        return None
    try:
        tagged = reference.parse(origin)
    except ReferenceError:
        return None
    if not tagged.fully_qualified or tagged.canonical_name != ref.canonical_name:
        return None
    return tagged.tag_reference


def upstream_digest(units: UnitSet, path: str, line: int, ref: reference.Reference) -> Optional[str]:
    """The registry digest a pinned value stands for: its own, or for an image embedded
    flattened the upstream digest its provenance comment names (only its store has the other)."""
    found = pin.provenance(units.load(path).text, line)
    if ref.digest is not None and found is not None and found.flattened_from is not None:
        return found.flattened_from
    return ref.digest
