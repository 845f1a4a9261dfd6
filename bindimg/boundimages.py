"""`/usr/lib/bootc/bound-images.d`: the symlinks that make bootc pull an image, both ways.

The write side (`plan_link`): bootc reads every entry as a symlink to a `.image` or
`.container` unit, names taken from the link itself; a regular file there makes every install
and upgrade fail. The read side (`scan`) is a port of bootc's `query_bound_images`
(crates/lib/src/boundimage.rs): it walks the directory in readdir order, refuses any entry
that is not a symlink, reads the target with RESOLVE_IN_ROOT, parses it with tini *before*
looking at the extension, takes the extension from the link's own name, and stops the whole
operation at the first bad entry. `scan` records each entry's first failure instead of
stopping, with bootc's own words, so that `list --root` can fail where bootc fails and
`lint --root` can report every entry at once.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass
from typing import Optional

from bindimg import fsutil
from bindimg.bootcini import BootcParseError, BootcValue, parse_bootc
from bindimg.errors import InputError
from bindimg.quadlet import CONTAINER, IMAGE, KEY_AUTH_FILE, KEY_IMAGE
from bindimg.rootfs import Root
from bindimg.unitset import MAX_UNIT_BYTES

BOUND_DIR = "/usr/lib/bootc/bound-images.d"
BOUND_EXTENSIONS = (".image", ".container")


@dataclass(frozen=True)
class Link:
    path: str  # host path of the link
    target: str  # absolute path inside the root
    exists: bool  # already there, pointing at the same unit


def plan_link(root: Root, unit_inner: str) -> Link:
    """The link for a unit, or an InputError if another entry already takes its name."""
    name = posixpath.basename(unit_inner)
    if posixpath.splitext(name)[1] not in BOUND_EXTENSIONS:
        raise InputError("only .image and .container units can be bound", path=unit_inner)
    path = os.path.join(root.resolve(BOUND_DIR), name)
    if not os.path.lexists(path):
        return Link(path, unit_inner, exists=False)
    if not os.path.islink(path):
        raise InputError("exists and is not a symlink (bootc refuses it); remove it", path=path)
    current = os.readlink(path)
    if current == unit_inner:
        return Link(path, unit_inner, exists=True)
    base = current if current.startswith("/") else posixpath.join(BOUND_DIR, current)
    if root.resolve(base) == root.resolve(unit_inner):
        return Link(path, current, exists=True)
    raise InputError(
        f"already links to {current}, not to {unit_inner}; remove the link or bind the unit it names",
        path=path,
    )


# --- reading, as bootc does ------------------------------------------------------------------

BOUND_REL = BOUND_DIR.lstrip("/")  # bootc names paths relative to the root
QUERY_CONTEXT = "Querying bound images"
_GROUPS = {"image": IMAGE, "container": CONTAINER}

# Rust's io::Error Display for the errors read_to_string can meet on a bad link.
_OS_ERRORS = {
    errno.ENOENT: "No such file or directory (os error 2)",
    errno.ENOTDIR: "Not a directory (os error 20)",
    errno.EISDIR: "Is a directory (os error 21)",
    errno.ELOOP: "Too many levels of symbolic links (os error 40)",
}


@dataclass(frozen=True)
class Failure:
    """Why bootc fails on one entry: `kind` is the lint finding id, `reason` bootc's message."""

    kind: str
    reason: str  # bootc's error chain below the outermost "Querying bound images" context
    path: str  # host path it is about: the link itself, or the unit it points to
    line: Optional[int] = None

    @property
    def bootc_message(self) -> str:
        return f"{QUERY_CONTEXT}: {self.reason}"


@dataclass(frozen=True)
class Entry:
    """One bound-images.d entry and what bootc makes of it."""

    name: str  # the link's own name (undecodable bytes surrogate-escaped)
    link: str  # host path of the entry
    target: Optional[str]  # host path the link resolves to inside the root (may not exist)
    image: Optional[BootcValue]  # the image bootc binds (`%%` unescaped), when it gets that far
    failure: Optional[Failure]


def rust_extension(name: str) -> Optional[str]:
    """`Path::extension` as Rust defines it: a dotfile such as `.image` has none."""
    before, dot, after = name.rpartition(".")
    if not dot or not before or name == "..":
        return None
    return after


