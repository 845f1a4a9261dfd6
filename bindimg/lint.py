"""`bindimg lint`: every reason a unit or an image root would not bind what it says.

Two entry points. `lint_sources` checks a source tree of units (held to what `add` would
accept, since they are meant to be bound). `lint_root` checks an image root the way bootc
and Podman Quadlet will read it: bound-images.d exactly as bootc walks it, every unit in the
rootful Quadlet directories with its drop-ins, and the embedded store.

Each rule is one small function yielding `Finding`s; ids and severities are the SPEC's table
(`RULES`). A finding names the file and the physical line of the value in the file that
supplies it; a finding about a whole file or a link uses line 1 (`WHOLE_FILE`), so that
every output format, SARIF included, has a real line to point at.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Optional

from bindimg import lockfile, pin, reference, storageconf
from bindimg.bootcini import BootcParseError, parse_bootc
from bindimg.boundscan import Entry, rust_extension, scan
from bindimg.errors import ExternalError, InputError
from bindimg.listing import Display, cwd_display, root_display, store_images
from bindimg.quadlet import Assignment, QuadletParseError, UnitDecodeError, split_args
from bindimg.reference import Reference, ValueKind
from bindimg.resolve import Request, ResolveError, Settings, resolve_each
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.store import DEFAULT_STORE, VFS_KEYS
from bindimg.units import (
    SOURCE_EXTENSIONS,
    ImageSetting,
    UnitProblem,
    UnitSet,
    bootc_problem,
    disagreement_problem,
    dropin_dir_names,
    image_reference,
    image_setting,
    image_unit_registry_options,
    is_true,
    missing_image_problem,
    parsed_dropins,
    provenance_tag,
    quadlet_image,
    search_dirs,
    source_units,
    upstream_digest,
)

ERROR = "error"
WARNING = "warning"
WHOLE_FILE = 1  # the line of a finding about a whole file or a bound-images.d entry


@dataclass(frozen=True)
class Rule:
    severity: str  # the default; floating-tag's depends on the unit (see _floating_severity)
    summary: str


RULES: dict[str, Rule] = {
    "parse-error": Rule(ERROR, "Podman Quadlet's parser rejects the file"),
    "bootc-parse-error": Rule(ERROR, "bootc's parser rejects the file (a continuation, a line without =)"),
    "parser-disagreement": Rule(ERROR, "Podman Quadlet and bootc read different Image= values"),
    "missing-image": Rule(ERROR, "No Image=, or an empty one"),
    "invalid-reference": Rule(ERROR, "Image= is not a valid registry image reference"),
    "short-name": Rule(ERROR, "Image= is not fully qualified"),
    "floating-tag": Rule(ERROR, "Image= is not pinned by digest"),
    "tag-and-digest": Rule(ERROR, "Image= has both a tag and a digest"),
    "non-canonical-name": Rule(ERROR, "A pinned Image= is not in the canonical DOMAIN/PATH@sha256 form"),
    "specifier": Rule(ERROR, "A systemd specifier or variable in Image="),
    "unit-reference": Rule(ERROR, "Image= names a Quadlet unit that cannot be followed or bound"),
    "authfile-unsupported": Rule(ERROR, "AuthFile= in a bound .image unit (bootc refuses it)"),
    "all-tags": Rule(ERROR, "AllTags=true with a pinned image"),
    "image-tag": Rule(WARNING, "ImageTag= on a registry image: containers run the unpinned name"),
    "auto-update-conflict": Rule(WARNING, "AutoUpdate=registry on a digest-pinned unit"),
    "not-a-symlink": Rule(ERROR, "A bound-images.d entry that is not a symlink"),
    "dangling-link": Rule(ERROR, "A bound-images.d link whose target is missing inside the root"),
    "bad-extension": Rule(ERROR, "A bound-images.d entry not named *.image or *.container"),
    "extension-mismatch": Rule(ERROR, "Link name and link target disagree on .image/.container"),
    "outside-search-path": Rule(WARNING, "Link target is not the unit Quadlet runs from a rootful directory"),
    "etc-target": Rule(WARNING, "Link target under /etc (bootc stages against the pristine /etc)"),
    "missing-storage-args": Rule(WARNING, "A bound .container without the bootc-storage GlobalArgs"),
    "embedded-missing": Rule(ERROR, "An embedded unit's image is not in the embedded store"),
    "embedded-may-pull": Rule(WARNING, "An embedded unit can still pull from the network (Pull=/Policy=)"),
    "storage-conf-without-store": Rule(
        WARNING, "/etc/containers/storage.conf exists and does not list the embedded store"
    ),
    "lock-missing": Rule(ERROR, "A tag the sources use is not in the lock"),
    "lock-mismatch": Rule(ERROR, "A source is pinned to another digest than the lock's"),
    "lock-stale": Rule(ERROR, "A lock entry that no source uses"),
    "duplicate-image": Rule(WARNING, "One repository bound at two digests"),
    "digest-gone": Rule(ERROR, "A pinned digest no longer resolves in its registry"),
}

# What to do about each way bootc fails on a bound unit (bootc's own reason comes first).
_BOOTC_ADVICE = {
    "bootc-parse-error": "write every setting on one line, without continuations",
    "missing-image": "add Image= to the unit",
    "authfile-unsupported": "remove AuthFile= (bootc pulls with /etc/ostree/auth.json)",
    "specifier": "write the image out in full",
}


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    path: str
    line: int
    message: str


def finding(rule: str, path: str, line: Optional[int], message: str, severity: str = "") -> Finding:
    return Finding(rule, severity or RULES[rule].severity, path, line or WHOLE_FILE, message)


def _from_problem(problem: UnitProblem) -> Finding:
    return finding(problem.kind, problem.path or "", problem.line, problem.message)


@dataclass(frozen=True)
class LockView:
    """What lint needs of a lock: tag reference -> digest, and the line of each entry."""

    path: str
    digests: Mapping[str, str]
    lines: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> LockView:
        """Read a lock file with `lockfile.load` (its errors are InputErrors: exit 2)."""
        entries = lockfile.load(path)
        with open(path, encoding="utf-8") as handle:
            text = handle.read().split("\n")
        headers: dict[str, int] = {}  # one pass: a lock may hold thousands of entries
        for number, line in enumerate(text, 1):
            start, end = line.find('"'), line.rfind('"]')
            if line.lstrip().startswith("[images.") and 0 <= start < end:
                headers.setdefault(line[start + 1 : end], number)
        lines = {key: headers.get(key, WHOLE_FILE) for key in entries}
        return cls(path, {key: entry.digest for key, entry in entries.items()}, lines)


@dataclass(frozen=True)
class Remote:
    """`--remote`: how to reach the registries that serve the pinned digests."""

    registry: RegistryOptions = field(default_factory=RegistryOptions)
    settings: Settings = field(default_factory=Settings)
    progress: Callable[[str], None] = lambda _: None


@dataclass
class UnitView:
    """One unit under lint: both readings of it, and how the image root uses it."""

    name: str
    setting: ImageSetting
    bound: bool = False  # linked from bound-images.d
    candidate: bool = False  # a source `add` would bind: held to bootc's reading too
    embedded: bool = False  # its GlobalArgs add the embedded store
    companion: bool = False  # a .container whose Image= names a linked .image
    ref: Optional[Reference] = None  # its own Image=, when that is a bindable reference

    @property
    def group(self) -> str:
        return self.setting.group

    @property
    def value(self) -> str:
        return self.setting.value or ""

    @property
    def assignment(self) -> Optional[Assignment]:
        return self.setting.assignment

    @property
    def reads_bootc(self) -> bool:
        return (self.bound or self.candidate) and self.group in ("Container", "Image")

    def at(
        self, rule: str, message: str, supplied: Optional[Assignment] = None, severity: str = ""
    ) -> Finding:
        """A finding at `supplied` (default: the Image= assignment), else the unit's line 1."""
        where = supplied or self.assignment
        if where is None:
            return finding(rule, self.setting.source.path, None, message, severity)
        return finding(rule, where.path, where.line, message, severity)


