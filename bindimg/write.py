"""The write stage of `add` and `lock --rewrite`: read-modify-write of units, all or nothing.

A `Plan` holds the old and new bytes of every file and the links to make; `changed_files`
reads what each write replaces (refusing a FIFO or a directory unopened), `apply` stages every
file, renames them all, then links (all of it or, after any failure, none), and `diff` shows
a plan without writing it (credentials hidden).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from bindimg import fsutil
from bindimg.boundimages import Link
from bindimg.quadlet import redact_credentials
from bindimg.unitset import MAX_UNIT_BYTES

if TYPE_CHECKING:  # a plan of `lock --rewrite` embeds nothing: it need not load the embedder
    from bindimg.embed import Embedder, Prepared


@dataclass(frozen=True)
class Entry:
    quadlet: str
    source: str
    reference: str
    digest: str
    mode: str
    changed: bool
    flattened: Optional[bool] = None  # embedded entries only
    upstream_digest: Optional[str] = None  # embedded entries only

    def as_json(self) -> dict[str, object]:
        """The JSON object of one image (docs/schemas/add.json): `flattened` and
        `upstream_digest` only for embedded images."""
        data: dict[str, object] = {
            "quadlet": self.quadlet,
            "source": self.source,
            "image": self.reference,
            "digest": self.digest,
            "type": self.mode,
            "changed": self.changed,
        }
        if self.mode == "embedded":
            data["flattened"] = bool(self.flattened)
            data["upstream_digest"] = self.upstream_digest
        return data


@dataclass
class Plan:
    files: dict[str, tuple[Optional[bytes], bytes]]  # host path -> (old bytes, new bytes)
    links: list[Link]
    entries: list[Entry]
    embedded: list[Prepared] = field(default_factory=list)
    embedder: Optional[Embedder] = None
    touched: set[str] = field(default_factory=set)  # host paths of the units and links of this run

    def close(self) -> None:
        """Take the embedded images out of the store again unless `apply` kept them; remove
        the temporary files (after `apply`, or instead of it)."""
        if self.embedder is not None:
            self.embedder.close()


def changed_files(texts: Mapping[str, str]) -> dict[str, tuple[Optional[bytes], bytes]]:
    """path -> (old bytes or None, new bytes) for each text that differs from the file."""
    files: dict[str, tuple[Optional[bytes], bytes]] = {}
    for dest, text in texts.items():
        old = _read_bytes(dest)
        new = text.encode("utf-8")
        if old != new:
            files[dest] = (old, new)
    return files


def _read_bytes(path: str) -> Optional[bytes]:
    """What a planned write replaces (None: nothing yet). An install destination that is a FIFO
    or a directory is refused unopened: opening it blocked or crashed."""
    try:
        return fsutil.read_input(path, MAX_UNIT_BYTES, what="unit file", missing=None, fix="remove it")
    except FileNotFoundError:
        return None


def apply(plan_: Plan) -> None:
    """Copy embedded images into the store, then write every file and link, all or nothing.

    A failed copy writes no unit (and takes this run's images out of the store again); a
    failure while writing (or a signal) takes back the files and links written, and the
    images copied.
    """
    added = plan_.embedder.commit(plan_.embedded) if plan_.embedder is not None else []
    try:
        fsutil.apply_changes(plan_.files, [(link.path, link.target) for link in plan_.links])
    except BaseException:
        if plan_.embedder is not None:
            plan_.embedder.undo(added)
        raise


def diff(plan_: Plan) -> str:
    """A unified diff of what `apply` would write; new links shown as git shows symlinks."""
    chunks: list[str] = []
    for path, (old, new) in sorted(plan_.files.items()):
        before = _shown_lines((old or b"").decode("utf-8", "replace"))
        after = _shown_lines(new.decode("utf-8"))
        chunks.extend(
            _terminated(difflib.unified_diff(before, after, "/dev/null" if old is None else path, path))
        )
    for link in plan_.links:
        chunks.extend(
            [
                "--- /dev/null\n",
                f"+++ {link.path}\n",
                "@@ -0,0 +1 @@\n",
                f"+{link.target}\n",
                "\\ No newline at end of file\n",
            ]
        )
    return "".join(chunks)


def _shown_lines(text: str) -> list[str]:
    """A unit's lines as a diff shows them: credentials (`Creds=`) replaced by `***`."""
    return [redact_credentials(line) for line in text.splitlines(keepends=True)]


def _terminated(lines: Iterable[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        out.append(line)
    return out
