"""Which podman reads the units of a root: its version decides some of Quadlet's rules.

Quadlet's reading changed between releases (drop-in order in 5.6, rootless units under
/usr/share/containers/systemd/users in 6.0, the quote rule in 5.8.2). bindimg reads units as
the podman of the root will: `--podman-version X.Y` chooses; otherwise the version of the
`podman` package in the root's package database (rpm's sqlite database, then dpkg's status
file), read without running anything from the root; otherwise the newest rules.

Both databases are read inside the root (symlinks resolved in it, as everywhere), and only
read: the sqlite file is opened immutable, so no journal or lock file appears in the root.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import urllib.parse
from dataclasses import dataclass
from typing import Optional

from bindimg import fsutil
from bindimg.errors import InputError
from bindimg.rootfs import Root

Version = tuple[int, int, int]  # (major, minor, patch)
# The rules of the newest podman bindimg knows; they apply when the version is unknown.
NEWEST_RULES: Version = (6, 0, 0)

# The patch number an X.Y option stands for: above every release of the series.
ANY_PATCH = 1 << 30

OPTION = "--podman-version"
DEFAULT = "default"  # the source when no version is known: the newest rules apply
# rpm's sqlite database: /usr/lib/sysimage/rpm on Fedora and CentOS Stream 10 bootc images,
# /var/lib/rpm on CentOS Stream 9 and RHEL 9 (rpm's %_dbpath).
RPM_DATABASES = ("/usr/lib/sysimage/rpm/rpmdb.sqlite", "/var/lib/rpm/rpmdb.sqlite")
DPKG_STATUS = "/var/lib/dpkg/status"
MAX_DPKG_STATUS = 64 * 1024 * 1024  # a full Debian desktop's is a few MB

# rpm header tags (rpm lib/rpmtag.h) and the string type (rpm include/rpm/rpmtypes.h).
_RPMTAG_NAME = 1000
_RPMTAG_VERSION = 1001
_RPM_STRING_TYPE = 6

# "5.4.2", "5.6.0~rc1", "1:5.4.2+ds1-2" (dpkg: epoch, upstream version, revision).
_VERSION_RE = re.compile(r"(?:\d+:)?(\d+)\.(\d+)(?:\.(\d+))?")
# A `Package: podman` line of dpkg's status file (field names are case-insensitive).
_DPKG_PODMAN = re.compile(r"^(?i:package):[^\S\n]*podman[^\S\n]*$", re.MULTILINE)


@dataclass(frozen=True)
class Podman:
    """The podman units are read for: `version` None means unknown (the newest rules)."""

    version: Optional[Version]
    shown: Optional[str]  # the version as given or found ("5.5", "5.4.2")
    source: str  # OPTION, the database's path inside the root, or DEFAULT

    @property
    def rules(self) -> Version:
        """Whose rules apply: the version, or the newest rules when it is unknown."""
        return self.version if self.version is not None else NEWEST_RULES

    def as_json(self) -> dict[str, Optional[str]]:
        """`{"version": "5.4.2" | null, "source": ...}` for the commands' --json output."""
        return {"version": self.shown, "source": self.source}

    def describe(self) -> str:
        """The -v line saying whose rules apply."""
        if self.version is None:
            return "podman version not found in the root: newest rules"
        origin = OPTION if self.source == OPTION else f"from {self.source}"
        return f"podman {self.shown} ({origin})"


NEWEST = Podman(None, None, DEFAULT)


def parse_version(text: str) -> Optional[tuple[Version, str]]:
    """(version, its numeric text) from a package or option version string, or None."""
    found = _VERSION_RE.match(text.strip())
    if found is None:
        return None
    major, minor, patch = found.group(1), found.group(2), found.group(3)
    shown = f"{major}.{minor}" + (f".{patch}" if patch is not None else "")
    return (int(major), int(minor), int(patch or 0)), shown