# --- rules on a bound-images.d entry ---------------------------------------------------------


def not_a_symlink(entry: Entry) -> Iterator[Finding]:
    if entry.failure is not None and entry.failure.kind == "not-a-symlink":
        yield finding(
            "not-a-symlink",
            entry.link,
            None,
            f"bootc fails on every install and upgrade: {entry.failure.reason}; "
            "make it a symlink to the unit (`bindimg add` does)",
        )


def dangling_link(entry: Entry) -> Iterator[Finding]:
    if entry.failure is not None and entry.failure.kind == "dangling-link":
        yield finding(
            "dangling-link",
            entry.link,
            None,
            f"links to {os.readlink(entry.link)}, which is missing inside the root "
            f"(bootc fails: {entry.failure.reason}); install the unit or remove the link",
        )


def bad_extension(entry: Entry) -> Iterator[Finding]:
    if entry.failure is not None and entry.failure.kind == "bad-extension":
        reason = entry.failure.reason
    elif rust_extension(entry.name) not in ("image", "container"):
        reason = f"Invalid file extension: {entry.name}"
    else:
        return
    yield finding(
        "bad-extension",
        entry.link,
        None,
        f"bootc fails: {reason}; bootc binds only *.image and *.container links: rename or remove it",
    )


def extension_mismatch(entry: Entry) -> Iterator[Finding]:
    link_ext = rust_extension(entry.name)
    if entry.target is None or not os.path.isfile(entry.target) or link_ext not in ("image", "container"):
        return
    target_name = os.path.basename(entry.target)
    if rust_extension(target_name) != link_ext:
        yield finding(
            "extension-mismatch",
            entry.link,
            None,
            f"the link is named *.{link_ext} but points to {target_name}, so bootc reads it as "
            f"a .{link_ext} unit; name the link {target_name}",
        )