def scan(root: Root) -> list[Entry]:
    """Every entry in readdir order (bootc's order: it sorts nothing); no entry raises.

    A missing directory is an empty list, as in bootc. An InputError only when the directory
    or a target cannot be read at all (permissions), which is unreadable input, not a finding.
    """
    directory = root.resolve(BOUND_DIR)
    try:
        with os.scandir(directory) as listing:
            dirents = list(listing)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise InputError(f"cannot read bound-images.d: {error.strerror}", path=directory) from None
    return [_entry(root, dirent) for dirent in dirents]


def _entry(root: Root, dirent: os.DirEntry[str]) -> Entry:
    name, link = dirent.name, dirent.path
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(name).decode("ascii", "backslashreplace")
        reason = f'Invalid non-UTF8 filename: "{raw}" in {BOUND_REL}'
        return Entry(name, link, None, None, Failure("bad-extension", reason, link))
    if not dirent.is_symlink():
        return Entry(name, link, None, None, Failure("not-a-symlink", f"Not a symlink: {name}", link))
    try:
        target = root.resolve(f"{BOUND_DIR}/{name}")
    except InputError:  # a symlink loop
        return Entry(name, link, None, None, Failure("dangling-link", _OS_ERRORS[errno.ELOOP], link))
    text, unreadable = _read(target, link)
    if text is None:
        return Entry(name, link, target, None, unreadable)
    image, failure = _parse(name, text, target, link)
    return Entry(name, link, target, image, failure)


def _read(target: str, link: str) -> tuple[Optional[str], Optional[Failure]]:
    """The target as Rust's read_to_string sees it: bytes, then strict UTF-8.

    A FIFO or device is refused unread (bootc would block on it or read forever): that is
    unreadable input, not something to report as a finding.
    """
    try:
        data = fsutil.read_regular(target, MAX_UNIT_BYTES)
    except fsutil.NotRegularFileError as error:
        if error.kind == "a directory":
            return None, Failure("dangling-link", _OS_ERRORS[errno.EISDIR], link)
        raise InputError(f"is {error.kind}, not a unit file; make it a regular file", path=target) from None
    except fsutil.FileTooLargeError:
        raise InputError("is too large for a unit file", path=target) from None
    except OSError as error:
        if error.errno in _OS_ERRORS:
            return None, Failure("dangling-link", _OS_ERRORS[error.errno], link)
        raise InputError(f"cannot read: {error.strerror}", path=target) from None
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return None, Failure("bootc-parse-error", "stream did not contain valid UTF-8", target, line)


def _parse(name: str, text: str, target: str, link: str) -> tuple[Optional[BootcValue], Optional[Failure]]:
    try:
        document = parse_bootc(text, target)
    except BootcParseError as error:
        return None, Failure("bootc-parse-error", f"Parse to ini: {error.message}", target, error.line)
    group = _GROUPS.get(rust_extension(name) or "")
    if group is None:
        return None, Failure("bad-extension", f"Invalid file extension: {name}", link)
    context = f"Parsing {BOUND_REL}/{name}"
    section = document.get(group, {})
    image = section.get(KEY_IMAGE)
    if image is None:
        return None, Failure("missing-image", f"{context}: Missing Image field", target)
    if group == IMAGE and KEY_AUTH_FILE in section:
        reason = f"{context}: AuthFile is not supported by bound bootc images"
        return None, Failure("authfile-unsupported", reason, target, section[KEY_AUTH_FILE].line)
    unescaped, problem = spec_value(image.value)
    if problem is not None:
        reason = f"{context}: Invalid image value: {problem}"
        return None, Failure("specifier", reason, target, image.line)
    return BootcValue(unescaped, image.line), None


def spec_value(value: str) -> tuple[str, Optional[str]]:
    """bootc's `parse_spec_value`: `%%` becomes `%`, any other `%` is refused (and why)."""
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "%":
            out.append(char)
            continue
        following = next(chars, None)
        if following is None:
            return "", "Unterminated %"
        if following != "%":
            return "", f"Systemd specifiers are not supported by bound bootc images: {value}"
        out.append("%")
    return "".join(out), None
