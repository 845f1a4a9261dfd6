"""The lint rules on all the units of a run at once (`run_rule`): what no single unit shows.

One binding per repository (`duplicate-image`), the sources against the lock (`lock-*`,
`platform-missing` offline), the pins against their registries (`--remote`: `digest-gone`,
`platform-missing`), and in an image root what its units pull at first start (`unbound-image`).
The rules on one unit are in `bindimg.unitrules`, those on one bound-images.d entry in
`bindimg.linkrules`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Optional

from bindimg import platforms, skopeo
from bindimg.coverage import Unreadable, unbound_in_root
from bindimg.coverage import message as unbound_message
from bindimg.errors import ExternalError
from bindimg.findings import ERROR, WARNING, Finding, finding
from bindimg.quadlet import IMAGE
from bindimg.resolve import Request, ResolveError, resolve_each
from bindimg.rules import Context, UnitView, run_rule
from bindimg.units import image_unit_registry_options, provenance_tag, upstream_digest
from bindimg.unitset import UnitSet


@run_rule("duplicate-image")
def duplicate_image(views: Sequence[UnitView], ctx: Context) -> Iterator[Finding]:
    pinned: dict[str, list[UnitView]] = {}
    for u in views:
        # a drop-in's value is no second binding but a parser-disagreement
        if u.ref is not None and u.ref.digest is not None and not u.setting.from_dropin:
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
        if tag is None and ref.tag is not None:
            tag = ref.tag_reference  # `name:tag@digest`: the tag is in the value
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
                f"pinned to {pinned}, but {lock.path} locks {tag} to {locked}; run `bindimg lock` "
                f"to lock the pinned digest, or `bindimg lock --update --rewrite {tag}` to move the pin",
            )
    for tag in sorted(set(lock.digests) - used):
        yield finding(
            "lock-stale",
            lock.path,
            lock.lines.get(tag),
            f"{tag} is no longer used by any unit; run `bindimg lock` to drop it",
        )


@run_rule("digest-gone", "platform-missing")
def digest_gone(views: Sequence[UnitView], ctx: Context) -> Iterator[Finding]:
    """With --remote, ask each registry for each pinned digest (concurrently, each reference
    once); with --platform, also whether the image it serves has each target platform.

    A flattened embedded unit is pinned to a digest only its store has: it is checked by the
    upstream digest in its provenance comment. Only a registry answering it has no such
    manifest makes `digest-gone`; any other failure (TLS, refused credentials, network) says
    nothing about the pin and is an ExternalError (exit 3) naming the first unit of the image.
    """
    units, root, remote, targets = ctx.units, ctx.root, ctx.remote, ctx.targets
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
        wanted.setdefault(Request(checked, options, platforms=bool(targets)), []).append(u)
    for request, outcome in resolve_each(wanted, remote.settings, remote.progress, remote.client).items():
        if isinstance(outcome, ExternalError):
            if not (isinstance(outcome, ResolveError) and outcome.missing):
                first = wanted[request][0].assignment  # TLS, credentials, network: not the pin's fault
                if first is not None and not isinstance(outcome, skopeo.ToolError):
                    outcome.path, outcome.line = first.path, first.line
                raise outcome
            reason = outcome.message
        elif outcome.digest != request.reference.rpartition("@")[2]:
            reason = f"the registry serves other bytes ({outcome.digest}) for {request.reference}"
        else:
            offers = outcome.platforms or ()
            absent = platforms.problem(request.reference, targets, offers, outcome.media_type)
            if absent is not None:
                yield from (u.at("platform-missing", absent) for u in wanted[request])
            continue
        for u in wanted[request]:
            yield u.at("digest-gone", f"the pinned digest no longer resolves: {reason}")


@run_rule("platform-missing")
def platform_missing(views: Sequence[UnitView], ctx: Context) -> Iterator[Finding]:
    """Offline, from the lock: each unit's tag (or, when pinned, the tag its provenance comment
    names, if the lock agrees on the digest) and the platforms the lock records for it."""
    lock, units = ctx.lock, ctx.units
    if lock is None or not ctx.targets:
        return
    for u in views:
        ref, where = u.ref, u.assignment
        if ref is None or where is None:
            continue
        tag: Optional[str] = ref.tag_reference
        if ref.digest is not None:
            tag = provenance_tag(units, where.path, where.line, ref)
            if tag is None or upstream_digest(units, where.path, where.line, ref) != lock.digests.get(tag):
                continue  # nothing locked for this pin (lock-mismatch says why)
        known = lock.platforms.get(tag or "")
        absent = platforms.problem(u.value, ctx.targets, *known) if known is not None else None
        if absent is not None:
            yield u.at("platform-missing", absent)


@run_rule("unbound-image", "kube-yaml-unreadable")
def unbound_image(views: Sequence[UnitView], ctx: Context) -> Iterator[Finding]:
    """In a root, each image a unit pulls at first start, neither bound nor embedded
    (`coverage.unbound_in_root`): once per unit and image, at the line naming it; and each
    `.kube` unit's `Yaml=` file whose images cannot be known, at the line at fault."""
    if not ctx.runs:
        return  # a source tree: what is bound is decided when the image is built
    for pulled in unbound_in_root(ctx.root, ctx.units, ctx.runs, ctx.entries):
        if isinstance(pulled, Unreadable):
            severity = ERROR if pulled.podman_fails else WARNING
            yield finding("kube-yaml-unreadable", pulled.path, pulled.line, pulled.message, severity)
        else:
            yield finding("unbound-image", pulled.path, pulled.line, unbound_message(pulled))


# --- helpers -------------------------------------------------------------------------------------


def _remote_reference(u: UnitView, units: UnitSet) -> Optional[str]:
    """`name@digest` to ask the registry for, or None when the unit is not pinned."""
    ref, where = u.ref, u.assignment
    if ref is None or ref.digest is None or where is None:
        return None
    digest = upstream_digest(units, where.path, where.line, ref) if u.embedded else ref.digest
    return f"{ref.canonical_name}@{digest}"
