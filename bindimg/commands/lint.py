"""`bindimg lint`: run every registered rule over a source tree or an image root.

Two entry points. `lint_sources` checks a source tree of units (held to what `add` would
accept, since they are meant to be bound). `lint_root` checks an image root the way bootc
and Podman Quadlet will read it: bound-images.d exactly as bootc walks it, every unit in the
rootful Quadlet directories with its drop-ins, and the embedded store. The rules themselves,
and the ids each reports, are in `bindimg.rules`; the catalogue in `bindimg.findings`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Optional

import bindimg.linkrules  # importing a rule module registers its rules
import bindimg.runrules
import bindimg.unitrules  # noqa: F401
from bindimg import reference, storageconf
from bindimg.boundimages import Entry, scan
from bindimg.composefs import find_uki
from bindimg.coverage import adds_embedded_store, quadlet_units
from bindimg.errors import ExternalError, InputError
from bindimg.findings import Finding, finding, sort_findings
from bindimg.platforms import Platform
from bindimg.podmanversion import NEWEST_RULES, Version
from bindimg.quadlet import (
    CONTAINER,
    IMAGE,
    KEY_GLOBAL_ARGS,
    SOURCE_EXTENSIONS,
    QuadletParseError,
    UnitDecodeError,
)
from bindimg.reference import ValueKind
from bindimg.rootfs import Display, Root, cwd_display, root_display
from bindimg.rules import (
    LINK_RULES,
    REPORTED_BY,
    RUN_RULES,
    UNIT_RULES,
    Context,
    LockView,
    Remote,
    UnitView,
    parse_error,
)
from bindimg.store import DEFAULT_STORE, store_images
from bindimg.units import UnitProblem, image_reference, image_setting
from bindimg.unitset import (
    UnitSet,
    dropin_dir_names,
    parsed_dropins,
    search_dirs,
    source_units,
)


def _is_unit_name(path: str) -> bool:
    """A unit Quadlet and lint know by its extension (`.image` alone is a dotfile, no unit)."""
    return posixpath.splitext(path)[1] in SOURCE_EXTENSIONS


def _parse_reference(u: UnitView) -> None:
    """Parse the unit's own Image= once; why it is not bindable is `ref_problem` (a finding)."""
    where = u.assignment
    kind = reference.classify(u.value)
    if where is None or kind in (ValueKind.EMPTY, ValueKind.UNIT_REFERENCE):
        return
    if kind in (ValueKind.TRANSPORT, ValueKind.IMAGE_ID) and not (u.bound or u.embedded):
        return  # podman runs it; there is nothing to pin
    try:
        u.ref = image_reference(u.value, where.path, where.line)
    except UnitProblem as problem:
        u.ref_problem = problem


def _is_parse_failure(error: InputError) -> bool:
    return isinstance(error, (QuadletParseError, UnitDecodeError))


class _Linter:
    """State of one lint run: the units, the views built so far, the findings."""

    def __init__(self, units: UnitSet, root: Root) -> None:
        self.units = units
        self.root = root
        self.views: list[UnitView] = []
        self.findings: list[Finding] = []

    def view(
        self, path: str, *, name: Optional[str] = None, bound: bool = False, source_tree: bool = False
    ) -> Optional[UnitView]:
        """Parse a unit and its drop-ins (each failure a parse-error, as Quadlet reports it)."""
        try:
            source = self.units.load(path)
        except InputError as error:
            if not _is_parse_failure(error):
                raise
            self.findings.append(parse_error(error, path))
            return None
        name = name or os.path.basename(path)
        dropins, errors = parsed_dropins(self.units, name)
        for failure in errors:
            if not _is_parse_failure(failure):
                raise failure
            self.findings.append(parse_error(failure, path))
        setting = image_setting(self.units, source, name, dropins)
        if not setting.names_image:
            return None  # only Driver=image volumes name an image
        u = UnitView(name, setting, bound=bound)
        u.embedded = adds_embedded_store(setting.merged.lookup_all_args(setting.group, KEY_GLOBAL_ARGS))
        kind = reference.classify(u.value)
        u.candidate = (
            source_tree
            and setting.group in (CONTAINER, IMAGE)
            and kind not in (ValueKind.UNIT_REFERENCE, ValueKind.TRANSPORT, ValueKind.IMAGE_ID)
            and not setting.runs_rootfs
        )
        _parse_reference(u)
        self.views.append(u)
        return u

    def check(self, ctx: Context, bound_views: list[UnitView], display: Display) -> list[Finding]:
        """Every unit rule on every unit, then every run rule on the bound units."""
        for u in self.views:
            for unit_rule in UNIT_RULES:
                self.findings.extend(unit_rule(u, ctx))
        for run_rule in RUN_RULES:
            try:
                self.findings.extend(run_rule(bound_views, ctx))
            except ExternalError as error:  # --remote: named as the findings would be
                if error.path is not None:
                    error.path = display(error.path)
                raise
        unique: dict[tuple[str, str, int], Finding] = {}
        for item in self.findings:  # one finding per rule and line: the first (most precise) wins
            unique.setdefault((item.id, item.path, item.line), replace(item, path=display(item.path)))
        return sort_findings(unique.values())


