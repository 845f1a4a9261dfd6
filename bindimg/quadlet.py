"""Read Quadlet unit files exactly as Podman Quadlet does; the Quadlet vocabulary, named once.

Quadlet has its own line parser (podman ``pkg/systemd/parser``), which is neither systemd's nor
a generic INI reader: continuations join with nothing, blank and comment lines inside a
continuation are skipped, there are no inline comments, and ``Lookup`` strips one ``"…"`` pair.
We mirror podman >= 5.4; where later releases read units differently, the rules of the podman
version a unit is read for apply (`bindimg.podmanversion`, newest by default), so that bindimg pins the
image systemd will really run. tests/test_generators.py proves this reading against the real
generators of podman 5.4.2 and 5.8.x.
The byte-exact edits of unit files are in `bindimg.pin`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Optional, Sequence

from bindimg.errors import InputError, excerpt
from bindimg.podmanversion import NEWEST_RULES, Version

# The vocabulary of Quadlet units, named once (podman pkg/systemd/quadlet/quadlet.go: the
# groups and keys bindimg reads; every other module imports these, never spells them).
CONTAINER = "Container"
IMAGE = "Image"
VOLUME = "Volume"
GROUP_OF_EXTENSION = {".container": CONTAINER, ".image": IMAGE, ".volume": VOLUME}
SOURCE_EXTENSIONS = tuple(GROUP_OF_EXTENSION)  # the units that can name an image
KEY_IMAGE = "Image"
KEY_GLOBAL_ARGS = "GlobalArgs"
KEY_PULL = "Pull"
KEY_POLICY = "Policy"
KEY_AUTH_FILE = "AuthFile"
KEY_ALL_TAGS = "AllTags"
KEY_IMAGE_TAG = "ImageTag"
KEY_AUTO_UPDATE = "AutoUpdate"
KEY_ROOTFS = "Rootfs"
KEY_LABEL = "Label"
KEY_DRIVER = "Driver"
KEY_TLS_VERIFY = "TLSVerify"
KEY_CERT_DIR = "CertDir"
KEY_CREDS = "Creds"
# Units that make podman pull an image without bootc ever binding it (the delivery chain).
ARTIFACT = "Artifact"
KUBE = "Kube"
KEY_MOUNT = "Mount"
KEY_ARTIFACT = "Artifact"
KEY_YAML = "Yaml"

# Go's unicode.IsSpace, which strings.TrimSpace and TrimRightFunc use. Python's default
# str.strip() would also strip \x1c-\x1f, which Go keeps.
QUADLET_WS = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

# Around "=" Quadlet tests single bytes with unicode.IsSpace; in valid UTF-8 the bytes 0x85 and
# 0xA0 are never a character of their own, so only these ASCII ones can match a whole character.
KV_WS = "\t\n\v\f\r "

_BOM = b"\xef\xbb\xbf"

# 5.8.2 (podman #28409): Lookup strips one surrounding "..." pair; before, every leading and
# trailing '"' (strings.Trim), even unmatched ones.
LOOKUP_QUOTE_PAIR: Version = (5, 8, 2)


# A line Quadlet cannot read is echoed in its error, unless it may carry credentials (a
# `Creds=` with a typo in place of `=` is still a password).
_SECRET_HINTS = ("creds", "password", "passwd", "secret", "token", "auth")


def _shown(line: str) -> str:
    if any(hint in line.lower() for hint in _SECRET_HINTS):
        return "(not shown: it may hold credentials)"
    return excerpt(line)


# Keys whose value is a credential (podman's `Creds=` of .image units: USER:PASSWORD).
_CREDENTIAL_KEYS = frozenset({"Creds"})


def redact_credentials(line: str) -> str:
    """`line` with the value of a credential key (`Creds=user:pass`) replaced by `***`: for
    output that shows unit lines (a diff's context)."""
    key, sep, _ = line.partition("=")
    if not sep or key.strip(QUADLET_WS) not in _CREDENTIAL_KEYS:
        return line
    ending = line[len(line.rstrip("\r\n")) :]
    return f"{key}=***{ending}"


class UnitDecodeError(InputError):
    """The file is not plain UTF-8 text, so it cannot be parsed or edited byte-exactly."""


class QuadletParseError(InputError):
    """Quadlet would reject the whole file; the message is Quadlet's own wording."""


def decode_unit(data: bytes, path: str) -> str:
    """Decode strictly so that re-encoding any unedited part gives back the exact bytes.

    Quadlet itself accepts invalid UTF-8 and fails on a BOM later; we refuse all three up front
    with a message that says what to fix.
    """
    if data.startswith(_BOM):
        raise UnitDecodeError(
            "starts with a UTF-8 byte-order mark; save it without BOM", path=path, line=1
        )
    nul = data.find(b"\x00")
    if nul != -1:
        raise UnitDecodeError(
            "contains a NUL byte; not a text unit file", path=path, line=_line_of(data, nul)
        )
    try:
        return data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise UnitDecodeError(
            f"is not valid UTF-8 (byte 0x{bad:02x}); save it as UTF-8",
            path=path,
            line=_line_of(data, exc.start),
        ) from None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


@dataclass(frozen=True)
class Assignment:
    """One ``key=value`` as Quadlet stores it, plus where it came from for editing and messages."""

    path: str
    group: str
    key: str
    value: str
    line: int
    end_line: int


@dataclass
class UnitFile:
    """A parsed unit: groups in first-seen order, repeated groups merged like Quadlet does."""

    path: str
    groups: dict[str, list[Assignment]] = field(default_factory=dict)
    podman: Version = NEWEST_RULES  # whose Lookup rule applies

    def lookup_last(self, group: str, key: str) -> Optional[Assignment]:
        """The assignment Quadlet's LookupLast would read: the last one, exact-case match."""
        for assignment in reversed(self.groups.get(group, [])):
            if assignment.key == key:
                return assignment
        return None

    def lookup(self, group: str, key: str) -> Optional[str]:
        """Quadlet ``Lookup`` (used for ``Image=``): last value, right-trimmed, one ``"…"`` off.

        That is the 5.8.2+ rule; for an older `podman`, every leading/trailing ``"`` is stripped
        (podman pkg/systemd/parser/unitfile.go ``Lookup``).
        """
        assignment = self.lookup_last(group, key)
        if assignment is None:
            return None
        value = assignment.value.rstrip(QUADLET_WS)
        if self.podman < LOOKUP_QUOTE_PAIR:
            return value.strip('"')
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        return value

    def lookup_all(self, group: str, key: str) -> list[Assignment]:
        """The assignments of Quadlet's ``LookupAll``, in order: an empty value clears those before."""
        found: list[Assignment] = []
        for assignment in self.groups.get(group, []):
            if assignment.key == key:
                found = [] if assignment.value == "" else [*found, assignment]
        return found

    def lookup_all_args(self, group: str, key: str) -> list[str]:
        """Quadlet ``LookupAllArgs`` (``GlobalArgs=``, ``PodmanArgs=``, ``Exec=``, ``Mount=``):
        ``lookup_all``, each value split systemd-style (one that does not split is skipped)."""
        args: list[str] = []
        for assignment in self.lookup_all(group, key):
            words = split_args(assignment.value)
            if words is not None:
                args.extend(words)
        return args

    def merged(self, dropins: Sequence[UnitFile]) -> UnitFile:
        """Quadlet ``Merge``: drop-ins' groups appended in order, so later drop-ins win lookups."""
        result = UnitFile(self.path, {name: list(items) for name, items in self.groups.items()}, self.podman)
        for dropin in dropins:
            for name, items in dropin.groups.items():
                result.groups.setdefault(name, []).extend(items)
        return result


def parse_quadlet(text: str, path: str, podman: Version = NEWEST_RULES) -> UnitFile:
    """Parse like podman's ``UnitFile.Parse`` (v5.4+), including its continuation quirks;
    `podman` chooses the ``Lookup`` rule of the result."""
    unit = UnitFile(path, podman=podman)
    lines = text[:-1].split("\n") if text.endswith("\n") else text.split("\n")
    last = len(lines) - 1
    current: Optional[str] = None
    remaining = ""
    start = 0
    for index, raw in enumerate(lines):
        line = raw.strip(QUADLET_WS)
        line_nr = index + 1
        if _is_comment(line):
            if remaining != "":
                continue  # comments and blank lines inside a continuation vanish
        else:
            if line.endswith("\\"):
                line = line[:-1]
                if index != last:
                    if remaining == "":
                        start = line_nr
                    remaining += line
                    continue
            if remaining != "":
                line = remaining + line
                remaining = ""
            else:
                start = line_nr
        if _is_comment(line):
            continue  # a comment outside a continuation: nothing to record
        if _is_group(line):
            current = _parse_group(line, path, line_nr)
            unit.groups.setdefault(current, [])
        elif _is_key_value(line):
            if current is None:
                raise QuadletParseError(
                    "key file does not start with a group", path=path, line=line_nr
                )
            eq = line.index("=")
            key = line[:eq].rstrip(KV_WS)
            value = line[eq + 1 :].lstrip(KV_WS)
            unit.groups[current].append(Assignment(path, current, key, value, start, line_nr))
        else:
            raise QuadletParseError(
                f"file contains line {line_nr}: \u201c{_shown(line)}\u201d which is not a key-value pair, "
                "group, or comment",
                path=path,
                line=line_nr,
            )
    # A continuation still pending here (only blank/comment lines followed it) is dropped, as
    # in Quadlet.
    return unit


def _is_comment(line: str) -> bool:
    return line == "" or line[0] in "#;"


def _is_group(line: str) -> bool:
    if not line.startswith("["):
        return False
    end = line.find("]")
    return end != -1 and all(c in " \t" for c in line[end + 1 :])


def _is_key_value(line: str) -> bool:
    return line.find("=") > 0


def _parse_group(line: str, path: str, line_nr: int) -> str:
    name = line[1 : line.index("]")]
    if not name or any(c in "[]" or unicodedata.category(c) == "Cc" for c in name):
        raise QuadletParseError(f"invalid group name: {excerpt(name)}", path=path, line=line_nr)
    return name


# --- systemd-style argument splitting (podman split.go, SplitRelax|SplitUnquote|SplitCUnescape)

_SEPARATORS = " \t\n\r"
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}
_HEX = "0123456789abcdefABCDEF"


