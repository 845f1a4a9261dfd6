"""`bindimg lock`: find every tag the sources use, resolve the new ones once, write the lock.

Entries already in the lock are reused without network, so locking twice in a row writes the
same bytes and asks no registry. A source that is already pinned keeps its tag in the
provenance comment `add` wrote (or in its value, `name:tag@digest`), and that tag is what
stays locked, to the digest the source is pinned to: a digest a source names is never
replaced by a look-up. Only `--update` resolves such a tag again (and `--rewrite` then moves
the pins).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Optional

from bindimg import fsutil, lockfile, pin, platforms, reference
from bindimg.commands.lint import lint_sources
from bindimg.errors import InputError
from bindimg.lockfile import LockEntry
from bindimg.platforms import Platform
from bindimg.podmanversion import NEWEST_RULES, Version
from bindimg.quadlet import CONTAINER, IMAGE, VOLUME
from bindimg.reference import ReferenceError, ValueKind
from bindimg.report import as_text
from bindimg.resolve import Request, Settings, resolve_all
from bindimg.rootfs import Root
from bindimg.rules import LockView
from bindimg.skopeo import RegistryOptions
from bindimg.units import (
    bound_value,
    image_reference,
    image_unit_registry_options,
    provenance_tag,
    source_setting,
    upstream_digest,
)
from bindimg.unitset import UnitSet, source_units
from bindimg.write import Plan, changed_files


@dataclass(frozen=True)
class Use:
    """One unit's use of a tag."""

    tag: str  # canonical tag reference: the lock key
    unit: str  # host path of the unit
    path: str  # host path of the file that supplies Image=
    line: int
    digest: Optional[str]  # the digest the source is pinned to, if it is
    options: RegistryOptions


@dataclass
class LockResult:
    """What `lock` did (or, with --dry-run, would do): `before` is the lock it found."""

    entries: dict[str, LockEntry]
    written: bool = False  # the lock file's bytes changed (would change, with --dry-run)
    problems: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    rewritten: list[str] = field(default_factory=list)
    before: dict[str, LockEntry] = field(default_factory=dict)

    def changes(self) -> list[dict[str, Optional[str]]]:
        """Each tag whose entry changed, in key order: `change` is added, updated or dropped."""
        changed: list[dict[str, Optional[str]]] = []
        for tag in sorted(set(self.before) | set(self.entries)):
            old, new = self.before.get(tag), self.entries.get(tag)
            old_digest, new_digest = old.digest if old else None, new.digest if new else None
            if old_digest != new_digest:
                kind = "added" if old is None else "dropped" if new is None else "updated"
                changed.append({"image": tag, "change": kind, "old": old_digest, "new": new_digest})
        return changed

    def change_lines(self) -> list[str]:
        """`REF: OLD -> NEW`, `REF: added NEW`, `REF: dropped (was OLD)`."""
        lines = []
        for c in self.changes():
            if c["change"] == "updated":
                lines.append(f"{c['image']}: {c['old']} -> {c['new']}")
            elif c["change"] == "added":
                lines.append(f"{c['image']}: added {c['new']}")
            else:
                lines.append(f"{c['image']}: dropped (was {c['old']})")
        return lines

    def as_json(self, lock_path: str, dry_run: bool) -> dict[str, object]:
        """The `--format json` object (docs/schemas/lock.json)."""
        return {
            "lock": lock_path,
            "dry_run": dry_run,
            "written": self.written and not dry_run,
            "images": [
                {"image": tag, "digest": e.digest, "media_type": e.media_type, "used_by": list(e.used_by)}
                for tag, e in self.entries.items()
            ],
            "changes": self.changes(),
            "resolved": self.resolved,
            "rewritten": self.rewritten,
            "problems": self.problems,
        }