def from_option(text: str) -> Podman:
    """`--podman-version X.Y[.Z]`; an InputError (exit 2) for anything else.

    X.Y stands for the newest release of that series (`ANY_PATCH`): a rule that changed in a
    patch release (the 5.8.2 quote rule) applies as it does on an up-to-date X.Y podman.
    """
    parsed = parse_version(text)
    if parsed is None or parsed[1] != text.strip():
        raise InputError(f"{OPTION} {text!r}: give MAJOR.MINOR or MAJOR.MINOR.PATCH, e.g. 5.6")
    (major, minor, patch), shown = parsed
    if shown.count(".") == 1:
        patch = ANY_PATCH
    return Podman((major, minor, patch), shown, OPTION)


def choose(option: Optional[str], root: Optional[Root]) -> Podman:
    """The option if given, else the version found in `root` (None: source units, no root)."""
    if option is not None:
        return from_option(option)
    return detect(root) if root is not None else NEWEST


def detect(root: Root) -> Podman:
    """The `podman` package's version in the root's rpm or dpkg database (NEWEST if none).

    A database that is missing, unreadable or damaged counts as no answer: the version only
    chooses between Quadlet's rules, and the newest ones are the documented default.
    """
    for inner in RPM_DATABASES:
        found = _rpm_version(root.resolve(inner))
        if found is not None:
            return _found(found, inner)
    found = dpkg_version(root.resolve(DPKG_STATUS))
    return _found(found, DPKG_STATUS) if found is not None else NEWEST


def _found(text: str, inner: str) -> Podman:
    parsed = parse_version(text)
    return Podman(parsed[0], parsed[1], inner) if parsed is not None else NEWEST


def _rpm_version(path: str) -> Optional[str]:
    """VERSION of the installed `podman` in an rpm sqlite database (rpm lib/backend/sqlite.c:
    table Packages(hnum, blob) with each package's header, index table Name(key, hnum))."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a FIFO or device is never opened
    except OSError:
        return None
    import sqlite3  # only a root with an rpm database pays for the import

    uri = f"file:{urllib.parse.quote(path)}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            rows = connection.execute(
                "SELECT p.blob FROM Packages p JOIN Name n ON n.hnum = p.hnum WHERE n.key = 'podman'"
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    for (blob,) in rows:
        tags = _header_strings(bytes(blob), (_RPMTAG_NAME, _RPMTAG_VERSION))
        if tags.get(_RPMTAG_NAME) == "podman" and _RPMTAG_VERSION in tags:
            return tags[_RPMTAG_VERSION]
    return None


def _header_strings(blob: bytes, wanted: tuple[int, ...]) -> dict[int, str]:
    """String tags of an rpm header blob as the database stores it (rpm lib/header.c):
    entry count and data size (big-endian u32), then (tag, type, offset, count) per entry,
    then the data; a string is NUL-terminated at its offset. A damaged blob gives {}."""
    if len(blob) < 8:
        return {}
    count, size = struct.unpack(">II", blob[:8])
    start = 8 + 16 * count
    if start + size > len(blob):
        return {}
    data = blob[start : start + size]
    found: dict[int, str] = {}
    for index in range(count):
        tag, kind, offset, _ = struct.unpack(">iiiI", blob[8 + 16 * index : 24 + 16 * index])
        if tag not in wanted or kind != _RPM_STRING_TYPE or not 0 <= offset < len(data):
            continue
        end = data.find(b"\0", offset)
        if end != -1:
            found[tag] = data[offset:end].decode("utf-8", "replace")
    return found


def dpkg_version(path: str) -> Optional[str]:
    """Version: of the installed `podman` paragraph in dpkg's status file `path` (deb-control(5));
    None when there is none or the file cannot be read."""
    try:
        text = fsutil.read_regular(path, MAX_DPKG_STATUS).decode("utf-8", "replace")
    except OSError:
        return None
    # Only the paragraphs naming podman are parsed: a status file has thousands (tens of ms).
    for named in _DPKG_PODMAN.finditer(text):
        start = text.rfind("\n\n", 0, named.start())
        end = text.find("\n\n", named.end())
        fields: dict[str, str] = {}
        for line in text[start + 2 if start >= 0 else 0 : end if end >= 0 else len(text)].split("\n"):
            name, colon, value = line.partition(":")
            if colon and not line[:1].isspace():
                fields[name.lower()] = value.strip()
        installed = fields.get("status", "").endswith(" installed")
        if fields.get("package") == "podman" and installed and "version" in fields:
            return fields["version"]
    return None