def bootc_refusal(entry: Entry, mismatched: bool) -> Iterator[Finding]:
    """bootc's own failure on the unit a link names (missing Image= follows from a mismatch)."""
    failure = entry.failure
    if failure is None or failure.kind not in _BOOTC_ADVICE:
        return
    if failure.kind == "missing-image" and mismatched:
        return
    yield finding(
        failure.kind,
        failure.path,
        failure.line,
        f"bootc fails: {failure.reason}; {_BOOTC_ADVICE[failure.kind]}",
    )


def outside_search_path(
    root: Root, units: UnitSet, runs: Mapping[str, str], entry: Entry
) -> Iterator[Finding]:
    """`runs`: file name -> the unit Quadlet uses for it (the first in search order that parses)."""
    if entry.target is None or not os.path.isfile(entry.target):
        return
    inner = root.inner_path(entry.target)
    if os.path.dirname(entry.target) not in units.search_dirs:
        yield finding(
            "outside-search-path",
            entry.link,
            None,
            f"points to {inner}, outside the rootful Quadlet directories, so nothing runs the "
            "image bootc pulls; move the unit to /usr/share/containers/systemd",
        )
        return
    used = runs.get(os.path.basename(entry.target))
    if used is not None and used != entry.target:
        yield finding(
            "outside-search-path",
            entry.link,
            None,
            f"points to {inner}, but Quadlet runs {root.inner_path(used)} (same name, higher "
            "precedence), so bootc binds another unit than systemd runs; remove one of them",
        )


def etc_target(root: Root, entry: Entry) -> Iterator[Finding]:
    inner = root.inner_path(entry.target) if entry.target is not None else None
    if inner is not None and inner.startswith("/etc/"):
        yield finding(
            "etc-target",
            entry.link,
            None,
            f"points to {inner}: bootc stages an update against the image's pristine /etc, "
            "without local edits; keep bound units under /usr/share/containers/systemd",
        )


def link_findings(root: Root, units: UnitSet, runs: Mapping[str, str], entry: Entry) -> list[Finding]:
    mismatch = list(extension_mismatch(entry))
    return [
        *not_a_symlink(entry),
        *dangling_link(entry),
        *bad_extension(entry),
        *mismatch,
        *bootc_refusal(entry, bool(mismatch)),
        *outside_search_path(root, units, runs, entry),
        *etc_target(root, entry),
    ]


# --- rules on one unit -------------------------------------------------------------------------


