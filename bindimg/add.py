"""`bindimg add`: plan every edit and link first, resolve, then write all or nothing.

The flow is one way: read and check every unit (nothing is written), collect the tags that
need the registry, resolve them concurrently, render the new bytes, and only then stage and
rename the files. Any failure before the renames leaves the root exactly as it was.
"""

from __future__ import annotations

import difflib
import os
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Optional

from bindimg import fsutil, pin, reference
from bindimg.bootcini import parse_bootc
from bindimg.bound import BOUND_DIR, Link, plan_link
from bindimg.errors import InputError
from bindimg.quadlet import parse_quadlet
from bindimg.reference import ValueKind
from bindimg.resolve import Request, Settings, resolve_all
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.units import (
    INSTALL_DIR,
    ImageSetting,
    Source,
    UnitSet,
    bound_value,
    image_reference,
    image_setting,
    image_unit_registry_options,
    is_true,
    read_text,
    search_dirs,
)

UNIT_EXTENSIONS = (".container", ".image")


@dataclass(frozen=True)
class AddOptions:
    root: Root
    registry: RegistryOptions = field(default_factory=RegistryOptions)
    settings: Settings = field(default_factory=Settings)
    storage_args: bool = True
    locked: Mapping[str, str] = field(default_factory=dict)  # tag reference -> digest
    frozen: bool = False


@dataclass
class Bound:
    """One image to pin and link: the unit that carries it and where its digest comes from."""

    dest: str  # host path the pinned unit is written to
    source: Source  # the text that is pinned (the installed source, or dest itself)
    line: int  # physical line of Image=
    value: str  # Image= as found
    ref: reference.Reference
    origin: str  # what the provenance comment names
    request: Optional[Request]
    digest: Optional[str]
    companions: list[Source] = field(default_factory=list)  # containers that use it by name


@dataclass(frozen=True)
class Entry:
    quadlet: str
    source: str
    reference: str
    digest: str
    mode: str
    changed: bool


@dataclass
class Plan:
    files: dict[str, tuple[Optional[bytes], bytes]]  # host path -> (old bytes, new bytes)
    links: list[Link]
    entries: list[Entry]

    @property
    def changed(self) -> bool:
        return any(e.changed for e in self.entries)


