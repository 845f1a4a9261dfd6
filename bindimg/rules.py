"""The lint rules: each one small function, registered with the ids it reports.

A rule is registered by the decorator of its kind (`link_rule`: one bound-images.d entry,
`unit_rule`: one unit, `run_rule`: all the units of a run at once) with the ids it yields,
which must be in the catalogue (`bindimg.findings.RULES`): an id cannot drift from its code.
The runner (`bindimg.commands.lint`) calls every rule of a kind, in registration order, with the same
`Context`. A finding names the file and the physical line of the value in the file that
supplies it; a finding about a whole file or a link uses line 1 (`WHOLE_FILE`), so that
every output format, SARIF included, has a real line to point at.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, TypeVar

from bindimg import lockfile, pin, reference, skopeo
from bindimg.bootcini import BootcParseError, parse_bootc
from bindimg.boundscan import Entry, rust_extension
from bindimg.errors import ExternalError, InputError
from bindimg.findings import ERROR, RULES, WARNING, WHOLE_FILE, Finding, finding
from bindimg.quadlet import (
    CONTAINER,
    IMAGE,
    KEY_ALL_TAGS,
    KEY_AUTH_FILE,
    KEY_AUTO_UPDATE,
    KEY_GLOBAL_ARGS,
    KEY_IMAGE_TAG,
    KEY_LABEL,
    KEY_POLICY,
    KEY_PULL,
    Assignment,
    QuadletParseError,
    split_args,
)
from bindimg.reference import Reference, ValueKind
from bindimg.registry import Registry
from bindimg.resolve import Request, ResolveError, Settings, resolve_each
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.store import DEFAULT_STORE
from bindimg.units import (
    ImageSetting,
    UnitProblem,
    bootc_problem,
    disagreement_problem,
    image_unit_registry_options,
    is_true,
    missing_image_problem,
    provenance_tag,
    quadlet_image,
    upstream_digest,
)
from bindimg.unitset import UnitSet

# What to do about each way bootc fails on a bound unit (bootc's own reason comes first).
_BOOTC_ADVICE = {
    "bootc-parse-error": "write every setting on one line, without continuations",
    "missing-image": "add Image= to the unit",
    "authfile-unsupported": "remove AuthFile= (bootc pulls with /etc/ostree/auth.json)",
    "specifier": "write the image out in full",
}


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
    client: Registry = skopeo  # who asks them (a fake in unit tests)


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
    ref_problem: Optional[UnitProblem] = None  # why its own Image= is not one

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
        return (self.bound or self.candidate) and self.group in (CONTAINER, IMAGE)

    def at(
        self, rule: str, message: str, supplied: Optional[Assignment] = None, severity: str = ""
    ) -> Finding:
        """A finding at `supplied` (default: the Image= assignment), else the unit's line 1."""
        where = supplied or self.assignment
        if where is None:
            return finding(rule, self.setting.source.path, None, message, severity)
        return finding(rule, where.path, where.line, message, severity)


@dataclass(frozen=True)
class Context:
    """What every rule of one lint run may look at besides the entry or unit it checks."""

    units: UnitSet
    root: Root
    lock: Optional[LockView] = None
    remote: Optional[Remote] = None
    stored: Optional[set[str]] = None  # the embedded store's names; None for a source tree
    runs: Mapping[str, str] = field(default_factory=dict)  # file name -> the unit Quadlet uses


LinkRule = Callable[[Entry, Context], Iterable[Finding]]
UnitRule = Callable[["UnitView", Context], Iterable[Finding]]
RunRule = Callable[[Sequence["UnitView"], Context], Iterable[Finding]]

LINK_RULES: list[LinkRule] = []
UNIT_RULES: list[UnitRule] = []
RUN_RULES: list[RunRule] = []
REPORTED_BY: dict[str, list[str]] = {}  # rule id -> the functions that can report it


F = TypeVar("F", LinkRule, UnitRule, RunRule)


def _registrar(registry: list[F]) -> Callable[..., Callable[[F], F]]:
    """The decorator that registers a rule of one kind with the catalogued ids it reports."""

    def declare(*ids: str) -> Callable[[F], F]:
        def register(rule: F) -> F:
            for rule_id in ids:
                if rule_id not in RULES:
                    raise ValueError(f"{rule.__name__} reports {rule_id!r}, which is not in findings.RULES")
                REPORTED_BY.setdefault(rule_id, []).append(rule.__name__)
            registry.append(rule)
            return rule

        return register

    return declare


