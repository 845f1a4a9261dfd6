"""The lint rules on one unit (`unit_rule`): both readings of its Image= and the keys around it.

The rules on all the units of a run at once (duplicates, the lock, `--remote`, coverage) are
in `bindimg.runrules`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

from bindimg import pin, reference
from bindimg.bootcini import BootcParseError, parse_bootc
from bindimg.findings import ERROR, WARNING, Finding, finding
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
    split_args,
)
from bindimg.reference import ValueKind
from bindimg.rules import Context, LockView, UnitView, unit_rule
from bindimg.store import DEFAULT_STORE
from bindimg.units import (
    UnitProblem,
    bootc_problem,
    disagreement_problem,
    is_true,
    missing_image_problem,
    quadlet_image,
)

# Why a unit bootc never reads cannot be bound as it is: no fault until someone binds it.
_BINDING_ONLY = frozenset({"specifier", "short-name", "non-canonical-name"})


def _from_problem(problem: UnitProblem) -> Finding:
    return finding(problem.kind, problem.path or "", problem.line, problem.message)


# --- rules on one unit -------------------------------------------------------------------------


@unit_rule("invalid-reference", "short-name", "specifier", "unit-reference")
def reference_problem(u: UnitView, ctx: Context) -> Iterator[Finding]:
    """Why the unit's own Image= is not a bindable reference (parsed once, in `UnitView.ref`);
    for a unit bootc never reads, only what podman cannot pull either."""
    if u.ref_problem is not None and not (u.unbound and u.ref_problem.kind in _BINDING_ONLY):
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
    if ref is None or ref.digest is None or u.unbound:
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
    if u.ref is None or u.ref.digest is not None or severity is None or u.unbound:
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


def _floating_severity(u: UnitView, lock: Optional[LockView]) -> Optional[str]:
    if u.bound or u.embedded:
        return ERROR
    if lock is None:
        return WARNING
    return None if u.ref is not None and u.ref.tag_reference in lock.digests else ERROR