class _Planner:
    def __init__(self, options: AddOptions) -> None:
        self.options = options
        self.root = options.root
        self.units = UnitSet(search_dirs(self.root))
        self.bound: dict[str, Bound] = {}
        self.writes: dict[str, Source] = {}  # dest -> source text to write (containers edited)
        self.origins: dict[str, str] = {}  # command-line path -> the file it resolved to

    # -- reading ---------------------------------------------------------------------------
    def locate(self, arg: str) -> tuple[str, Source]:
        """Where a unit given on the command line lives in the root, and its text."""
        host = os.path.abspath(arg)
        name = os.path.basename(host)
        if posixpath.splitext(name)[1] not in UNIT_EXTENSIONS:
            raise InputError("not a .container or .image unit; bindimg binds only those", path=arg)
        inner = self.root.inner_path(host)
        # Inside the root, links are followed inside the root only (never the host's).
        found = self.root.resolve(inner) if inner is not None else host
        if not os.path.isfile(found):
            raise InputError("no such unit file", path=arg)
        self.origins[os.path.abspath(arg)] = found
        if inner is not None and os.path.dirname(found) in self.units.search_dirs:
            dest = found
            source = self.units.load(dest)
        else:
            dest = os.path.join(self.root.resolve(INSTALL_DIR), name)
            text = read_text(found, arg)
            source = Source(arg, text, parse_quadlet(text, arg))
        used = self.units.find(name)
        if used is not None and used != dest:
            raise InputError(
                f"Quadlet would use {used} instead of this file (same name, higher precedence); "
                "bind that one or remove it",
                path=arg,
            )
        return dest, source

    def add(self, arg: str) -> None:
        dest, source = self.locate(arg)
        name = os.path.basename(dest)
        setting = image_setting(self.units, source, name)
        if (
            name.endswith(".container")
            and setting.value
            and reference.classify(setting.value) is ValueKind.UNIT_REFERENCE
        ):
            self.add_container_of_unit(arg, dest, source, setting)
            return
        self.add_bound(dest, source, setting)

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
        if image_dest is not None:
            image_source = self.units.load(image_dest)
        else:
            if not installed or not os.path.isfile(beside):
                raise InputError(
                    f"Image={value} names a unit that is in no Quadlet directory; install {value} too",
                    path=source.path,
                    line=line,
                )
            text = read_text(beside)
            image_source = Source(beside, text, parse_quadlet(text, beside))
            image_dest = os.path.join(self.root.resolve(INSTALL_DIR), value)
        image_setting_ = image_setting(self.units, image_source, value)
        bound = self.add_bound(image_dest, image_source, image_setting_)
        if all(c.path != source.path for c in bound.companions):
            bound.companions.append(source)
        self.writes[dest] = source

    def sibling(self, found: str, name: str) -> str:
        """`name` in the directory of `found`, resolved inside the root when `found` is in it."""
        inner = self.root.inner_path(os.path.dirname(found))
        if inner is None:
            return os.path.join(os.path.dirname(found), name)
        return self.root.resolve(posixpath.join(inner, name))

    def add_bound(self, dest: str, source: Source, setting: ImageSetting) -> Bound:
        if dest in self.bound:
            return self.bound[dest]
        value = bound_value(setting)
        assert setting.assignment is not None  # bound_value guarantees it
        line = setting.assignment.line
        options = self.options.registry
        if setting.group == "Image":
            options = options.merged(self.image_unit_options(setting, line))
        ref = image_reference(value, source.path, line)
        origin = pin.provenance_of(source.text, line) if ref.digest else None
        request: Optional[Request] = None
        digest = ref.digest
        if digest is None:
            tagged = ref.tag_reference
            digest = self.options.locked.get(tagged)
            if digest is None:
                if self.options.frozen:
                    raise InputError(
                        f"{tagged} is neither pinned nor in the lock file (--frozen); "
                        "run `bindimg lock` and commit the lock",
                        path=source.path,
                        line=line,
                    )
                request = Request(tagged, options)
        bound = Bound(dest, source, line, value, ref, origin or value, request, digest)
        self.bound[dest] = bound
        self.writes[dest] = source
        return bound

    def image_unit_options(self, setting: ImageSetting, line: int) -> RegistryOptions:
        """A `.image` unit's own registry settings, checked against what bootc accepts."""
        path = setting.source.path
        unit = setting.merged
        bootc_keys = parse_bootc(setting.source.text, path).get("Image", {})
        if "AuthFile" in bootc_keys:
            raise InputError(
                "AuthFile= in a bound .image unit makes bootc refuse the whole image; "
                "remove it (bootc pulls with /etc/ostree/auth.json)",
                path=path,
                line=bootc_keys["AuthFile"].line,
            )
        if is_true(unit.lookup("Image", "AllTags")):
            raise InputError("AllTags=true pulls every tag and ignores a pin; remove it", path=path)
        if unit.lookup("Image", "ImageTag"):
            raise InputError(
                "ImageTag= makes containers run that name instead of the pinned image; remove it",
                path=path,
            )
        return image_unit_registry_options(unit, self.root)

    # -- rendering -------------------------------------------------------------------------
    def render(self, digests: Mapping[Request, str]) -> Plan:
        texts = {dest: source.text for dest, source in self.writes.items()}
        lines: dict[str, int] = {}
        entries_src: list[tuple[Bound, str]] = []
        for dest, bound in self.bound.items():
            digest = digests[bound.request] if bound.request is not None else bound.digest
            assert digest is not None  # planned: either pinned, locked or requested
            pinned = bound.ref.pinned(digest)
            texts[dest], lines[dest] = pin.pin(texts[dest], bound.line, pinned, bound.origin)
            self.check_pinned(texts[dest], bound, pinned)
            entries_src.append((bound, pinned))
        if self.options.storage_args:
            for dest, source in self.writes.items():
                if not dest.endswith(".container"):
                    continue
                merged = source.unit.merged([d.unit for d in self.units.dropins(os.path.basename(dest))])
                if pin.has_storage_arg(merged.lookup_all_args("Container", "GlobalArgs")):
                    continue
                assignment = source.unit.lookup_last("Container", "Image")
                assert assignment is not None  # checked while planning
                texts[dest] = pin.add_storage_arg(texts[dest], lines.get(dest, assignment.line))
        files: dict[str, tuple[Optional[bytes], bytes]] = {}
        for dest, text in texts.items():
            old = _read_bytes(dest)
            new = text.encode("utf-8")
            if old != new:
                files[dest] = (old, new)
        links: list[Link] = []
        entries: list[Entry] = []
        for bound, pinned in entries_src:
            inner = self.root.inner_path(bound.dest)
            assert inner is not None
            link = plan_link(self.root, inner)
            if not link.exists:
                links.append(link)
            touched = [bound.dest, *(self.dest_of(c) for c in bound.companions)]
            changed = not link.exists or any(path in files for path in touched)
            entries.append(
                Entry(bound.dest, bound.value, pinned, pinned.split("@", 1)[1], "logical", changed)
            )
        return Plan(files, links, entries)

    def dest_of(self, source: Source) -> str:
        return next(dest for dest, s in self.writes.items() if s is source)

    @staticmethod
    def check_pinned(text: str, bound: Bound, pinned: str) -> None:
        """Both parsers must read the pinned value back; anything else is a bindimg bug."""
        group = "Image" if bound.dest.endswith(".image") else "Container"
        quadlet_value = parse_quadlet(text, bound.dest).lookup(group, "Image")
        found = parse_bootc(text, bound.dest).get(group, {}).get("Image")
        if quadlet_value != pinned or found is None or found.value != pinned:
            raise AssertionError(f"{bound.dest}: pinned text reads back as {quadlet_value!r}")