def collect(
    paths: list[str], registry: RegistryOptions, podman: Version = NEWEST_RULES
) -> tuple[UnitSet, list[Use]]:
    """Every tag the units under PATHs use, with where and how to look it up."""
    units, files = source_units(paths, podman)
    host = Root("/")
    uses: list[Use] = []
    for path in files:
        setting = source_setting(units, path)
        if not setting.names_image or setting.runs_rootfs:
            continue  # a volume of another driver, a root filesystem: no image
        value = setting.value
        assignment = setting.assignment
        if not value or assignment is None:
            if setting.group == VOLUME:
                raise InputError("Driver=image needs an Image=; add one", path=path)
            raise InputError(f"no Image= in [{setting.group}]; add one", path=path)
        if setting.group in (CONTAINER, IMAGE):
            bound_value(setting)  # what `add` refuses to pin (a drop-in's Image=...) is not locked
        if reference.classify(value) is ValueKind.UNIT_REFERENCE:
            continue  # the .image unit it names is scanned itself
        ref = image_reference(value, assignment.path, assignment.line)
        options = registry
        if setting.group == IMAGE:
            options = registry.merged(image_unit_registry_options(setting.merged, host))
        tag, digest = ref.tag_reference if ref.digest is None else None, ref.digest
        if digest is not None:
            digest = upstream_digest(units, assignment.path, assignment.line, ref)
        if digest is not None:
            tag = provenance_tag(units, assignment.path, assignment.line, ref)
            if tag is None and ref.tag is not None:
                tag = ref.tag_reference  # `name:tag@digest` as the user wrote it
            if tag is None:
                continue  # pinned with no tag to remember: nothing to lock
        assert tag is not None
        uses.append(Use(tag, path, assignment.path, assignment.line, digest, options))
    return units, uses


def run(
    arguments: list[str],
    lock_path: str,
    *,
    registry: RegistryOptions,
    settings: Settings,
    update: bool = False,
    check: bool = False,
    rewrite: bool = False,
    targets: Sequence[Platform] = (),
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _: None,
    podman: Version = NEWEST_RULES,
) -> LockResult:
    """Lock (or with `check`, verify offline) the tags used under the paths among `arguments`
    (default: `.`), read as the podman of version `podman` reads them. With `update`, an
    argument that is not an existing path is a reference to re-resolve; with none of those,
    every tag is re-resolved. With `targets` (`--platform`), each image must serve those
    platforms: an InputError, nothing written (`check`: a finding). `dry_run`: resolve, write
    nothing."""
    refs = [a for a in arguments if not os.path.lexists(a)] if update else []
    paths = [a for a in arguments if a not in refs] or ["."]
    if check and not os.path.exists(lock_path):
        raise InputError(
            "no such lock file; run `bindimg lock` first, or name it with --lock", path=lock_path
        )
    return _lock(
        paths,
        lock_path,
        registry,
        settings,
        refs if update else None,
        check,
        rewrite,
        targets,
        dry_run,
        progress,
        podman,
    )


def _lock(
    paths: list[str],
    lock_path: str,
    registry: RegistryOptions,
    settings: Settings,
    update: Optional[list[str]],
    check: bool,
    rewrite: bool,
    targets: Sequence[Platform],
    dry_run: bool,
    progress: Callable[[str], None],
    podman: Version,
) -> LockResult:
    units, uses = collect(paths, registry, podman)
    existing = lockfile.load(lock_path) if os.path.exists(lock_path) else {}
    by_tag: dict[str, list[Use]] = {}
    for use in uses:
        by_tag.setdefault(use.tag, []).append(use)
    lock_dir = os.path.dirname(os.path.abspath(lock_path))
    if check:
        view = LockView.load(lock_path) if existing else LockView(lock_path, {})
        findings = [
            f
            for f in lint_sources(paths, lock=view, targets=targets, podman=podman)
            if f.id.startswith("lock-") or f.id == "platform-missing"
        ]
        return LockResult(dict(existing), problems=as_text(findings).splitlines(), before=existing)
    wanted = _update_set(update, by_tag) if update is not None else set()

    pins = {tag: _pinned_digest(tag, tag_uses) for tag, tag_uses in by_tag.items()}

    def stale(tag: str) -> bool:
        if update is not None and (not wanted or tag in wanted):
            return True
        return pins[tag] is None and tag not in existing

    requests = {tag: Request(tag, u[0].options, platforms=True) for tag, u in by_tag.items() if stale(tag)}
    where = {request: (by_tag[tag][0].path, by_tag[tag][0].line) for tag, request in requests.items()}
    resolved = resolve_all(requests.values(), settings, progress, where=where)
    entries: dict[str, LockEntry] = {}
    for tag, tag_uses in by_tag.items():
        used_by = tuple(sorted({_relative(u.unit, lock_dir) for u in tag_uses}))
        pinned, old = pins[tag], existing.get(tag)
        if tag in requests:
            result = resolved[requests[tag]]
            entries[tag] = LockEntry(result.digest, result.media_type, used_by, result.platforms)
        elif pinned is not None:
            # A digest the user wrote is not fetched: what the lock knew of it stays, else unknown.
            known = old if old is not None and old.digest == pinned else None
            if known is not None:
                entries[tag] = LockEntry(pinned, known.media_type, used_by, known.platforms)
            else:
                entries[tag] = LockEntry(pinned, "", used_by)
        else:
            assert old is not None  # not stale: in the lock
            entries[tag] = LockEntry(old.digest, old.media_type, used_by, old.platforms)
        _check_platforms(tag, entries[tag], targets, tag_uses[0])
    outcome = LockResult(entries, resolved=sorted(requests), before=existing)
    files = _rewrite_plan(units, uses, entries).files if rewrite else {}
    outcome.rewritten = sorted(files)
    change = lockfile.change(lock_path, entries)
    if change is not None:  # written together with the sources: both or neither
        files[os.path.abspath(lock_path)] = change
    outcome.written = change is not None
    if not dry_run:
        fsutil.apply_changes(files, [], make_dirs=False)  # a lock's directory is the user's to make
    return outcome


