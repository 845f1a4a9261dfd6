"""The lint rules on one bound-images.d entry, each as bootc walks it (`boundimages.Entry`)."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator

from bindimg.boundimages import BOUND_DIR, Entry, rust_extension
from bindimg.composefs import COMPOSEFS_ADVICE
from bindimg.errors import InputError
from bindimg.findings import ERROR, Finding, finding
from bindimg.rootfs import Root
from bindimg.rules import Context, link_rule
from bindimg.unitset import in_rootless_dir, rootless_dirs

# What to do about each way bootc fails on a bound unit (bootc's own reason comes first).
_BOOTC_ADVICE = {
    "bootc-parse-error": "write every setting on one line, without continuations",
    "missing-image": "add Image= to the unit",
    "authfile-unsupported": "remove AuthFile= (bootc pulls with /etc/ostree/auth.json)",
    "specifier": "write the image out in full",
}


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


def _named_target(root: Root, entry: Entry) -> str:
    """The host path a bound-images.d link names, its directories resolved in the root but
    not its last component: an instance or alias symlink stays the unit Quadlet runs."""
    target = os.readlink(entry.link)
    inner = target if target.startswith("/") else posixpath.join(BOUND_DIR, target)
    try:
        return root.resolve(inner, follow_last=False)
    except InputError:
        return entry.target or entry.link


@link_rule("outside-search-path")
def outside_search_path(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """An error when systemd runs the unit's image from another place than bootc reads: a unit
    shadowed by one of the same name (invariant 1) or a rootless one (bootc pulls into its
    rootful store only); a warning when nothing runs it at all."""
    root, units = ctx.root, ctx.units
    if entry.target is None or not os.path.isfile(entry.target):
        return
    inner = root.inner_path(entry.target)
    named = _named_target(root, entry)  # the unit as the link names it (a symlink kept)
    rootless = rootless_dirs(root, units.podman)
    if in_rootless_dir(entry.target, rootless) or in_rootless_dir(os.path.dirname(named), rootless):
        yield finding(
            "outside-search-path",
            entry.link,
            None,
            f"points to {inner}, a rootless Quadlet unit: its user's podman runs the image from "
            "its own store, bootc pulls it into the rootful one; bind only rootful units "
            "(/usr/share/containers/systemd)",
            ERROR,
        )
        return
    if os.path.dirname(named) in units.search_dirs:
        used = ctx.runs.get(os.path.basename(named))
    elif os.path.dirname(entry.target) in units.search_dirs:
        used = ctx.runs.get(os.path.basename(entry.target))
    elif entry.target in ctx.runs.values():
        return  # named from outside, but Quadlet runs this very file under a name of its own
    else:
        yield finding(
            "outside-search-path",
            entry.link,
            None,
            f"points to {inner}, outside the rootful Quadlet directories, so nothing runs the "
            "image bootc pulls; move the unit to /usr/share/containers/systemd",
        )
        return
    if used is not None and used != entry.target:  # None: a name Quadlet skips (cannot parse, no unit)
        yield finding(
            "outside-search-path",
            entry.link,
            None,
            f"points to {inner}, but Quadlet runs {root.inner_path(used)} (same name, higher "
            "precedence), so bootc binds another unit than systemd runs; remove one of them",
            ERROR,
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


@link_rule("composefs-ignores-bound")
def composefs_ignores_bound(entry: Entry, ctx: Context) -> Iterator[Finding]:
    """Every entry of a root bootc installs with the composefs backend (`composefs.find_uki`)."""
    if ctx.uki is not None:
        message = f"the root has a UKI ({ctx.uki}): {COMPOSEFS_ADVICE}"
        yield finding("composefs-ignores-bound", entry.link, None, message)