link_rule = _registrar(LINK_RULES)
"""`@link_rule(*ids)`: a rule on one bound-images.d entry."""
unit_rule = _registrar(UNIT_RULES)
"""`@unit_rule(*ids)`: a rule on one unit."""
run_rule = _registrar(RUN_RULES)
"""`@run_rule(*ids)`: a rule on all the bound (in a source tree: all the) units at once."""


def parse_error(error: InputError, path: str) -> Finding:
    """A file Quadlet's parser or decoder rejects; the runner reports it and, as Quadlet
    does, carries on with the next file."""
    if isinstance(error, QuadletParseError):
        message = f"Podman Quadlet rejects this file: {error.message}; fix that line"
    else:
        message = f"this file {error.message}"
    return finding("parse-error", error.path or path, error.line, message)


REPORTED_BY["parse-error"] = [parse_error.__name__]  # reported by the runner, for any file


# --- rules on a bound-images.d entry ---------------------------------------------------------


@link_rule("not-a-symlink", "dangling-link")
def broken_link(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """An entry bootc cannot follow at all: not a symlink, or a target missing in the root."""
    failure = entry.failure
    if failure is None:
        return
    if failure.kind == "not-a-symlink":
        message = (
            f"bootc fails on every install and upgrade: {failure.reason}; "
            "make it a symlink to the unit (`bindimg add` does)"
        )
    elif failure.kind == "dangling-link":
        message = (
            f"links to {os.readlink(entry.link)}, which is missing inside the root "
            f"(bootc fails: {failure.reason}); install the unit or remove the link"
        )
    else:
        return
    yield finding(failure.kind, entry.link, None, message)


@link_rule("bad-extension")
def bad_extension(entry: Entry, ctx: Context) -> Iterator[Finding]:
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


@link_rule("extension-mismatch")
def extension_mismatch(entry: Entry, ctx: Context) -> Iterator[Finding]:
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


@link_rule(*_BOOTC_ADVICE)
def bootc_refusal(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """bootc's own failure on the unit a link names (missing Image= follows from a mismatch)."""
    failure = entry.failure
    if failure is None or failure.kind not in _BOOTC_ADVICE:
        return
    if failure.kind == "missing-image" and any(extension_mismatch(entry, ctx)):
        return
    yield finding(
        failure.kind,
        failure.path,
        failure.line,
        f"bootc fails: {failure.reason}; {_BOOTC_ADVICE[failure.kind]}",
    )


@link_rule("outside-search-path")
def outside_search_path(entry: Entry, ctx: Context) -> Iterator[Finding]:
    root, units = ctx.root, ctx.units
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
    used = ctx.runs.get(os.path.basename(entry.target))
    if used is not None and used != entry.target:
        yield finding(
            "outside-search-path",
            entry.link,
            None,
            f"points to {inner}, but Quadlet runs {root.inner_path(used)} (same name, higher "
            "precedence), so bootc binds another unit than systemd runs; remove one of them",
        )


@link_rule("etc-target")
def etc_target(entry: Entry, ctx: Context) -> Iterator[Finding]:
    root = ctx.root
    inner = root.inner_path(entry.target) if entry.target is not None else None
    if inner is not None and inner.startswith("/etc/"):
        yield finding(
            "etc-target",
            entry.link,
            None,
            f"points to {inner}: bootc stages an update against the image's pristine /etc, "
            "without local edits; keep bound units under /usr/share/containers/systemd",
        )


# --- rules on one unit -------------------------------------------------------------------------


@unit_rule("invalid-reference", "short-name", "specifier", "unit-reference")
def reference_problem(u: UnitView, ctx: Context) -> Iterator[Finding]:
    """Why the unit's own Image= is not a bindable reference (parsed once, in `UnitView.ref`)."""
    if u.ref_problem is not None:
        yield _from_problem(u.ref_problem)


@unit_rule("bootc-parse-error")
def bootc_parse_error(u: UnitView, ctx: Context) -> Iterator[Finding]:
    problem = bootc_problem(u.setting) if u.reads_bootc else None
    if problem is not None:
        yield _from_problem(problem)


@unit_rule("parser-disagreement")
def parser_disagreement(u: UnitView, ctx: Context) -> Iterator[Finding]:
    if u.reads_bootc and u.setting.bootc_error is None:
        problem = disagreement_problem(u.setting)
        if problem is not None:
            yield _from_problem(problem)


@unit_rule("missing-image")
def missing_image(u: UnitView, ctx: Context) -> Iterator[Finding]:
    if u.setting.runs_rootfs and not u.bound:
        return  # `Rootfs=` instead of an image: nothing to bind
    problem = missing_image_problem(u.setting)
    if problem is not None:
        yield _from_problem(problem)


@unit_rule("unit-reference", "missing-image")
def unit_reference(u: UnitView, ctx: Context) -> Iterator[Finding]:
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
    elif u.group == IMAGE:
        yield u.at(
            "unit-reference", f"Image={u.value} in an .image unit is pulled as a name; write the image"
        )
    else:
        try:
            quadlet_image(ctx.units, u.setting)
        except UnitProblem as problem:
            yield _from_problem(problem)


@unit_rule("tag-and-digest", "non-canonical-name")
def pinned_form(u: UnitView, ctx: Context) -> Iterator[Finding]:
    """A pin is `DOMAIN/PATH@sha256:...` alone: no tag beside the digest, the canonical name."""
    ref = u.ref
    if ref is None or ref.digest is None:
        return
    if ref.tag is not None:
        yield u.at(
            "tag-and-digest",
            f"Image={u.value} has a tag and a digest; podman ignores the tag and skopeo refuses "
            f"the pair: write {ref.pinned(ref.digest)} (`bindimg add` does)",
        )
    elif not ref.is_canonical_pin:
        yield u.at(
            "non-canonical-name",
            f"Image={u.value} is not the name podman stores and bootc's garbage collector "
            f"matches; write {ref.pinned(ref.digest)}",
        )


@unit_rule("floating-tag")
def floating_tag(u: UnitView, ctx: Context) -> Iterator[Finding]:
    """An error where the tag decides what is bound or runs unlocked; a warning in a source
    tree checked without a lock; nothing for a tag the lock holds."""
    lock = ctx.lock
    severity = _floating_severity(u, lock)
    if u.ref is None or u.ref.digest is not None or severity is None:
        return
    if u.bound or u.embedded:
        why = "; the image bound depends on when it is pulled: pin it with `bindimg add`"
    elif lock is not None:
        why = f" and {u.ref.tag_reference} is not in {lock.path}; run `bindimg lock`"
    else:
        why = "; pin it with `bindimg add` or freeze it with `bindimg lock`"
    yield u.at("floating-tag", f"Image={u.value} is not pinned by digest{why}", severity=severity)


@unit_rule("authfile-unsupported")
def authfile_unsupported(u: UnitView, ctx: Context) -> Iterator[Finding]:
    if not (u.bound and u.group == IMAGE):
        return
    try:
        authfile = parse_bootc(u.setting.source.text, u.setting.source.path).get(IMAGE, {}).get(KEY_AUTH_FILE)
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


@unit_rule("all-tags")
def all_tags(u: UnitView, ctx: Context) -> Iterator[Finding]:
    if u.group != IMAGE or u.ref is None or u.ref.digest is None:
        return
    if is_true(u.setting.merged.lookup(IMAGE, KEY_ALL_TAGS)):
        yield u.at(
            "all-tags",
            "AllTags=true pulls every tag of the repository and ignores the pin; remove it",
            u.setting.merged.lookup_last(IMAGE, KEY_ALL_TAGS),
        )


@unit_rule("image-tag")
def image_tag(u: UnitView, ctx: Context) -> Iterator[Finding]:
    tag = u.setting.merged.lookup(IMAGE, KEY_IMAGE_TAG) if u.group == IMAGE else None
    if tag and reference.classify(u.value) is ValueKind.REGISTRY:
        yield u.at(
            "image-tag",
            f"ImageTag={tag} makes containers that use this unit run {tag}, not Image=; remove it",
            u.setting.merged.lookup_last(IMAGE, KEY_IMAGE_TAG),
        )


@unit_rule("auto-update-conflict")
def auto_update_conflict(u: UnitView, ctx: Context) -> Iterator[Finding]:
    if u.group != CONTAINER:
        return
    where = _auto_update_registry(u)
    if where is None:
        return
    try:
        runs = quadlet_image(ctx.units, u.setting)
    except UnitProblem:
        return  # reported by unit-reference
    if runs is not None and _digest_of(runs[0]) is not None:
        yield u.at(
            "auto-update-conflict",
            f"podman auto-update cannot update {runs[0]}, which is pinned by digest; remove "
            "AutoUpdate=registry and update the pin instead",
            where,
        )


@unit_rule("missing-storage-args")
def missing_storage_args(u: UnitView, ctx: Context) -> Iterator[Finding]:
    if u.group != CONTAINER or not (u.bound or u.companion):
        return
    if not pin.has_storage_arg(u.setting.merged.lookup_all_args(CONTAINER, KEY_GLOBAL_ARGS)):
        yield u.at(
            "missing-storage-args",
            f"podman will not see the image bootc pulled; add GlobalArgs={pin.STORAGE_ARG} "
            "(`bindimg add` does)",
        )


@unit_rule("embedded-missing")
def embedded_missing(u: UnitView, ctx: Context) -> Iterator[Finding]:
    """Not for a source tree: it has no store to look in (`ctx.stored` is None)."""
    stored = ctx.stored
    if not u.embedded or stored is None:
        return
    try:
        runs = quadlet_image(ctx.units, u.setting)
    except UnitProblem:
        return  # reported by unit-reference
    if runs is not None and runs[0] not in stored:
        yield u.at(
            "embedded-missing",
            f"{runs[0]} is not in the embedded store {DEFAULT_STORE}; embed it with "
            "`bindimg add --embed` or drop the store from GlobalArgs=",
            runs[1],
        )


@unit_rule("embedded-may-pull")
def embedded_may_pull(u: UnitView, ctx: Context) -> Iterator[Finding]:
    if not u.embedded:
        return
    merged = u.setting.merged
    if u.group == CONTAINER:
        pull = merged.lookup(CONTAINER, KEY_PULL)
        if (pull or "").lower() != "never":
            shown = pull or "missing (the default)"
            yield u.at(
                "embedded-may-pull",
                f"Pull={shown} lets podman pull from the network when the image is absent; set Pull=never",
                merged.lookup_last(CONTAINER, KEY_PULL),
            )
    elif u.group == IMAGE:
        policy = merged.lookup(IMAGE, KEY_POLICY)
        if (policy or "").lower() not in ("missing", "never"):
            shown = policy or "always (the default)"
            yield u.at(
                "embedded-may-pull",
                f"Policy={shown} pulls from the network on every start; set Policy=missing "
                "(podman >= 5.6) or use a .container unit",
                merged.lookup_last(IMAGE, KEY_POLICY),
            )


@run_rule("duplicate-image")
def duplicate_image(views: Sequence[UnitView], ctx: Context) -> Iterator[Finding]:
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


@run_rule("lock-missing", "lock-mismatch", "lock-stale")
def lock_findings(views: Sequence[UnitView], ctx: Context) -> Iterator[Finding]:
    """lock-missing / lock-mismatch per unit, lock-stale per entry no unit uses (with a lock).

    A pinned unit is checked by the tag in its provenance comment (that is what `bindimg
    lock` keeps locked); one pinned without a provenance tag has nothing to lock.
    """
    units, lock = ctx.units, ctx.lock
    if lock is None:
        return
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


@run_rule("digest-gone")
def digest_gone(views: Sequence[UnitView], ctx: Context) -> Iterator[Finding]:
    """With --remote, ask each registry for each pinned digest (concurrently, each reference once).

    A flattened embedded unit is pinned to a digest only its store has: it is checked by the
    upstream digest in its provenance comment. A registry or network failure is not a
    finding but an ExternalError (exit 3): it says nothing about the pin.
    """
    units, root, remote = ctx.units, ctx.root, ctx.remote
    if remote is None:
        return
    wanted: dict[Request, list[UnitView]] = {}
    for u in views:
        checked = _remote_reference(u, units)
        if checked is None:
            continue
        options = remote.registry
        if u.group == IMAGE:
            options = options.merged(image_unit_registry_options(u.setting.merged, root))
        wanted.setdefault(Request(checked, options), []).append(u)
    for request, outcome in resolve_each(wanted, remote.settings, remote.progress, remote.client).items():
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
    if (merged.lookup(CONTAINER, KEY_AUTO_UPDATE) or "").lower() == "registry":
        return merged.lookup_last(CONTAINER, KEY_AUTO_UPDATE)
    for item in reversed(merged.groups.get(CONTAINER, [])):
        if item.key == KEY_LABEL and "io.containers.autoupdate=registry" in (split_args(item.value) or []):
            return item
    return None


def _remote_reference(u: UnitView, units: UnitSet) -> Optional[str]:
    """`name@digest` to ask the registry for, or None when the unit is not pinned."""
    ref, where = u.ref, u.assignment
    if ref is None or ref.digest is None or where is None:
        return None
    digest = upstream_digest(units, where.path, where.line, ref) if u.embedded else ref.digest
    return f"{ref.canonical_name}@{digest}"


def _floating_severity(u: UnitView, lock: Optional[LockView]) -> Optional[str]:
    if u.bound or u.embedded:
        return ERROR
    if lock is None:
        return WARNING
    return None if u.ref is not None and u.ref.tag_reference in lock.digests else ERROR