def bootc_parse_error(u: UnitView) -> Iterator[Finding]:
    problem = bootc_problem(u.setting) if u.reads_bootc else None
    if problem is not None:
        yield _from_problem(problem)


def parser_disagreement(u: UnitView) -> Iterator[Finding]:
    if u.reads_bootc and u.setting.bootc_error is None:
        problem = disagreement_problem(u.setting)
        if problem is not None:
            yield _from_problem(problem)


def missing_image(u: UnitView) -> Iterator[Finding]:
    if _runs_rootfs(u) and not u.bound:
        return  # `Rootfs=` instead of an image: nothing to bind
    problem = missing_image_problem(u.setting)
    if problem is not None:
        yield _from_problem(problem)


def unit_reference(u: UnitView, units: UnitSet) -> Iterator[Finding]:
    if reference.classify(u.value) is not ValueKind.UNIT_REFERENCE:
        return
    if u.bound:
        if u.value.endswith(".build"):
            what = "a locally built image cannot be bound: unlink this unit"
        else:
            what = f"link {u.value} instead of this unit"
        yield u.at(
            "unit-reference", f"Image={u.value} names a unit, which bootc pulls as an image name; {what}"
        )
    elif u.group == "Image":
        yield u.at(
            "unit-reference", f"Image={u.value} in an .image unit is pulled as a name; write the image"
        )
    else:
        try:
            quadlet_image(units, u.setting)
        except UnitProblem as problem:
            yield _from_problem(problem)


def tag_and_digest(u: UnitView) -> Iterator[Finding]:
    ref = u.ref
    if ref is not None and ref.tag is not None and ref.digest is not None:
        yield u.at(
            "tag-and-digest",
            f"Image={u.value} has a tag and a digest; podman ignores the tag and skopeo refuses "
            f"the pair: write {ref.pinned(ref.digest)} (`bindimg add` does)",
        )


def non_canonical_name(u: UnitView) -> Iterator[Finding]:
    ref = u.ref
    if ref is not None and ref.tag is None and ref.digest is not None and not ref.is_canonical_pin:
        yield u.at(
            "non-canonical-name",
            f"Image={u.value} is not the name podman stores and bootc's garbage collector "
            f"matches; write {ref.pinned(ref.digest)}",
        )


def floating_tag(u: UnitView, severity: Optional[str], lock: Optional[LockView]) -> Iterator[Finding]:
    if u.ref is None or u.ref.digest is not None or severity is None:
        return
    if u.bound or u.embedded:
        why = "; the image bound depends on when it is pulled: pin it with `bindimg add`"
    elif lock is not None:
        why = f" and {u.ref.tag_reference} is not in {lock.path}; run `bindimg lock`"
    else:
        why = "; pin it with `bindimg add` or freeze it with `bindimg lock`"
    yield u.at("floating-tag", f"Image={u.value} is not pinned by digest{why}", severity=severity)


def authfile_unsupported(u: UnitView) -> Iterator[Finding]:
    if not (u.bound and u.group == "Image"):
        return
    try:
        authfile = parse_bootc(u.setting.source.text, u.setting.source.path).get("Image", {}).get("AuthFile")
    except BootcParseError:
        return
    if authfile is not None:
        yield finding(
            "authfile-unsupported",
            u.setting.source.path,
            authfile.line,
            "bootc refuses AuthFile= in a bound .image unit; remove it (bootc pulls with "
            "/etc/ostree/auth.json)",
        )


def all_tags(u: UnitView) -> Iterator[Finding]:
    if u.group != "Image" or u.ref is None or u.ref.digest is None:
        return
    if is_true(u.setting.merged.lookup("Image", "AllTags")):
        yield u.at(
            "all-tags",
            "AllTags=true pulls every tag of the repository and ignores the pin; remove it",
            u.setting.merged.lookup_last("Image", "AllTags"),
        )


def image_tag(u: UnitView) -> Iterator[Finding]:
    tag = u.setting.merged.lookup("Image", "ImageTag") if u.group == "Image" else None
    if tag and reference.classify(u.value) is ValueKind.REGISTRY:
        yield u.at(
            "image-tag",
            f"ImageTag={tag} makes containers that use this unit run {tag}, not Image=; remove it",
            u.setting.merged.lookup_last("Image", "ImageTag"),
        )


