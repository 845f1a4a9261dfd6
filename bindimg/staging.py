"""This run's changes to the embedded image store: staged, kept by `commit`, else undone.

`add --embed` copies images into the store while it plans (a flattened digest must be known
before any unit is rendered), so the store is the run's staging area. `StoreRun` is that
transaction, apart from what goes into it (embed.py): every image this run adds is written to
the store's journal before the copy starts, so that a killed run's images are taken out by
the next run (`stored`); until `commit` (called by `write.apply` before the units are
written), `close` deletes every image this run added, and the store itself when this run
created it. It also owns the run's temporary directory (containers/storage's run root for
the copies, layer tars, flattened layouts).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Optional

from bindimg import fsutil
from bindimg.errors import ExternalError, counted
from bindimg.progress import megabytes
from bindimg.registry import Registry
from bindimg.rootfs import Root
from bindimg.skopeo import SkopeoError
from bindimg.store import Layer, Store


class StoreRun:
    """The store at `inner` (in `root`, with `driver`) as this run changes it; `registry`
    copies into it and deletes from it. `dry_run`: nothing is taken out of it either."""

    def __init__(
        self,
        root: Root,
        inner: str,
        driver: str,
        registry: Registry,
        progress: Callable[[str], None],
        dry_run: bool,
    ) -> None:
        self.store = Store(root, inner, driver)
        self.registry = registry
        self.progress = progress
        self.dry_run = dry_run
        self._workdir: Optional[fsutil.RunDir] = None
        self._run: Optional[str] = None
        self._stored: Optional[set[str]] = None
        self._added: list[str] = []  # references this run put into the store, in order
        self._created: Optional[list[str]] = None  # what initialising the store created
        self._layers_before: dict[str, Layer] = {}
        self._committed = False

    def work(self, label: str) -> str:
        """A new path in this run's temporary directory (not created)."""
        if self._workdir is None:
            self._workdir = fsutil.RunDir("embed")  # a killed run's is swept by the next
        top = self._workdir.path
        return os.path.join(top, f"{len(os.listdir(top))}-{label}")

    def runroot(self) -> str:
        """containers/storage's run directory for the copies (locks; nothing kept)."""
        if self._run is None or not os.path.isdir(self._run):
            self._run = self.work("run")
            os.mkdir(self._run)
        return self._run

    def reference(self, name: str) -> str:
        """`name` (NAME@DIGEST, or @IMAGE-ID) in the store, as skopeo's transport names it."""
        return self.store.reference(self.runroot(), name)

    def stored(self) -> set[str]:
        """The image names in the store; those an interrupted run left staged (its journal)
        are taken out first (with --dry-run only left out)."""
        if self._stored is None:
            staged = self.store.staged()
            if staged and not self.dry_run:
                self.store.check_confined()  # skopeo deletes through the store's links
                left = counted(len(staged), "image")
                self.progress(f"removing {left} an interrupted run left in the store")
                self._undo(staged, [])
                staged = []
            self._stored = self.store.names() - set(staged)
        return self._stored

    def init(self) -> None:
        """Create the store (once) and note its layers before this run's copies."""
        if self._created is None:
            self._created = self.store.init()
            self._layers_before = self.store.layers()

    def stage(self, reference: str) -> None:
        """Note `reference` as this run's, in memory and in the store's journal (before it is
        copied: a killed copy leaves a partial image)."""
        self._added.append(reference)
        self.store.stage(self._added)

    def copied(self, reference: str) -> None:
        """`reference` is in the store now."""
        self.stored().add(reference)

    def store_local(self, source: str, reference: str) -> None:
        """Copy the local image `source` (e.g. `oci:DIR:TAG`) into the store as `reference`."""
        self.stage(reference)
        try:
            self.registry.copy_local(source, self.reference(reference), preserve_digests=True)
        except SkopeoError as error:
            raise ExternalError(
                f"cannot copy {reference} into the image store: {error.message}", path=self.store.host
            ) from None
        self.copied(reference)

    def delete(self, reference: str) -> None:
        """Take `reference`, which this run added, out of the store again."""
        try:
            self.registry.delete_local(self.reference(reference))
        except SkopeoError as error:
            raise ExternalError(
                f"cannot delete {reference} from the image store: {error.message}", path=self.store.host
            ) from None
        self._added.remove(reference)
        self.store.stage(self._added)
        self.stored().discard(reference)

    def size(self, layers: list[str]) -> int:
        """Bytes of the unpacked `layers` (layer ids) in the store."""
        known = self.store.layers()
        return sum(known[layer].diff_size for layer in layers if layer in known)

    def commit(self) -> list[str]:
        """Keep what this run stored (the units are written next); returns those references.

        The store's lock files are created even when nothing was copied, so that podman
        accepts it read-only; a closing line says how much the store grew.
        """
        self.init()
        self.store.tidy()
        self.store.stage([])
        self._committed = True
        if self._added:
            now = self.store.layers()  # read once: `size` would read it again
            growth = sum(layer.diff_size for key, layer in now.items() if key not in self._layers_before)
            self.progress(
                f"image store {self.store.inner}: {counted(len(self._added), 'image')} added, "
                f"+{megabytes(growth)} of layers"
            )
        return list(self._added)

    def undo(self, added: list[str]) -> None:
        """Delete images `commit` kept (when writing the units failed afterwards)."""
        self._undo(added, [])

    def close(self) -> None:
        """Take this run's images out of the store again unless `commit` kept them, and
        remove the temporary directory."""
        try:
            if not self._committed and (self._added or self._created):
                self._undo(self._added, self._created or [])
                self._added, self._created = [], None
        finally:
            if self._workdir is not None:
                self._workdir.close()
                self._workdir = None

    def _undo(self, added: list[str], created: list[str]) -> None:
        host = self.store.host
        if any(host == path or host.startswith(path + os.sep) for path in created):
            Store.remove_created(created)  # the whole store is this run's: remove it all
            return
        for reference in reversed(added):
            with contextlib.suppress(SkopeoError):
                self.registry.delete_local(self.reference(reference))
            # A copy killed before it named the image leaves it unnamed: its id is known.
            for image_id in self.store.unnamed(reference.rpartition("@")[2]):
                with contextlib.suppress(SkopeoError):
                    self.registry.delete_local(self.reference(f"@{image_id}"))
        self.store.stage([])
        self.store.tidy()