def _read_bytes(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def plan(paths: list[str], options: AddOptions, progress: Callable[[str], None] = lambda _: None) -> Plan:
    """Everything `add` would do, without writing anything (registry look-ups included)."""
    planner = _Planner(options)
    for path in paths:
        planner.add(path)
    requests = [b.request for b in planner.bound.values() if b.request is not None]
    resolved = resolve_all(requests, options.settings, progress)
    return planner.render({request: result.digest for request, result in resolved.items()})


def apply(plan_: Plan) -> None:
    """Stage every file, then rename them all, then link: a failure while staging writes nothing."""
    staged: list[fsutil.Staged] = []
    try:
        for path, (_, new) in sorted(plan_.files.items()):
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            fsutil.sweep(os.path.dirname(path))
            staged.append(fsutil.stage(path, new))
    except OSError as error:
        for item in staged:
            fsutil.discard(item)
        raise InputError(f"cannot write: {error.strerror}", path=error.filename) from None
    for item in staged:
        fsutil.commit(item)
    for link in plan_.links:
        os.makedirs(os.path.dirname(link.path), mode=0o755, exist_ok=True)
        fsutil.symlink_atomic(link.target, link.path)


def diff(plan_: Plan) -> str:
    """A unified diff of what `apply` would write; new links shown as git shows symlinks."""
    chunks: list[str] = []
    for path, (old, new) in sorted(plan_.files.items()):
        before = (old or b"").decode("utf-8", "replace").splitlines(keepends=True)
        after = new.decode("utf-8").splitlines(keepends=True)
        chunks.extend(
            _terminated(difflib.unified_diff(before, after, "/dev/null" if old is None else path, path))
        )
    for link in plan_.links:
        chunks.extend(
            [
                "--- /dev/null\n",
                f"+++ {link.path}\n",
                "@@ -0,0 +1 @@\n",
                f"+{link.target}\n",
                "\\ No newline at end of file\n",
            ]
        )
    return "".join(chunks)


def _terminated(lines: Iterable[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return out


__all__ = ["BOUND_DIR", "AddOptions", "Entry", "Plan", "apply", "diff", "plan"]