def auto_update_conflict(u: UnitView, units: UnitSet) -> Iterator[Finding]:
    if u.group != "Container":
        return
    where = _auto_update_registry(u)
    if where is None:
        return
    try:
        runs = quadlet_image(units, u.setting)
    except UnitProblem:
        return  # reported by unit-reference
    if runs is not None and _digest_of(runs[0]) is not None:
        yield u.at(
            "auto-update-conflict",
            f"podman auto-update cannot update {runs[0]}, which is pinned by digest; remove "
            "AutoUpdate=registry and update the pin instead",
            where,
        )


def missing_storage_args(u: UnitView) -> Iterator[Finding]:
    if u.group != "Container" or not (u.bound or u.companion):
        return
    if not pin.has_storage_arg(u.setting.merged.lookup_all_args("Container", "GlobalArgs")):
        yield u.at(
            "missing-storage-args",
            f"podman will not see the image bootc pulled; add GlobalArgs={pin.STORAGE_ARG} "
            "(`bindimg add` does)",
        )


def embedded_missing(u: UnitView, units: UnitSet, stored: Optional[set[str]]) -> Iterator[Finding]:
    """`stored` is None for a source tree: it has no store to look in."""
    if not u.embedded or stored is None:
        return
    try:
        runs = quadlet_image(units, u.setting)
    except UnitProblem:
        return  # reported by unit-reference
    if runs is not None and runs[0] not in stored:
        yield u.at(
            "embedded-missing",
            f"{runs[0]} is not in the embedded store {DEFAULT_STORE}; embed it with "
            "`bindimg add --embed` or drop the store from GlobalArgs=",
            runs[1],
        )


def storage_conf_without_store(root: Root) -> Iterator[Finding]:
    """Podman <= 5 reads only the first storage.conf found, so one in /etc hides the vendor's
    (and Podman 6 reads it before the drop-ins: a list it sets is the base they append to)."""
    listed = storageconf.main_lists(root, DEFAULT_STORE)
    if listed is not None and not listed[0]:
        yield finding(
            "storage-conf-without-store",
            root.resolve(storageconf.MAIN),
            listed[1],
            f"does not list the embedded store {DEFAULT_STORE} in additionalimagestores: podman "
            "outside the units (whose GlobalArgs= name it) will not see its images; add it there",
        )


def embedded_may_pull(u: UnitView) -> Iterator[Finding]:
    if not u.embedded:
        return
    merged = u.setting.merged
    if u.group == "Container":
        pull = merged.lookup("Container", "Pull")
        if (pull or "").lower() != "never":
            shown = pull or "missing (the default)"
            yield u.at(
                "embedded-may-pull",
                f"Pull={shown} lets podman pull from the network when the image is absent; set Pull=never",
                merged.lookup_last("Container", "Pull"),
            )
    elif u.group == "Image":
        policy = merged.lookup("Image", "Policy")
        if (policy or "").lower() not in ("missing", "never"):
            shown = policy or "always (the default)"
            yield u.at(
                "embedded-may-pull",
                f"Policy={shown} pulls from the network on every start; set Policy=missing "
                "(podman >= 5.6) or use a .container unit",
                merged.lookup_last("Image", "Policy"),
            )


def duplicate_image(views: Iterable[UnitView]) -> Iterator[Finding]:
    pinned: dict[str, list[UnitView]] = {}
    for u in views:
        if u.ref is not None and u.ref.digest is not None:
            pinned.setdefault(u.ref.canonical_name, []).append(u)
    for name, users in sorted(pinned.items()):
        digests = sorted({u.ref.digest for u in users if u.ref is not None and u.ref.digest})
        if len(digests) > 1:
            shown = ", ".join(d[:19] + "..." for d in digests)
            for u in users:
                yield u.at(
                    "duplicate-image",
                    f"{name} is bound at {len(digests)} digests ({shown}); bind one digest",
                )


