"""A unit's `Image=` as the two consumers read it: Podman Quadlet (drop-ins applied) and bootc.

`image_setting` answers, for one unit of a `UnitSet` (`bindimg.unitset`), which `Image=`
Podman will run, which one bootc will bind, and where each comes from; the `*_problem`
functions and `image_reference` say why it cannot be bound, in the words `lint` reports.
"""

from __future__ import annotations

import csv
import os
import posixpath
from dataclasses import dataclass
from typing import Optional

from bindimg import pin, reference
from bindimg.bootcini import BootcParseError, BootcValue, parse_bootc
from bindimg.errors import InputError, excerpt
from bindimg.podmanversion import Version
from bindimg.quadlet import (
    CONTAINER,
    GROUP_OF_EXTENSION,
    IMAGE,
    KEY_AUTH_FILE,
    KEY_CERT_DIR,
    KEY_CREDS,
    KEY_DRIVER,
    KEY_IMAGE,
    KEY_IMAGE_TAG,
    KEY_MOUNT,
    KEY_ROOTFS,
    KEY_TLS_VERIFY,
    VOLUME,
    Assignment,
    UnitFile,
    split_args,
)
from bindimg.reference import ReferenceError, ValueKind
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.unitset import Source, UnitSet, parsed_dropins

# 5.6.0: a Mount= without type= is a volume mount; before, Quadlet rejected the unit.
MOUNT_TYPE_DEFAULT: Version = (5, 6, 0)


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

    @property
    def names_image(self) -> bool:
        """The unit runs an image: every .container and .image; a .volume only with
        `Driver=image` (podman quadlet.go ConvertVolume: other drivers ignore Image=)."""
        return self.group != VOLUME or self.merged.lookup(VOLUME, KEY_DRIVER) == "image"

    @property
    def runs_rootfs(self) -> bool:
        """A .container that runs `Rootfs=` instead of an image (podman quadlet.go
        ConvertContainer: Rootfs= is used only when Image= is empty), so nothing to bind."""
        return (
            self.group == CONTAINER and not self.value and bool(self.merged.lookup(CONTAINER, KEY_ROOTFS))
        )


def image_setting(
    units: UnitSet, source: Source, filename: str, dropins: Optional[list[Source]] = None
) -> ImageSetting:
    """`dropins` defaults to every drop-in of `filename`; `lint` passes only those that parse."""
    ext = posixpath.splitext(filename)[1]
    group = GROUP_OF_EXTENSION.get(ext)
    if group is None:
        raise InputError("not a .container or .image unit", path=source.path)
    applied = units.dropins(filename) if dropins is None else dropins
    merged = source.unit.merged([d.unit for d in applied])
    bootc_value: Optional[BootcValue] = None
    bootc_error: Optional[BootcParseError] = None
    try:
        bootc_value = parse_bootc(source.text, source.path).get(group, {}).get(KEY_IMAGE)
    except BootcParseError as error:
        bootc_error = error
    return ImageSetting(
        source=source,
        group=group,
        assignment=merged.lookup_last(group, KEY_IMAGE),
        value=merged.lookup(group, KEY_IMAGE),
        merged=merged,
        bootc_value=bootc_value,
        bootc_error=bootc_error,
    )


def source_setting(units: UnitSet, path: str) -> ImageSetting:
    """The `Image=` of the unit file at host path `path` (named by its base name) as Quadlet
    reads it among `units`: every drop-in of that name that parses applied, in merge order (one
    that does not parse is skipped, as Quadlet skips it; `lint` reports it).

    The one reading of a source unit that `add`, `lock`, `lint`, `list` and `export` share:
    `assignment` is the file and line that supply `Image=` (the unit file or a drop-in), the
    place each of them names. InputError when `path` cannot be read.
    """
    name = os.path.basename(path)
    return image_setting(units, units.load(path), name, parsed_dropins(units, name)[0])


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
    tls = unit.lookup(IMAGE, KEY_TLS_VERIFY)
    authfile = unit.lookup(IMAGE, KEY_AUTH_FILE)
    cert_dir = unit.lookup(IMAGE, KEY_CERT_DIR)
    return RegistryOptions(
        authfile=root.resolve(authfile) if authfile else None,
        creds=unit.lookup(IMAGE, KEY_CREDS) or None,
        cert_dir=root.resolve(cert_dir) if cert_dir else None,
        tls_verify=None if tls is None else is_true(tls),
    )


def quadlet_image(units: UnitSet, setting: ImageSetting) -> Optional[tuple[str, Assignment]]:
    """The image Podman runs for this unit, and the assignment that supplies that string.

    `Image=foo.image` is followed as Quadlet's handleImageSource does: to that unit's
    `ImageTag=` if set, else its `Image=`; `Image=foo.build` to the build's first `ImageTag=`.
    None when the unit names no image at all; a UnitProblem when the named unit is unusable.
    """
    value, assignment = setting.value, setting.assignment
    if not value or assignment is None:
        return None
    if setting.group == IMAGE or reference.classify(value) is not ValueKind.UNIT_REFERENCE:
        return value, assignment
    return named_unit_image(units, value, assignment, KEY_IMAGE)


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
    if value.endswith(".image") and merged.lookup(IMAGE, KEY_IMAGE):
        for key in (KEY_IMAGE_TAG, KEY_IMAGE):
            named = merged.lookup(IMAGE, key)
            supplied = merged.lookup_last(IMAGE, key)
            if named and supplied is not None:
                return named, supplied
    else:
        tags = merged.lookup_all("Build", KEY_IMAGE_TAG)
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
    if setting.group != CONTAINER:
        return []
    found: list[tuple[str, Assignment]] = []
    values: list[Assignment] = []
    for item in setting.merged.groups.get(CONTAINER, []):
        if item.key == KEY_MOUNT:
            values = [] if item.value == "" else [*values, item]  # LookupAllArgs: empty resets
    for item in values:
        for word in split_args(item.value) or []:
            mount = _image_mount_source(word, item, units.podman)
            if mount is None:
                continue
            if mount.endswith(".image"):
                found.append(named_unit_image(units, mount, item, KEY_MOUNT))
            else:
                found.append((mount, item))
    return found


def _image_mount_source(word: str, item: Assignment, podman: Version) -> Optional[str]:
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