def lint(
    paths: list[str],
    *,
    root: Optional[str] = None,
    lock_path: Optional[str] = None,
    remote: Optional[Remote] = None,
    targets: Sequence[Platform] = (),
    podman: Version = NEWEST_RULES,
) -> list[Finding]:
    """`bindimg lint`: the image root `root`, or else the units under `paths` (checked against
    the lock file `lock_path` if given), read as the podman of version `podman` reads them;
    `targets`: the platforms the OS image is built for (`--platform`). Raises InputError for
    what cannot be read at all, and for `targets` with nowhere to learn the platforms from:
    a root has no lock, so it needs `remote`; sources need a lock or `remote` (else `--platform`
    would check nothing, silently)."""
    if root is not None:
        if targets and remote is None:
            raise InputError(
                "--platform with --root needs --remote: an image root has no lock to read the "
                "platforms from; add --remote"
            )
        return lint_root(Root(root), root, remote, targets, podman)
    if targets and remote is None and lock_path is None:
        raise InputError(
            "--platform needs the images' platforms: add --lock FILE (read from the lock, offline) "
            "or --remote (asked of the registries)"
        )
    lock = LockView.load(lock_path) if lock_path is not None else None
    return lint_sources(paths, lock, remote, targets, podman)


def lint_sources(
    paths: list[str],
    lock: Optional[LockView] = None,
    remote: Optional[Remote] = None,
    targets: Sequence[Platform] = (),
    podman: Version = NEWEST_RULES,
) -> list[Finding]:
    """Lint the units under PATHs (files or directories; a drop-in `.conf` means its units)."""
    expanded = _units_of_dropins(paths)
    units, files = source_units(expanded, podman)
    named = {os.path.abspath(p) for p in expanded}
    linter = _Linter(units, Root("/"))
    for path in files:
        if _is_unit_name(path):
            linter.view(path, source_tree=True)
        elif path in named:
            raise InputError("not a .container, .image or .volume unit, nor a drop-in", path=path)
    ctx = Context(units, linter.root, lock=lock, remote=remote, targets=targets)
    return linter.check(ctx, linter.views, cwd_display)


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


def lint_root(
    root: Root,
    shown: Optional[str] = None,
    remote: Optional[Remote] = None,
    targets: Sequence[Platform] = (),
    podman: Version = NEWEST_RULES,
) -> list[Finding]:
    """Lint an image root as bootc and the Podman Quadlet of version `podman` will read it
    (`shown`: the root as the user wrote it, for the paths in findings)."""
    units = UnitSet(search_dirs(root, podman=podman), root, podman)
    linter = _Linter(units, root)
    runs, failures = quadlet_units(units)
    linter.findings.extend(parse_error(error, error.path or "") for error in failures)
    entries = scan(root)
    links = Context(units, root, runs=runs, uki=find_uki(root))
    linked: dict[str, list[Entry]] = {}
    for entry in entries:
        for link_rule in LINK_RULES:
            linter.findings.extend(link_rule(entry, links))
        if entry.target is not None and os.path.isfile(entry.target):
            linked.setdefault(entry.target, []).append(entry)
    # Every name Quadlet runs a file by (an instance or alias symlink is a unit of its own, with
    # its own drop-ins) is held to what bootc reads from that file.
    for name, path in runs.items():
        if _is_unit_name(name):
            linter.view(path, name=name, bound=path in linked)
    named_files = set(runs.values())
    for path in linked:
        if path not in named_files and _is_unit_name(path):
            linter.view(path, bound=True)
    for u in linter.views:
        named = units.find(u.value) if reference.classify(u.value) is ValueKind.UNIT_REFERENCE else None
        u.companion = u.group == CONTAINER and named in linked
        u.unbound = not (u.bound or u.embedded or u.companion)
    embedded = [u for u in linter.views if u.embedded]
    stored = set(store_images(root)) if embedded else set()
    ctx = Context(units, root, remote=remote, stored=stored, runs=runs, entries=entries, targets=targets)
    if embedded:
        linter.findings.extend(_storage_conf_without_store(root))
    bound_views = [u for u in linter.views if u.bound or u.embedded]
    return linter.check(ctx, bound_views, root_display(root, shown or root.host))


def _storage_conf_without_store(root: Root) -> Iterator[Finding]:
    """`storage-conf-without-store`: Podman <= 5 reads only the first storage.conf found, so
    one in /etc hides the vendor's (and Podman 6 reads it before the drop-ins: a list it sets
    is the base they append to)."""
    listed = storageconf.main_lists(root, DEFAULT_STORE)
    if listed is not None and not listed[0]:
        yield finding(
            "storage-conf-without-store",
            root.resolve(storageconf.MAIN),
            listed[1],
            f"does not list the embedded store {DEFAULT_STORE} in additionalimagestores: podman "
            "outside the units (whose GlobalArgs= name it) will not see its images; add it there",
        )


# reported by the runner for the root as a whole
REPORTED_BY["storage-conf-without-store"] = [_storage_conf_without_store.__name__]