def lock_findings(views: Iterable[UnitView], units: UnitSet, lock: LockView) -> Iterator[Finding]:
    """lock-missing / lock-mismatch per unit, lock-stale per entry no unit uses.

    A pinned unit is checked by the tag in its provenance comment (that is what `bindimg
    lock` keeps locked); one pinned without a provenance tag has nothing to lock.
    """
    used: set[str] = set()
    for u in views:
        ref, where = u.ref, u.assignment
        if ref is None or where is None:
            continue
        tag = ref.tag_reference if ref.digest is None else provenance_tag(units, where.path, where.line, ref)
        if tag is None:
            continue
        used.add(tag)
        locked = lock.digests.get(tag)
        if locked is None:
            yield u.at("lock-missing", f"{tag} is not in {lock.path}; run `bindimg lock`")
            continue
        pinned = upstream_digest(units, where.path, where.line, ref)
        if pinned is not None and pinned != locked:
            yield u.at(
                "lock-mismatch",
                f"pinned to {pinned}, but {lock.path} locks {tag} to {locked}; "
                f"run `bindimg lock --rewrite` (or `bindimg lock --update {tag}`)",
            )
    for tag in sorted(set(lock.digests) - used):
        yield finding(
            "lock-stale",
            lock.path,
            lock.lines.get(tag),
            f"{tag} is no longer used by any unit; run `bindimg lock` to drop it",
        )


def digest_gone(views: Iterable[UnitView], units: UnitSet, root: Root, remote: Remote) -> Iterator[Finding]:
    """Ask each registry for each pinned digest (concurrently, each reference once).

    A flattened embedded unit is pinned to a digest only its store has: it is checked by the
    upstream digest in its provenance comment. A registry or network failure is not a
    finding but an ExternalError (exit 3): it says nothing about the pin.
    """
    wanted: dict[Request, list[UnitView]] = {}
    for u in views:
        checked = _remote_reference(u, units)
        if checked is None:
            continue
        options = remote.registry
        if u.group == "Image":
            options = options.merged(image_unit_registry_options(u.setting.merged, root))
        wanted.setdefault(Request(checked, options), []).append(u)
    for request, outcome in resolve_each(wanted, remote.settings, remote.progress).items():
        if isinstance(outcome, ExternalError):
            if isinstance(outcome, ResolveError) and outcome.transient:
                raise outcome
            reason = outcome.message
        elif outcome.digest != request.reference.rpartition("@")[2]:
            reason = f"the registry serves other bytes ({outcome.digest}) for {request.reference}"
        else:
            continue
        for u in wanted[request]:
            yield u.at("digest-gone", f"the pinned digest no longer resolves: {reason}")


# --- helpers -----------------------------------------------------------------------------------


def _runs_rootfs(u: UnitView) -> bool:
    return u.group == "Container" and not u.value and bool(u.setting.merged.lookup("Container", "Rootfs"))


def _digest_of(value: str) -> Optional[str]:
    if reference.classify(value) is not ValueKind.REGISTRY:
        return None
    try:
        return reference.parse(value).digest
    except reference.ReferenceError:
        return None


def _auto_update_registry(u: UnitView) -> Optional[Assignment]:
    """The assignment asking podman auto-update to follow the registry, if any."""
    merged = u.setting.merged
    if (merged.lookup("Container", "AutoUpdate") or "").lower() == "registry":
        return merged.lookup_last("Container", "AutoUpdate")
    for item in reversed(merged.groups.get("Container", [])):
        if item.key == "Label" and "io.containers.autoupdate=registry" in (split_args(item.value) or []):
            return item
    return None


def _remote_reference(u: UnitView, units: UnitSet) -> Optional[str]:
    """`name@digest` to ask the registry for, or None when the unit is not pinned."""
    ref, where = u.ref, u.assignment
    if ref is None or ref.digest is None or where is None:
        return None
    digest = upstream_digest(units, where.path, where.line, ref) if u.embedded else ref.digest
    return f"{ref.canonical_name}@{digest}"


def _adds_embedded_store(global_args: list[str]) -> bool:
    """The unit's podman reads the embedded store (overlay or vfs style): an embedded unit."""
    return any(pin.has_storage_arg(global_args, DEFAULT_STORE, keys) for keys in (pin.STORAGE_KEYS, VFS_KEYS))


