"""`bindimg add`: plan every edit and link first, resolve, then write all or nothing.

The flow is one way: read and check every unit (nothing is written), collect the tags that
need the registry, resolve them concurrently, render the new bytes, and only then stage and
rename the files. Any failure before the renames leaves the root exactly as it was.

With `--embed` the images are also fetched (and flattened where whiteouts require it) while
planning, in a temporary directory: the unit pins the flattened digest, so it must be known
before rendering. `apply` copies them into the store first and writes the units only after
every copy succeeded; a failed copy takes this run's images out of the store again.
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
from bindimg.embed import Embedder, EmbedOptions, Prepared
from bindimg.errors import InputError
from bindimg.quadlet import UnitFile, parse_quadlet
from bindimg.reference import ValueKind
from bindimg.resolve import Request, Settings, resolve_all
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.store import Store
from bindimg.units import (
    INSTALL_DIR,
    MAX_UNIT_BYTES,
    ROOTLESS_DIR,
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
    embed: Optional[EmbedOptions] = None  # --embed: copy into the store instead of linking


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
    options: RegistryOptions = field(default_factory=RegistryOptions)
    flattened_from: Optional[str] = None  # the value is a flattened digest of this upstream one
    installed: Optional[tuple[str, str]] = None  # the installed unit's (flattened, upstream) digests


@dataclass(frozen=True)
class Entry:
    quadlet: str
    source: str
    reference: str
    digest: str
    mode: str
    changed: bool
    flattened: Optional[bool] = None  # embedded entries only
    upstream_digest: Optional[str] = None  # embedded entries only

    def as_json(self) -> dict[str, object]:
        """The `--json` object: `flattened` and `upstream_digest` only for embedded images."""
        data: dict[str, object] = {
            "quadlet": self.quadlet,
            "source": self.source,
            "reference": self.reference,
            "digest": self.digest,
            "mode": self.mode,
            "changed": self.changed,
        }
        if self.mode == "embedded":
            data["flattened"] = bool(self.flattened)
            data["upstream_digest"] = self.upstream_digest
        return data


@dataclass
class Plan:
    files: dict[str, tuple[Optional[bytes], bytes]]  # host path -> (old bytes, new bytes)
    links: list[Link]
    entries: list[Entry]
    embedded: list[Prepared] = field(default_factory=list)
    embedder: Optional[Embedder] = None

    @property
    def changed(self) -> bool:
        return any(e.changed for e in self.entries)

    def close(self) -> None:
        """Remove the temporary copies of embedded images (after `apply`, or instead of it)."""
        if self.embedder is not None:
            self.embedder.close()


class _Planner:
    def __init__(self, options: AddOptions) -> None:
        self.options = options
        self.root = options.root
        self.units = UnitSet(search_dirs(self.root), self.root)
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
        if not os.path.exists(found):  # a FIFO, device or directory: read_text says which
            raise InputError("no such unit file", path=arg)
        self.origins[os.path.abspath(arg)] = found
        # The rootful generator skips this directory (search_dirs); installing a copy into
        # /usr/share would turn a user's unit into a system one.
        if inner is not None and found.startswith(self.root.resolve(ROOTLESS_DIR)):
            raise InputError(
                f"is a rootless unit ({ROOTLESS_DIR}): rootful Quadlet does not run it and bootc "
                "binds images for rootful units only; move it to /usr/share/containers/systemd",
                path=arg,
            )
        if inner is not None and os.path.dirname(found) in self.units.search_dirs:
            dest = found
            source = self.units.load(dest)
        else:
            dest = self.root.resolve(posixpath.join(INSTALL_DIR, name))  # a link there: its in-root target
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
            image_dest = self.root.resolve(posixpath.join(INSTALL_DIR, value))
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
        embedded = self.options.embed is not None
        options = self.options.registry
        if setting.group == "Image":
            options = options.merged(self.image_unit_options(setting, line, embedded))
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
        bound = Bound(dest, source, line, value, ref, origin or value, request, digest, [], options)
        bound.flattened_from, bound.installed = flattened_from, installed
        self.bound[dest] = bound
        self.writes[dest] = source
        return bound

    def installed_flattening(self, dest: str, source: Source, group: str) -> Optional[tuple[str, str]]:
        """The (flattened, upstream) digests of the unit an earlier run installed at `dest`:
        re-embedding its source then needs no download when the store has that image."""
        if source.path == dest or not os.path.isfile(dest):
            return None
        try:
            text = read_text(dest)
            assignment = parse_quadlet(text, dest).lookup_last(group, "Image")
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

    def image_unit_options(self, setting: ImageSetting, line: int, embedded: bool = False) -> RegistryOptions:
        """A `.image` unit's own registry settings, checked against what bootc accepts (an
        embedded unit is never read by bootc: its AuthFile= is used for the copy)."""
        path = setting.source.path
        unit = setting.merged
        bootc_keys = parse_bootc(setting.source.text, path).get("Image", {})
        if "AuthFile" in bootc_keys and not embedded:
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
    def render(
        self,
        digests: Mapping[Request, str],
        prepared: Optional[Mapping[str, Prepared]] = None,
        store: Optional[Store] = None,
    ) -> Plan:
        """The new bytes of every unit; with `prepared` (dest -> image) and `store`, embedded."""
        texts = {dest: source.text for dest, source in self.writes.items()}
        lines: dict[str, int] = {}
        entries_src: list[tuple[Bound, str]] = []
        for dest, bound in self.bound.items():
            digest = digests[bound.request] if bound.request is not None else bound.digest
            assert digest is not None  # planned: either pinned, locked or requested
            origin = bound.origin
            if prepared is not None:
                image = prepared[dest]
                digest = image.digest
                origin = pin.Provenance(origin, image.upstream if image.flattened else None).text
            pinned = bound.ref.pinned(digest)
            texts[dest], lines[dest] = pin.pin(texts[dest], bound.line, pinned, origin)
            self.check_pinned(texts[dest], bound, pinned)
            entries_src.append((bound, pinned))
        if prepared is not None and store is not None:
            return self.render_embedded(texts, lines, entries_src, prepared, store)
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
        files = self.changed_files(texts)
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

    def render_embedded(
        self,
        texts: dict[str, str],
        lines: Mapping[str, int],
        entries_src: list[tuple[Bound, str]],
        prepared: Mapping[str, Prepared],
        store: Store,
    ) -> Plan:
        """Units that podman runs from the store, never from the network, and no links."""
        policy = self.options.embed.image_policy if self.options.embed else None
        for dest, source in self.writes.items():
            group = "Container" if dest.endswith(".container") else "Image"
            merged = self.merged(dest, source)
            assignment = source.unit.lookup_last(group, "Image")
            assert assignment is not None  # checked while planning
            anchor = lines.get(dest, assignment.line)
            args = merged.lookup_all_args(group, "GlobalArgs")
            if self.options.storage_args and not pin.has_storage_arg(args, store.inner, store.storage_keys):
                texts[dest] = pin.add_storage_arg(texts[dest], anchor, store.storage_arg)
                anchor += 1
            key, value = ("Pull", "never") if group == "Container" else ("Policy", policy)
            if value is not None and (merged.lookup(group, key) or "").lower() != value:
                texts[dest] = pin.set_key(texts[dest], dest, group, key, value, anchor)
        files = self.changed_files(texts)
        entries: list[Entry] = []
        for bound, pinned in entries_src:
            image = prepared[bound.dest]
            touched = [bound.dest, *(self.dest_of(c) for c in bound.companions)]
            changed = image.source is not None or any(path in files for path in touched)
            entries.append(
                Entry(
                    bound.dest,
                    bound.value,
                    pinned,
                    image.digest,
                    "embedded",
                    changed,
                    flattened=image.flattened,
                    upstream_digest=image.upstream,
                )
            )
        return Plan(files, [], entries)

    def check_embedded(self, progress: Callable[[str], None]) -> None:
        """Before any network: a drop-in that lets podman pull cannot be fixed by editing the unit."""
        embed = self.options.embed
        if embed is None:
            return
        for dest, source in self.writes.items():
            group = "Container" if dest.endswith(".container") else "Image"
            key, value = ("Pull", "never") if group == "Container" else ("Policy", embed.image_policy)
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

    def merged(self, dest: str, source: Source) -> UnitFile:
        return source.unit.merged([d.unit for d in self.units.dropins(os.path.basename(dest))])

    @staticmethod
    def changed_files(texts: Mapping[str, str]) -> dict[str, tuple[Optional[bytes], bytes]]:
        files: dict[str, tuple[Optional[bytes], bytes]] = {}
        for dest, text in texts.items():
            old = _read_bytes(dest)
            new = text.encode("utf-8")
            if old != new:
                files[dest] = (old, new)
        return files

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
    """What a planned write replaces (None: nothing yet). An install destination that is a FIFO
    or a directory is refused unopened: opening it blocked or crashed."""
    try:
        return fsutil.read_input(path, MAX_UNIT_BYTES, what="unit file", missing=None, fix="remove it")
    except FileNotFoundError:
        return None


def plan(paths: list[str], options: AddOptions, progress: Callable[[str], None] = lambda _: None) -> Plan:
    """Everything `add` would do, without writing anything (registry look-ups included).

    With `--embed` the images are fetched (and flattened) into a temporary directory that
    lives until `Plan.close()`.
    """
    planner = _Planner(options)
    embedder = Embedder(options.root, options.embed, options.settings, progress) if options.embed else None
    for path in paths:
        planner.add(path)
    planner.check_embedded(progress)
    requests = [b.request for b in planner.bound.values() if b.request is not None]
    resolved = resolve_all(requests, options.settings, progress)
    digests = {request: result.digest for request, result in resolved.items()}
    if embedder is None:
        return planner.render(digests)
    try:
        prepared: dict[str, Prepared] = {}
        for dest, bound in planner.bound.items():
            digest = digests[bound.request] if bound.request is not None else bound.digest
            assert digest is not None
            name = bound.ref.canonical_name
            prepared[dest] = embedder.prepare(
                name, digest, bound.flattened_from, bound.options, dest, bound.installed
            )
        result = planner.render(digests, prepared, embedder.store)
    except BaseException:
        embedder.close()
        raise
    result.embedded = list(prepared.values())
    result.embedder = embedder
    return result


def apply(plan_: Plan) -> None:
    """Copy embedded images into the store, then stage every file, rename them all, then link.

    A failed copy writes no unit (and takes this run's images out of the store again); a
    failure while staging writes nothing either.
    """
    added = plan_.embedder.commit(plan_.embedded) if plan_.embedder is not None else []
    staged: list[fsutil.Staged] = []
    try:
        for path, (_, new) in sorted(plan_.files.items()):
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            fsutil.sweep(os.path.dirname(path))
            staged.append(fsutil.stage(path, new))
    except OSError as error:
        for item in staged:
            fsutil.discard(item)
        if plan_.embedder is not None:
            plan_.embedder.undo(added)
        raise InputError(f"cannot write: {error.strerror}", path=error.filename) from None
    for item in staged:
        fsutil.commit(item)
    for directory in sorted({os.path.dirname(link.path) for link in plan_.links}):
        os.makedirs(directory, mode=0o755, exist_ok=True)
        fsutil.sweep(directory)  # bootc reads every entry there, an old run's leftover too
    for link in plan_.links:
        fsutil.symlink_new(link.target, link.path)


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