def _check_platforms(tag: str, entry: LockEntry, targets: Sequence[Platform], use: Use) -> None:
    """An InputError when the locked image lacks a target platform (an entry from before
    bindimg recorded platforms passes: `lock --update` fills them in)."""
    if entry.platforms is None:
        return
    absent = platforms.problem(tag, targets, entry.platforms, entry.media_type)
    if absent is not None:
        raise InputError(absent, path=use.path, line=use.line)


def _pinned_digest(tag: str, uses: list[Use]) -> Optional[str]:
    """The digest the pinned sources of `tag` agree on (None: no source is pinned); an
    InputError when they name two, since one lock entry cannot hold both."""
    pinned = sorted({u.digest for u in uses if u.digest is not None})
    if len(pinned) > 1:
        first = next(u for u in uses if u.digest == pinned[1])
        raise InputError(
            f"{tag} is pinned to {len(pinned)} digests ({', '.join(d[:19] + '...' for d in pinned)}) by "
            "the units that use it; pin them to one (or run `bindimg lock --update --rewrite`)",
            path=first.path,
            line=first.line,
        )
    return pinned[0] if pinned else None


def _update_set(update: list[str], by_tag: dict[str, list[Use]]) -> set[str]:
    """The tags `--update REF...` names (each must be used by some unit); empty means all."""
    wanted: set[str] = set()
    for name in update:
        try:
            tag = reference.parse(name).tag_reference
        except ReferenceError as error:
            raise InputError(f"--update {name}: not an image reference ({error})") from None
        if tag not in by_tag:
            raise InputError(f"--update {name}: no unit uses {tag}; nothing to update")
        wanted.add(tag)
    return wanted


def _relative(path: str, start: str) -> str:
    return os.path.relpath(path, start).replace(os.sep, posixpath.sep)


def _rewrite_plan(units: UnitSet, uses: list[Use], entries: dict[str, LockEntry]) -> Plan:
    """The `add` edit (pin and provenance comment, no link, no storage argument) in place."""
    texts: dict[str, str] = {}
    for use in uses:
        setting = source_setting(units, use.unit)
        source = setting.source
        value = bound_value(setting)
        ref = image_reference(value, use.path, use.line)
        locked = entries[use.tag].digest
        if ref.digest is not None and use.digest != ref.digest:  # embedded, flattened
            if use.digest == locked:
                continue
            raise InputError(
                f"{use.tag} is embedded flattened and its lock entry moved; "
                "run `bindimg add --embed` to embed and pin the new image",
                path=use.path,
                line=use.line,
            )
        pinned = ref.pinned(locked)
        if ref.digest is None:
            origin = value
        elif ref.digest != locked:  # `--update` moved the tag: the comment names the tag now
            origin = use.tag
        else:
            origin = pin.provenance_of(source.text, use.line) or value
        texts[use.path], _ = pin.pin(texts.get(use.path, source.text), use.line, pinned, origin)
    return Plan(changed_files(texts), [], [])