def _is_unit_name(path: str) -> bool:
    """A unit Quadlet and lint know by its extension (`.image` alone is a dotfile, no unit)."""
    return posixpath.splitext(path)[1] in SOURCE_EXTENSIONS


def _is_parse_failure(error: InputError) -> bool:
    return isinstance(error, (QuadletParseError, UnitDecodeError))


def _parse_error(error: InputError, path: str) -> Finding:
    if isinstance(error, QuadletParseError):
        message = f"Podman Quadlet rejects this file: {error.message}; fix that line"
    else:
        message = f"this file {error.message}"
    return finding("parse-error", error.path or path, error.line, message)


class _Linter:
    """State of one lint run: the units, the views built so far, the findings."""

    def __init__(self, units: UnitSet, root: Root, lock: Optional[LockView] = None) -> None:
        self.units = units
        self.root = root
        self.lock = lock
        self.views: list[UnitView] = []
        self.findings: list[Finding] = []

    def view(self, path: str, *, bound: bool = False, source_tree: bool = False) -> Optional[UnitView]:
        """Parse a unit and its drop-ins (each failure a parse-error, as Quadlet reports it)."""
        try:
            source = self.units.load(path)
        except InputError as error:
            if not _is_parse_failure(error):
                raise
            self.findings.append(_parse_error(error, path))
            return None
        name = os.path.basename(path)
        dropins, errors = parsed_dropins(self.units, name)
        for failure in errors:
            if not _is_parse_failure(failure):
                raise failure
            self.findings.append(_parse_error(failure, path))
        setting = image_setting(self.units, source, name, dropins)
        if setting.group == "Volume" and setting.merged.lookup("Volume", "Driver") != "image":
            return None  # only Driver=image volumes name an image
        u = UnitView(name, setting, bound=bound)
        u.embedded = _adds_embedded_store(setting.merged.lookup_all_args(setting.group, "GlobalArgs"))
        kind = reference.classify(u.value)
        u.candidate = (
            source_tree
            and setting.group in ("Container", "Image")
            and kind not in (ValueKind.UNIT_REFERENCE, ValueKind.TRANSPORT, ValueKind.IMAGE_ID)
            and not _runs_rootfs(u)
        )
        self.views.append(u)
        return u

    def reference_of(self, u: UnitView) -> None:
        """Parse the unit's own Image= once; why it is not bindable is a finding."""
        where = u.assignment
        kind = reference.classify(u.value)
        if where is None or kind in (ValueKind.EMPTY, ValueKind.UNIT_REFERENCE):
            return
        if kind in (ValueKind.TRANSPORT, ValueKind.IMAGE_ID) and not (u.bound or u.embedded):
            return  # podman runs it; there is nothing to pin
        try:
            u.ref = image_reference(u.value, where.path, where.line)
        except UnitProblem as problem:
            self.findings.append(_from_problem(problem))

    def floating_severity(self, u: UnitView) -> Optional[str]:
        if u.bound or u.embedded:
            return ERROR
        if self.lock is None:
            return WARNING
        return None if u.ref is not None and u.ref.tag_reference in self.lock.digests else ERROR

    def check(self, stored: Optional[set[str]]) -> None:
        units = self.units
        for u in self.views:
            self.reference_of(u)
            self.findings.extend(
                [
                    *bootc_parse_error(u),
                    *parser_disagreement(u),
                    *missing_image(u),
                    *unit_reference(u, units),
                    *tag_and_digest(u),
                    *non_canonical_name(u),
                    *floating_tag(u, self.floating_severity(u), self.lock),
                    *authfile_unsupported(u),
                    *all_tags(u),
                    *image_tag(u),
                    *auto_update_conflict(u, units),
                    *missing_storage_args(u),
                    *embedded_missing(u, units, stored),
                    *embedded_may_pull(u),
                ]
            )

    def finish(
        self, bound_views: list[UnitView], remote: Optional[Remote], display: Display
    ) -> list[Finding]:
        self.findings.extend(duplicate_image(bound_views))
        if self.lock is not None:
            self.findings.extend(lock_findings(self.views, self.units, self.lock))
        if remote is not None:
            self.findings.extend(digest_gone(bound_views, self.units, self.root, remote))
        unique: dict[tuple[str, str, int], Finding] = {}
        for item in self.findings:  # one finding per rule and line: the first (most precise) wins
            unique.setdefault((item.id, item.path, item.line), replace(item, path=display(item.path)))
        return sort_findings(unique.values())


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.path, f.line, f.id))