def split_args(value: str) -> Optional[list[str]]:
    """Split one value into words as Quadlet does for ``*Args`` keys; None if Quadlet rejects it.

    Mirrors podman's port, including two quirks: an unknown escape rejects the whole value, and
    an empty word (``""``) ends the list, dropping any words after it.
    """
    text = value.split("\0", 1)[0]  # the Go port treats a NUL as end of input
    words: list[str] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in _SEPARATORS:
            pos += 1
        if pos >= len(text):
            return words
        word: list[str] = []
        quote = ""
        while pos < len(text):
            c = text[pos]
            if c == "\\":
                unescaped = _c_unescape(text, pos + 1)
                if unescaped is None:
                    if pos + 1 >= len(text):
                        pos += 1  # relaxed: a trailing backslash is dropped
                        break
                    return None
                word.append(unescaped[0])
                pos = unescaped[1]
            elif quote:
                if c == quote:
                    quote = ""
                else:
                    word.append(c)
                pos += 1
            elif c in "'\"":
                quote = c
                pos += 1
            elif c in _SEPARATORS:
                break
            else:
                word.append(c)
                pos += 1
        if not word:
            return words
        words.append("".join(word))


def _c_unescape(text: str, pos: int) -> Optional[tuple[str, int]]:
    """Decode the escape starting at ``text[pos]`` (after the backslash): (char, next index)."""
    if pos >= len(text):
        return None
    c = text[pos]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], pos + 1
    if c in "xuU":
        width = {"x": 2, "u": 4, "U": 8}[c]
        digits = text[pos + 1 : pos + 1 + width]
        if len(digits) != width or any(d not in _HEX for d in digits):
            return None
        code = int(digits, 16)
        if code == 0 or code > 0x10FFFF:
            return None
        return _rune(code), pos + 1 + width
    if c in "01234567":
        digits = text[pos : pos + 3]
        if len(digits) != 3 or any(d not in "01234567" for d in digits):
            return None
        code = int(digits, 8)
        if code == 0 or code > 255:
            return None
        return chr(code), pos + 3
    return None


def _rune(code: int) -> str:
    """Go's WriteRune turns a surrogate into U+FFFD; Python would keep an unencodable one."""
    return "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)


# --- byte-exact editing on the decoded text -------------------------------------------------
