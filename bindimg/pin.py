"""The byte-exact edit that pins a unit: value bytes, provenance comment, storage argument.

Pure functions over the decoded text (decoding is strict UTF-8, so a str edit re-encodes to
exactly the original bytes everywhere else).
"""

from __future__ import annotations

from collections.abc import Sequence

from bindimg.quadlet import insert_line, remove_line, replace_value, value_span

PROVENANCE = "# bindimg: pinned from "
BOOTC_STORAGE = "/usr/lib/bootc/storage"
STORAGE_ARG = f"--storage-opt=additionalimagestore={BOOTC_STORAGE}"
STORAGE_KEYS = ("additionalimagestore", "overlay.additionalimagestore")


def _line(text: str, number: int) -> str:
    lines = text.split("\n")
    return lines[number - 1] if 0 < number <= len(lines) else ""


def provenance_of(text: str, line: int) -> str | None:
    """The reference in a provenance comment directly above `line`, if there is one."""
    above = _line(text, line - 1).strip()
    if line > 1 and above.startswith(PROVENANCE):
        return above[len(PROVENANCE) :].strip() or None
    return None


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


def has_storage_arg(global_args: Sequence[str]) -> bool:
    """Whether podman's global arguments already add the bootc store."""
    wanted = {f"{key}={BOOTC_STORAGE}" for key in STORAGE_KEYS}
    for i, arg in enumerate(global_args):
        if arg.startswith("--storage-opt="):
            if arg[len("--storage-opt=") :] in wanted:
                return True
        elif arg == "--storage-opt" and i + 1 < len(global_args) and global_args[i + 1] in wanted:
            return True
    return False


def add_storage_arg(text: str, after_line: int) -> str:
    """A `GlobalArgs=` line for the bootc store right after `after_line`, indented like it."""
    return insert_line(text, after_line + 1, f"GlobalArgs={STORAGE_ARG}", like=after_line)