def lint_sources(
    paths: list[str], lock: Optional[LockView] = None, remote: Optional[Remote] = None
) -> list[Finding]:
    """Lint the units under PATHs (files or directories; a drop-in `.conf` means its units)."""
    expanded = _units_of_dropins(paths)
    units, files = source_units(expanded)
    named = {os.path.abspath(p) for p in expanded}
    linter = _Linter(units, Root("/"), lock)
    for path in files:
        if _is_unit_name(path):
            linter.view(path, source_tree=True)
        elif path in named:
            raise InputError("not a .container, .image or .volume unit, nor a drop-in", path=path)
    linter.check(None)
    return linter.finish(linter.views, remote, cwd_display)


def _units_of_dropins(paths: list[str]) -> list[str]:
    """A drop-in `DIR/x.d/y.conf` (as pre-commit passes a changed file) stands for the units in
    DIR that read `x.d`."""
    expanded: list[str] = []
    for path in paths:
        dropin_dir = os.path.dirname(os.path.abspath(path))
        if not (path.endswith(".conf") and dropin_dir.endswith(".d") and os.path.isfile(path)):
            expanded.append(path)
            continue
        parent = os.path.dirname(dropin_dir)
        for name in sorted(os.listdir(parent)):
            if name.endswith(SOURCE_EXTENSIONS) and os.path.basename(dropin_dir) in dropin_dir_names(name):
                expanded.append(os.path.join(parent, name))
    return expanded


def lint_root(root: Root, shown: Optional[str] = None, remote: Optional[Remote] = None) -> list[Finding]:
    """Lint an image root as bootc and Podman Quadlet will read it (`shown`: the root as the
    user wrote it, for the paths in findings)."""
    units = UnitSet(search_dirs(root), root)
    linter = _Linter(units, root)
    runs = _quadlet_units(root, linter)
    linked: dict[str, list[Entry]] = {}
    for entry in scan(root):
        linter.findings.extend(link_findings(root, units, runs, entry))
        if entry.target is not None and os.path.isfile(entry.target):
            linked.setdefault(entry.target, []).append(entry)
    paths = list(runs.values())
    paths.extend(t for t in linked if t not in paths and _is_unit_name(t))
    for path in paths:
        linter.view(path, bound=path in linked)
    for u in linter.views:
        named = units.find(u.value) if reference.classify(u.value) is ValueKind.UNIT_REFERENCE else None
        u.companion = u.group == "Container" and named in linked
    embedded = [u for u in linter.views if u.embedded]
    linter.check(set(store_images(root)) if embedded else set())
    if embedded:
        linter.findings.extend(storage_conf_without_store(root))
    bound_views = [u for u in linter.views if u.bound or u.embedded]
    return linter.finish(bound_views, remote, root_display(root, shown or root.host))


def _quadlet_units(root: Root, linter: _Linter) -> dict[str, str]:
    """The unit Quadlet uses for each name: the first in search order that parses.

    Each candidate is resolved inside the root, so a unit that is a symlink reads the root's
    file, never the host's. A unit that fails to parse is a finding, and, as in Quadlet, the
    next file of the same name is used instead.
    """
    chosen: dict[str, str] = {}
    for directory in linter.units.search_dirs:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            inner = root.inner_path(os.path.join(directory, name))
            if name in chosen or not _is_unit_name(name) or inner is None:
                continue
            path = root.resolve(inner)
            if not os.path.isfile(path):
                continue
            try:
                linter.units.load(path)
            except InputError as error:
                if not _is_parse_failure(error):
                    raise
                linter.findings.append(_parse_error(error, path))
                continue
            chosen[name] = path
    return chosen


__all__ = [
    "RULES",
    "Finding",
    "LockView",
    "Remote",
    "Rule",
    "lint_root",
    "lint_sources",
]
