"""Errors that reach the user as one line and a documented exit code.

Every failure the user can act on is a `BindimgError`; the CLI prints `str(error)` and exits
with `error.exit_code`. Anything else is a bug and gets a traceback only with `-v`.
"""

from __future__ import annotations

from typing import Optional

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_EXTERNAL = 3


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
        return where + self.message


class InputError(BindimgError):
    """Bad input or usage: nothing was written (exit 2)."""

    exit_code = EXIT_USAGE


class ExternalError(BindimgError):
    """A registry, network or external tool failed: nothing was written (exit 3)."""

    exit_code = EXIT_EXTERNAL
