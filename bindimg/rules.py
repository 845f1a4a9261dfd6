"""The lint rule registry and what rules look at: `UnitView`, `Context`, `LockView`, `Remote`.

A rule is registered by the decorator of its kind (`link_rule`: one bound-images.d entry,
`unit_rule`: one unit, `run_rule`: all the units of a run at once) with the ids it yields,
which must be in the catalogue (`bindimg.findings.RULES`): an id cannot drift from its code.
The rules themselves are in `bindimg.linkrules`, `bindimg.unitrules` and `bindimg.runrules`;
the runner (`bindimg.commands.lint`) calls every rule of a kind, in registration order, with
the same `Context`. A finding names the file and the physical line of the value in the file that
supplies it; a finding about a whole file or a link uses line 1 (`WHOLE_FILE`), so that
every output format, SARIF included, has a real line to point at.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, TypeVar

from bindimg.boundimages import Entry
from bindimg.errors import InputError
from bindimg.findings import RULES, WHOLE_FILE, Finding, finding
from bindimg.platforms import Platform
from bindimg.quadlet import CONTAINER, IMAGE, Assignment, QuadletParseError
from bindimg.reference import Reference
from bindimg.registry import Registry, Skopeo
from bindimg.resolve import Settings
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.units import ImageSetting, UnitProblem
from bindimg.unitset import UnitSet


@dataclass(frozen=True)
class LockView:
    """What lint needs of a lock: tag reference -> digest, and the line of each entry."""

    path: str
    digests: Mapping[str, str]
    lines: Mapping[str, int] = field(default_factory=dict)
    # tag -> (platforms, media type) of the entries that record their platforms
    platforms: Mapping[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> LockView:
        """Read a lock file with `lockfile.load` (its errors are InputErrors: exit 2)."""
        from bindimg import lockfile  # tomlkit: only a lint given --lock reads TOML

        entries = lockfile.load(path)
        with open(path, encoding="utf-8") as handle:
            text = handle.read().split("\n")
        headers: dict[str, int] = {}  # one pass: a lock may hold thousands of entries
        for number, line in enumerate(text, 1):
            start, end = line.find('"'), line.rfind('"]')
            if line.lstrip().startswith("[images.") and 0 <= start < end:
                headers.setdefault(line[start + 1 : end], number)
        lines = {key: headers.get(key, WHOLE_FILE) for key in entries}
        offers = {
            key: (entry.platforms, entry.media_type)
            for key, entry in entries.items()
            if entry.platforms is not None
        }
        return cls(path, {key: entry.digest for key, entry in entries.items()}, lines, offers)


@dataclass(frozen=True)
class Remote:
    """`--remote`: how to reach the registries that serve the pinned digests."""

    registry: RegistryOptions = field(default_factory=RegistryOptions)
    settings: Settings = field(default_factory=Settings)
    progress: Callable[[str], None] = lambda _: None
    client: Registry = field(default_factory=Skopeo)  # who asks them (a fake in unit tests)


@dataclass
class UnitView:
    """One unit under lint: both readings of it, and how the image root uses it."""

    name: str
    setting: ImageSetting
    bound: bool = False  # linked from bound-images.d
    candidate: bool = False  # a source `add` would bind: held to bootc's reading too
    embedded: bool = False  # its GlobalArgs add the embedded store
    companion: bool = False  # a .container whose Image= names a linked .image
    unbound: bool = False  # in a root, neither linked, embedded nor a companion: bootc never reads it
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
    # file name -> the unit Quadlet uses (in a root; `.kube` and `.artifact` units included)
    runs: Mapping[str, str] = field(default_factory=dict)
    entries: Sequence[Entry] = ()  # a root's bound-images.d, as bootc walks it
    uki: Optional[str] = None  # a root's UKI: bootc installs it with the composefs backend
    targets: Sequence[Platform] = ()  # --platform: the platforms the OS image is built for


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
