"""Errors that reach the user as one line and a documented exit code.

Every failure the user can act on is a `BindimgError`; the CLI prints `str(error)` and exits
with `error.exit_code`. Anything else is a bug and gets a traceback only with `-v`.
"""

from __future__ import annotations

import unicodedata
from typing import Optional

EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_EXTERNAL = 3
EXIT_INTERNAL = 70  # a bug in bindimg, never the user's input
EXIT_MEANINGS = {
    EXIT_FINDINGS: "findings, or a check failed",
    EXIT_USAGE: "bad input or usage; nothing was written",
    EXIT_EXTERNAL: (
        "registry, network or external tool failure; nothing was written "
        "(export keeps the images it reports exported)"
    ),
    EXIT_INTERNAL: "internal error: a bug in bindimg",
}
"""What each exit code other than 0 means (JSON error objects carry it)."""


class BindimgError(Exception):
    """A failure with a message fit for one line, naming the file (and line) or the image."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, path: Optional[str] = None, line: Optional[int] = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return one_line(where + self.message)


# What str.splitlines (and a terminal) would break a line at, plus the rest of the C0/C1
# controls: a file name or value with one of these must not split or garble the message.
_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _escape(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a non-UTF-8 byte of a file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if char == "\t" or (char not in _BREAKS and unicodedata.category(char) not in ("Cc", "Cs")):
        return char
    return char.encode("unicode_escape").decode("ascii")


def one_line(text: str) -> str:
    """`text` with line breaks, control characters and undecodable bytes shown as escapes.

    Every error is one line (SPEC, exit codes), whatever the file names and values in it hold:
    a newline in a file name or a lone CR in a value would otherwise start a new line.
    """
    if text.isprintable():
        return text
    return "".join(_escape(char) for char in text)


def excerpt(text: str, limit: int = 120) -> str:
    """At most `limit` characters of a value or line quoted in a message, and how long it was.

    A 1 MB `Image=` value is still one line, but not a message anyone can read.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\u2026 ({len(text)} characters)"


class InputError(BindimgError):
    """Bad input or usage: nothing was written (exit 2)."""

    exit_code = EXIT_USAGE


class ExternalError(BindimgError):
    """A registry, network or external tool failed: nothing was written (exit 3)."""

    exit_code = EXIT_EXTERNAL


def counted(number: int, noun: str) -> str:
    """`1 image`, `2 images`: `number` and the regular plural of `noun` where it is not 1."""
    return f"{number} {noun}" + ("" if number == 1 else "s")
