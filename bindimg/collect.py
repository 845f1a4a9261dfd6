"""`add`'s collecting step: read and check every unit given, and what each needs (no writes).

`Collector` locates each unit the command line names in the root as Quadlet finds it (an
instance or alias symlink keeps its own name; a `.container` naming a `.image` binds that
`.image`), refuses what bootc or podman would not run as pinned (rootless units, shadowed
names, `AuthFile=` in a bound `.image`, drop-ins that let podman pull an embedded image, a
broken bound-images.d), and notes per unit the tag to resolve or the digest it already has
(`Bound`). `render.py` then turns what it collected into bytes; `commands/add.py` drives both.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Optional

from bindimg import fsutil, pin, platforms, reference
from bindimg.bootcini import parse_bootc
from bindimg.boundimages import BOUND_DIR, scan
from bindimg.embed import EmbedOptions
from bindimg.errors import InputError
from bindimg.lockfile import LockEntry
from bindimg.platforms import Platform
from bindimg.podmanversion import NEWEST_RULES, Version
from bindimg.quadlet import (
    CONTAINER,
    IMAGE,
    KEY_ALL_TAGS,
    KEY_AUTH_FILE,
    KEY_IMAGE,
    KEY_IMAGE_TAG,
    KEY_POLICY,
    KEY_PULL,
    parse_quadlet,
)
from bindimg.reference import ValueKind
from bindimg.registry import Registry, Skopeo
from bindimg.render import Bound, Collected
from bindimg.resolve import Request, Resolved, Settings
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.units import (
    ImageSetting,
    bound_value,
    image_reference,
    image_setting,
    image_unit_registry_options,
    is_true,
)
from bindimg.unitset import INSTALL_DIR, Source, in_rootless_dir, read_text, rootless_dirs

UNIT_EXTENSIONS = (".container", ".image")
LOG = logging.getLogger("bindimg")


@dataclass(frozen=True)
class AddOptions:
    root: Root
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    settings: Settings = field(default_factory=Settings)
    storage_args: bool = True
    locked: Mapping[str, LockEntry] = field(default_factory=dict)  # tag reference -> entry
    frozen: bool = False
    embed: Optional[EmbedOptions] = None  # --embed: copy into the store instead of linking
    # The platforms the OS image is built for: each bound image must serve them all.
    platforms: tuple[Platform, ...] = ()
    client: Registry = field(default_factory=Skopeo)  # what asks the registries and copies images
    podman: Version = NEWEST_RULES  # whose Quadlet rules the root's units are read by


class Collector(Collected):
    """The collecting step: read and check every unit given, and what it needs (no writes)."""

    def __init__(self, options: AddOptions) -> None:
        super().__init__(options.root, options.podman)
        self.options = options
        self.origins: dict[str, str] = {}  # command-line path -> the file it resolved to
        self.rootless = rootless_dirs(self.root, options.podman)
        self.names_by_file: Optional[dict[str, list[str]]] = None  # file -> names Quadlet runs it by

    def locate(self, arg: str) -> tuple[str, Source, str]:
        """Where a unit given on the command line lives in the root, its text, and its inner
        path as Quadlet names it (an instance or alias symlink keeps its own name)."""
        host = os.path.abspath(arg)
        name = os.path.basename(host)
        if posixpath.splitext(name)[1] not in UNIT_EXTENSIONS:
            raise InputError("not a .container or .image unit; bindimg binds only those", path=arg)
        inner = self.root.inner_path(host)
        # Inside the root, links are followed inside the root only (never the host's).
        found = self.root.resolve(inner) if inner is not None else host
        if not os.path.exists(found):  # a FIFO, device or directory: read_text says which
            raise InputError("no such unit file", path=arg)
        self.origins[os.path.abspath(arg)] = found
        # The directory the unit is named in: an instance or alias symlink is a unit of its own.
        named_in = os.path.dirname(self.root.resolve(inner, follow_last=False)) if inner is not None else None
        if named_in is not None and (
            in_rootless_dir(named_in, self.rootless) or in_rootless_dir(found, self.rootless)
        ):
            raise InputError(
                "is a rootless Quadlet unit (a users/ directory): its user's podman runs the image "
                "from its own store, and bootc pulls bound images into the rootful one only; put it "
                f"in {INSTALL_DIR} to bind it",
                path=arg,
            )
        if named_in is not None and named_in in self.units.search_dirs:
            dest = found
            source = self.units.load(dest)
            unit = self.root.inner_path(os.path.join(named_in, name)) or posixpath.join(INSTALL_DIR, name)
        else:
            unit = posixpath.join(INSTALL_DIR, name)
            dest = self.root.resolve(unit)  # a link there: its in-root target
            text = read_text(found, arg)
            source = Source(arg, text, parse_quadlet(text, arg, self.units.podman))
        used = self.units.find(name)
        if used is not None and used != dest:
            raise InputError(
                f"Quadlet would use {used} instead of this file (same name, higher precedence); "
                "bind that one or remove it",
                path=arg,
            )
        return dest, source, unit

    def add(self, arg: str) -> None:
        dest, source, unit = self.locate(arg)
        name = posixpath.basename(unit)
        setting = image_setting(self.units, source, name)
        if (
            name.endswith(".container")
            and setting.value
            and reference.classify(setting.value) is ValueKind.UNIT_REFERENCE
        ):
            self.add_container_of_unit(arg, dest, source, setting)
            return
        self.add_bound(dest, source, setting, unit)

    def add_container_of_unit(self, arg: str, dest: str, source: Source, setting: ImageSetting) -> None:
        """`Image=foo.image`: pin and link foo.image; the container itself is never linked."""
        value = setting.value or ""
        assignment = setting.assignment
        line = assignment.line if assignment else None
        if setting.from_dropin:
            raise InputError(
                "Image= naming a unit is set by a drop-in; move it into the unit file",
                path=assignment.path if assignment else source.path,
                line=line,
            )
        if not value.endswith(".image"):
            raise InputError(
                f"Image={value} names a .build unit; a locally built image cannot be bound",
                path=source.path,
                line=line,
            )
        image_dest = self.units.find(value)
        installed = source.path != dest
        beside = self.sibling(self.origins[os.path.abspath(arg)], value)
        # A container installed from a source takes the .image beside that source, as it is now
        # (an earlier run's copy in the root is stale once the source changed).
        if installed and os.path.isfile(beside):
            text = read_text(beside)
            image_source = Source(beside, text, parse_quadlet(text, beside, self.units.podman))
            image_unit = posixpath.join(INSTALL_DIR, value)
            if image_dest is not None and image_dest != self.root.resolve(image_unit):
                raise InputError(
                    f"Quadlet would use {image_dest} instead of the {value} beside this unit (same "
                    "name, higher precedence); bind that one or remove it",
                    path=beside,
                )
            image_dest = self.root.resolve(image_unit)
        elif image_dest is not None:
            image_source = self.units.load(image_dest)
            image_unit = self.named_inner(value)
        else:
            raise InputError(
                f"Image={value} names a unit that is in no Quadlet directory; install {value} too",
                path=source.path,
                line=line,
            )
        image_setting_ = image_setting(self.units, image_source, value)
        bound = self.add_bound(image_dest, image_source, image_setting_, image_unit)
        if all(c.path != source.path for c in bound.companions):
            bound.companions.append(source)
        self.writes[dest] = source

    def sibling(self, found: str, name: str) -> str:
        """`name` in the directory of `found`, resolved inside the root when `found` is in it."""
        inner = self.root.inner_path(os.path.dirname(found))
        if inner is None:
            return os.path.join(os.path.dirname(found), name)
        return self.root.resolve(posixpath.join(inner, name))

    def named_inner(self, filename: str) -> str:
        """The inner path of the unit Quadlet uses for `filename`, as named (not resolved)."""
        for directory in self.units.search_dirs:
            if os.path.isfile(self.units.host(os.path.join(directory, filename))):
                named = self.root.inner_path(os.path.join(directory, filename))
                return named or posixpath.join(INSTALL_DIR, filename)
        return posixpath.join(INSTALL_DIR, filename)

    def run_names(self, dest: str) -> list[str]:
        """Every name Quadlet runs the file `dest` by: its own and its instance and alias
        symlinks (each a unit of its own, with its own drop-ins: cmd/quadlet/main.go)."""
        if self.names_by_file is None:
            self.names_by_file = {}
            seen: set[str] = set()
            for directory in self.units.search_dirs:
                try:
                    entries = sorted(os.listdir(directory))
                except OSError:
                    continue
                for entry in entries:
                    if posixpath.splitext(entry)[1] in UNIT_EXTENSIONS and entry not in seen:
                        seen.add(entry)
                        used = self.units.find(entry)
                        if used is not None:
                            self.names_by_file.setdefault(used, []).append(entry)
        return self.names_by_file.get(dest, [])

    def add_bound(self, dest: str, source: Source, setting: ImageSetting, unit: str) -> Bound:
        if dest in self.bound:
            return self.bound[dest]
        value = bound_value(setting)
        name = posixpath.basename(unit)
        for other in self.run_names(dest):
            if other != name:  # bootc reads the one file; each name must run what it reads
                bound_value(image_setting(self.units, source, other))
        assert setting.assignment is not None  # bound_value guarantees it
        line = setting.assignment.line
        embedded = self.options.embed is not None
        options = self.options.registry
        if setting.group == IMAGE:
            options = options.merged(self.image_unit_options(setting, embedded))
        ref = image_reference(value, source.path, line)
        said = pin.provenance(source.text, line) if ref.digest else None
        origin = said.origin if said else None
        flattened_from = said.flattened_from if said else None
        installed = None
        if embedded:
            self.refuse_link(dest, source.path)
            installed = self.installed_flattening(dest, source, setting.group)
        elif flattened_from is not None:
            ref = reference.parse(ref.pinned(flattened_from))  # bootc pulls the upstream image
            flattened_from = None
        request: Optional[Request] = None
        digest = ref.digest
        tagged = ref.tag_reference if digest is None else _provenance_tag(origin, ref)
        entry = self.options.locked.get(tagged or "")
        if digest is not None:
            LOG.debug("%s: already pinned to %s", source.path, digest)
        else:
            digest = entry.digest if entry is not None else None
            LOG.debug("%s: %s %s", source.path, tagged, f"locked at {digest}" if digest else "to resolve")
            if digest is None:
                if self.options.frozen:
                    raise InputError(
                        f"{tagged} is neither pinned nor in the lock file (--frozen); "
                        "run `bindimg lock` and commit the lock",
                        path=source.path,
                        line=line,
                    )
                request = Request(ref.tag_reference, options, platforms=self.checks_platforms)
        bound = Bound(dest, unit, source, line, value, ref, origin or value, request, digest, [], options)
        bound.flattened_from, bound.installed = flattened_from, installed
        if entry is not None and entry.digest == digest and entry.platforms is not None:
            bound.offers = (entry.platforms, entry.media_type)
        self.bound[dest] = bound
        self.writes[dest] = source
        return bound

    @property
    def checks_platforms(self) -> bool:
        """Embedding fetches the one platform's image and fails itself when the index lacks it."""
        return bool(self.options.platforms) and self.options.embed is None

    def check_platforms(self, resolved: Mapping[Request, Resolved]) -> None:
        """Each bound image serves every target platform, as far as the registry answer or
        the lock tells (a pin with neither is not looked up: `add` stays offline for it)."""
        if not self.checks_platforms:
            return
        for bound in self.bound.values():
            found = resolved.get(bound.request) if bound.request is not None else None
            offers = (found.platforms, found.media_type) if found is not None else bound.offers
            if offers is None or offers[0] is None:
                continue
            absent = platforms.problem(bound.value, self.options.platforms, offers[0], offers[1])
            if absent is not None:
                raise InputError(absent, path=bound.source.path, line=bound.line)

    def installed_flattening(self, dest: str, source: Source, group: str) -> Optional[tuple[str, str]]:
        """The (flattened, upstream) digests of the unit an earlier run installed at `dest`:
        re-embedding its source then needs no download when the store has that image."""
        if source.path == dest or not os.path.isfile(dest):
            return None
        try:
            text = read_text(dest)
            assignment = parse_quadlet(text, dest).lookup_last(group, KEY_IMAGE)
        except InputError:
            return None
        said = pin.provenance(text, assignment.line) if assignment is not None else None
        if assignment is None or said is None or said.flattened_from is None:
            return None
        _, _, digest = assignment.value.strip().rpartition("@")
        return (digest, said.flattened_from) if digest.startswith("sha256:") else None

    def refuse_link(self, dest: str, path: str) -> None:
        """An embedded unit must not be in bound-images.d: bootc would pull its image again."""
        directory = self.root.resolve(BOUND_DIR)
        try:
            names = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            entry = os.path.join(directory, name)
            target = os.readlink(entry) if os.path.islink(entry) else None
            if target is not None:
                points_here = self.root.resolve(posixpath.join(BOUND_DIR, target)) == dest
            else:
                points_here = False
            if name == os.path.basename(dest) or points_here:
                raise InputError(
                    f"is bound logically ({posixpath.join(BOUND_DIR, name)}), so bootc would pull its "
                    "image as well; remove that link to embed it, or bind it without --embed",
                    path=path,
                )

    def image_unit_options(self, setting: ImageSetting, embedded: bool = False) -> RegistryOptions:
        """A `.image` unit's own registry settings, checked against what bootc accepts (an
        embedded unit is never read by bootc: its AuthFile= is used for the copy)."""
        path = setting.source.path
        unit = setting.merged
        bootc_keys = parse_bootc(setting.source.text, path).get(IMAGE, {})
        if KEY_AUTH_FILE in bootc_keys and not embedded:
            raise InputError(
                "AuthFile= in a bound .image unit makes bootc refuse the whole image; "
                "remove it (bootc pulls with /etc/ostree/auth.json)",
                path=path,
                line=bootc_keys[KEY_AUTH_FILE].line,
            )
        if is_true(unit.lookup(IMAGE, KEY_ALL_TAGS)):
            raise InputError("AllTags=true pulls every tag and ignores a pin; remove it", path=path)
        if unit.lookup(IMAGE, KEY_IMAGE_TAG):
            raise InputError(
                "ImageTag= makes containers run that name instead of the pinned image; remove it",
                path=path,
            )
        return image_unit_registry_options(unit, self.root)

    def check_embedded(self, progress: Callable[[str], None]) -> None:
        """Before any network: a drop-in that lets podman pull cannot be fixed by editing the unit."""
        embed = self.options.embed
        if embed is None:
            return
        for dest, source in self.writes.items():
            group = CONTAINER if dest.endswith(".container") else IMAGE
            key, value = (KEY_PULL, "never") if group == CONTAINER else (KEY_POLICY, embed.image_policy)
            if value is None:
                progress(
                    f"note: {dest}: without Policy=missing its service pulls on every start "
                    "(podman >= 5.6 Quadlet: add --image-policy missing)"
                )
                continue
            assignment = self.merged(dest, source).lookup_last(group, key)
            if (
                assignment is not None
                and assignment.path != source.path
                and assignment.value.lower() != value
            ):
                raise InputError(
                    f"{key}={assignment.value} in this drop-in lets podman pull an embedded image from "
                    f"the network; set {key}={value} here or remove it",
                    path=assignment.path,
                    line=assignment.line,
                )

    def check_bound_dir(self) -> None:
        """bootc fails the whole install or upgrade on one bad bound-images.d entry: refuse to
        add into such a directory (but for the links of this run's units, which it completes)."""
        directory = self.root.resolve(BOUND_DIR)
        owned = set()
        if self.options.embed is None:
            owned = {os.path.join(directory, posixpath.basename(b.unit)) for b in self.bound.values()}
        for entry in scan(self.root):
            leftover = fsutil.is_leftover(os.path.basename(entry.link))  # a killed run's: swept
            if entry.failure is not None and entry.link not in owned and not leftover:
                raise InputError(
                    f"bootc fails on this entry ({entry.failure.reason}), and with it every install "
                    "and upgrade of the image; fix or remove it first (`bindimg lint --root` says how)",
                    path=entry.link,
                )


def _provenance_tag(origin: Optional[str], ref: reference.Reference) -> Optional[str]:
    """The tag a pinned value's provenance comment names, when it is the same repository."""
    try:
        tagged = reference.parse(origin) if origin else None
    except reference.ReferenceError:
        return None
    if tagged is None or tagged.tag is None or tagged.canonical_name != ref.canonical_name:
        return None
    return tagged.tag_reference
