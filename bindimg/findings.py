"""The finding catalogue: every rule id `lint`, `lock --check` and the reports know, and `Finding`.

Ids, default severities and summaries are the SPEC's table, in its order (SARIF lists the
rules in this order). The code of each rule is registered next to its function in
`bindimg.rules`, which refuses an id that is not catalogued here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

ERROR = "error"
WARNING = "warning"
WHOLE_FILE = 1  # the line of a finding about a whole file or a bound-images.d entry


@dataclass(frozen=True)
class Rule:
    severity: str  # the default; floating-tag's and kube-yaml-unreadable's depend on the case
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
    "platform-missing": Rule(ERROR, "A bound or embedded image has no image for a target platform"),
    "unbound-image": Rule(WARNING, "An image a unit in the root runs is neither bound nor embedded"),
    # an error: podman kube play fails at start; a warning when only bindimg cannot read it
    "kube-yaml-unreadable": Rule(ERROR, "A .kube unit's Yaml= file cannot be read: its images are unchecked"),
    "composefs-ignores-bound": Rule(ERROR, "Bound images in a root bootc installs with composefs (a UKI)"),
}


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str
    path: str
    line: int
    message: str


def finding(rule: str, path: str, line: Optional[int], message: str, severity: str = "") -> Finding:
    """A finding of a catalogued rule (KeyError for any other id) at `path:line` (1 if None)."""
    return Finding(rule, severity or RULES[rule].severity, path, line or WHOLE_FILE, message)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """In report order: path, line, id."""
    return sorted(findings, key=lambda f: (f.path, f.line, f.id))
