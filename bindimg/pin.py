"""Every byte-exact edit of a unit: value bytes, provenance comment, storage argument, lines.

Edits never go through a parse-and-write cycle (that would reformat the file); they are pure
functions over the decoded text that splice it, and because decoding is strict UTF-8 the
edited text re-encodes to exactly the original bytes everywhere except the splice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

from bindimg.quadlet import KV_WS, QUADLET_WS, parse_quadlet

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


# --- splicing physical lines ----------------------------------------------------------------


def _line_bounds(text: str, line: int) -> tuple[int, int, int]:
    """(start, content end without "\\n" or a CRLF's "\\r", end including the line ending)."""
    if line < 1:
        raise ValueError(f"no line {line}")
    start = 0
    for _ in range(line - 1):
        nl = text.find("\n", start)
        if nl == -1:
            raise ValueError(f"no line {line}")
        start = nl + 1
    if start >= len(text):
        raise ValueError(f"no line {line}")
    nl = text.find("\n", start)
    if nl == -1:
        return start, len(text), len(text)
    content_end = nl - 1 if nl > start and text[nl - 1] == "\r" else nl
    return start, content_end, nl + 1


def _line_count(text: str) -> int:
    return text.count("\n") + (0 if text == "" or text.endswith("\n") else 1)


def value_span(text: str, line: int) -> tuple[int, int]:
    """Offsets of the value on a physical line, so an edit touches nothing else."""
    start, content_end, _ = _line_bounds(text, line)
    eq = text.find("=", start, content_end)
    if eq == -1:
        raise ValueError(f"line {line} has no '='")
    region = text[eq + 1 : content_end].rstrip(QUADLET_WS)
    body = region.lstrip(KV_WS)
    value_start = eq + 1 + len(region) - len(body)
    return value_start, eq + 1 + len(region)


def replace_value(text: str, line: int, new_value: str) -> str:
    """Swap only the value characters of that line; indentation, spacing and EOL stay."""
    if "\n" in new_value or "\r" in new_value:
        raise ValueError("a value cannot contain a line break")
    start, end = value_span(text, line)
    return text[:start] + new_value + text[end:]


def line_prefix(text: str, line: int) -> str:
    """The indentation of a line, so inserted lines match their neighbours."""
    start, content_end, _ = _line_bounds(text, line)
    content = text[start:content_end]
    return content[: len(content) - len(content.lstrip(QUADLET_WS.replace("\r", "")))]


def line_ending(text: str, line: int) -> str:
    """The line's own ending, so inserted lines keep the file's CRLF or LF style."""
    _, content_end, end = _line_bounds(text, line)
    return text[content_end:end]


def _file_ending(text: str) -> str:
    nl = text.find("\n")
    if nl > 0 and text[nl - 1] == "\r":
        return "\r\n"
    return "\n"


def insert_line(text: str, before_line: int, content: str, *, like: int) -> str:
    """Insert a physical line styled like line ``like``; every existing byte stays."""
    if "\n" in content or "\r" in content:
        raise ValueError("inserted content cannot contain a line break")
    prefix = line_prefix(text, like)
    ending = line_ending(text, like)
    count = _line_count(text)
    if before_line == count + 1:
        if text and not text.endswith("\n"):
            text += _file_ending(text)
        return text + prefix + content + ending
    start, _, _ = _line_bounds(text, before_line)
    return text[:start] + prefix + content + (ending or _file_ending(text)) + text[start:]


def remove_line(text: str, line: int) -> str:
    """Delete one physical line and its ending (a last line has none: the previous "\\n" stays)."""
    start, _, end = _line_bounds(text, line)
    return text[:start] + text[end:]
