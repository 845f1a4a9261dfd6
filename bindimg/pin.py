"""The byte-exact edit that pins a unit: value bytes, provenance comment, storage argument.

Pure functions over the decoded text (decoding is strict UTF-8, so a str edit re-encodes to
exactly the original bytes everywhere else).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from bindimg.quadlet import insert_line, parse_quadlet, remove_line, replace_value, value_span

PROVENANCE = "# bindimg: pinned from "
BOOTC_STORAGE = "/usr/lib/bootc/storage"
STORAGE_ARG = f"--storage-opt=additionalimagestore={BOOTC_STORAGE}"
STORAGE_KEYS = ("additionalimagestore", "overlay.additionalimagestore")
FLATTENED = " (flattened from "


def _line(text: str, number: int) -> str:
    lines = text.split("\n")
    return lines[number - 1] if 0 < number <= len(lines) else ""


@dataclass(frozen=True)
class Provenance:
    """What a provenance comment says: the reference pinned, and for an image embedded
    flattened (`# bindimg: pinned from REF (flattened from sha256:…)`) the upstream digest."""

    origin: str
    flattened_from: Optional[str] = None

    @property
    def text(self) -> str:
        """The comment's text after `# bindimg: pinned from `."""
        if self.flattened_from is None:
            return self.origin
        return f"{self.origin}{FLATTENED}{self.flattened_from})"


def provenance(text: str, line: int) -> Provenance | None:
    """The provenance comment directly above `line`, if there is one."""
    above = _line(text, line - 1).strip()
    # A lone CR inside is no comment bindimg wrote, and pin() could not write it back.
    if line <= 1 or not above.startswith(PROVENANCE) or "\r" in above:
        return None
    said = above[len(PROVENANCE) :].strip()
    origin, marker, rest = said.partition(FLATTENED)
    if marker and rest.endswith(")") and rest[:-1].startswith("sha256:") and origin.strip():
        return Provenance(origin.strip(), rest[:-1])
    return Provenance(said) if said else None


def provenance_of(text: str, line: int) -> str | None:
    """The reference in a provenance comment directly above `line`, if there is one.

    For a flattened image it carries the upstream digest (`quay.io/a/b:1@sha256:…`), so that
    its tag (`bindimg lock`) and the upstream image (`lint --remote`) both read from it.
    """
    found = provenance(text, line)
    if found is None:
        return None
    if found.flattened_from is not None and "@" not in found.origin:
        return f"{found.origin}@{found.flattened_from}"
    return found.origin


def current_value(text: str, line: int) -> str:
    start, end = value_span(text, line)
    return text[start:end]


def pin(text: str, line: int, pinned: str, origin: str) -> tuple[str, int]:
    """Set the value on `line` to `pinned`, with `# bindimg: pinned from <origin>` above it.

    Returns the new text and the line the value is now on. The text is unchanged when the
    value already is `pinned`: the comment is only written together with a change, so a
    second run touches nothing.
    """
    if current_value(text, line) == pinned:
        return text, line
    text = replace_value(text, line, pinned)
    if provenance_of(text, line) is not None:
        text = remove_line(text, line - 1)
        line -= 1
    return insert_line(text, line, PROVENANCE + origin, like=line), line + 1


def has_storage_arg(
    global_args: Sequence[str], store: str = BOOTC_STORAGE, keys: Sequence[str] = STORAGE_KEYS
) -> bool:
    """Whether podman's global arguments already add `store` (default: the bootc store) with
    one of the storage options `keys` (a vfs store is added with `vfs.imagestore`)."""
    wanted = {f"{key}={store}" for key in keys}
    for i, arg in enumerate(global_args):
        if arg.startswith("--storage-opt="):
            if arg[len("--storage-opt=") :] in wanted:
                return True
        elif arg == "--storage-opt" and i + 1 < len(global_args) and global_args[i + 1] in wanted:
            return True
    return False


def add_storage_arg(text: str, after_line: int, arg: str = STORAGE_ARG) -> str:
    """A `GlobalArgs=` line for the bootc store (or `arg`) right after `after_line`, indented like it."""
    return insert_line(text, after_line + 1, f"GlobalArgs={arg}", like=after_line)


def set_key(text: str, path: str, group: str, key: str, value: str, after_line: int) -> str:
    """`key=value` in `group`: the value of the last such line replaced, or a new line right
    after `after_line` (a line of that group), indented like it."""
    found = parse_quadlet(text, path).lookup_last(group, key)
    if found is None:
        return insert_line(text, after_line + 1, f"{key}={value}", like=after_line)
    if current_value(text, found.line) == value:
        return text
    return replace_value(text, found.line, value)
