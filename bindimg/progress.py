"""Progress of image copies: a live line per image on a terminal, plain lines elsewhere.

skopeo is run with `--quiet` (its own bars are per blob, on stdout); how far a copy has got
is read from the blobs it has written so far. containers/image's storage destination first
downloads each blob into a private temporary directory (`storageNNN` under /var/tmp, see
storage_dest.go `newImageDestination`), then applies them to the store, so the bytes of the
regular files in the directories of the files skopeo holds open are the bytes downloaded.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Optional, Protocol

_TEMP_DIR = re.compile(r"^(?:c-image-)?storage\d+$")


def megabytes(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


class Meter(Protocol):
    """Told about one image copy at a time."""

    def start(self, label: str, total: int, layers: int, new_layers: int) -> None:
        """A copy of `label` begins: `total` bytes of `new_layers` of its `layers` to fetch."""

    def advance(self, done: int) -> None:
        """`done` of the `total` bytes have arrived."""

    def end(self, summary: str) -> None:
        """The copy is over (stored, flattened or refused), `summary` says how."""

    def close(self) -> None:
        """No more copies: leave the terminal to other output."""


class Lines:
    """One line when an image starts and one when it ends (not a terminal, or a log)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.label = ""
        self.started = 0.0

    def start(self, label: str, total: int, layers: int, new_layers: int) -> None:
        self.label, self.started = label, time.monotonic()
        self.say(f"copying {label}: {new_layers} of {layers} layers new, {megabytes(total)} to fetch")

    def advance(self, done: int) -> None:
        pass

    def end(self, summary: str) -> None:
        self.say(f"stored {self.label} in {time.monotonic() - self.started:.1f} s: {summary}")

    def close(self) -> None:
        pass


class Bar:
    """One image's line of a `Live` display; `advance` may be called from any thread."""

    def __init__(self, progress: Any, task: Any, label: str, total: int) -> None:
        self._progress, self._task, self._label, self.total = progress, task, label, max(total, 1)

    def advance(self, done: int) -> None:
        """`done` of the `total` bytes have arrived (capped: a partial blob may overshoot)."""
        self._progress.update(self._task, completed=min(done, self.total))

    def end(self, summary: str, complete: bool = True) -> None:
        """The line's final text; `complete`: the bar full (False when the copy failed)."""
        from rich.markup import escape  # an error message may hold [brackets]

        fields: dict[str, Any] = {"completed": self.total} if complete else {}
        self._progress.update(self._task, description=escape(f"{self._label}: {summary}"), **fields)


class Live:
    """Rich progress lines on stderr, one per image (several at once with `bar`): bytes
    done/total, rate, a detail (layers), time."""

    def __init__(self) -> None:
        from rich.console import Console  # imported only on a terminal: it costs start-up time
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._lock = threading.Lock()
        self._started = False
        self._bar: Optional[Bar] = None  # the one `start` began (Meter protocol)

    def bar(self, label: str, total: int, detail: str) -> Bar:
        """A new line for `label`, waiting for `total` bytes; thread-safe."""
        from rich.markup import escape

        with self._lock:
            if not self._started:
                self._progress.start()
                self._started = True
            task = self._progress.add_task(escape(label), total=max(total, 1), detail=escape(detail))
        return Bar(self._progress, task, label, total)

    def start(self, label: str, total: int, layers: int, new_layers: int) -> None:
        self._bar = self.bar(label, total, f"{new_layers}/{layers} layers new")

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.advance(done)

    def end(self, summary: str) -> None:
        if self._bar is not None:
            self._bar.end(summary)

    def close(self) -> None:
        with self._lock:
            if self._started:
                self._progress.stop()
                self._started = False
        self._bar = None


def downloaded(pid: int) -> int:
    """Bytes skopeo (process `pid`) has downloaded into its temporary blob directories so far;
    0 when that cannot be read (the process ended, or /proc is not there)."""
    directories: set[str] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        parent = os.path.dirname(target)
        if target.startswith("/") and _TEMP_DIR.match(os.path.basename(parent)):
            directories.add(parent)
    total = 0
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                total += sum(e.stat().st_size for e in entries if e.is_file(follow_symlinks=False))
        except OSError:
            continue
    return total
