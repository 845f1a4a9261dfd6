"""`bindimg add --embed`: prepare each image (fetch, look for whiteouts, flatten), then copy.

Preparing happens while `add` plans, in a private temporary directory and outside the
store: the flattened digest must be known before any unit can be rendered, and nothing of
the root may change before every image is ready. `commit` then copies into the store; if
one copy fails, the images this run added are deleted again (and a store this run created
is removed), so that the units, which are written only afterwards, and the store agree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from bindimg import flatten, fsutil, skopeo
from bindimg.errors import ExternalError, InputError
from bindimg.fetch import Fetched, fetch
from bindimg.platforms import Platform
from bindimg.registry import Registry
from bindimg.resolve import Settings
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions, SkopeoError
from bindimg.store import DEFAULT_STORE, Store

FLATTEN_MODES = ("auto", "always", "never")
IMAGE_POLICIES = ("missing",)


@dataclass(frozen=True)
class EmbedOptions:
    store: str = DEFAULT_STORE  # inside the root
    driver: str = "overlay"
    platform: Optional[str] = None  # OS/ARCH[/VARIANT]; default: this machine's
    flatten: str = "auto"
    image_policy: Optional[str] = None  # "missing": write Policy=missing into .image units

    def check(self) -> None:
        if self.flatten not in FLATTEN_MODES:
            raise InputError(f"--flatten {self.flatten}: choose auto, always or never")
        if self.image_policy is not None and self.image_policy not in IMAGE_POLICIES:
            raise InputError(
                f"--image-policy {self.image_policy}: only `missing` is known (podman >= 5.6 Policy=)"
            )


@dataclass(frozen=True)
class Prepared:
    """One image ready to embed: what the unit pins and where its bits are."""

    name: str  # canonical repository name
    digest: str  # what the unit is pinned to (the flattened digest when flattened)
    upstream: str  # the registry's digest it comes from
    flattened: bool
    source: Optional[str]  # local skopeo source to copy from; None when the store has it
    platform: tuple[str, ...] = ()  # which image of an index `source` holds, for skopeo

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.digest}"


class Embedder:
    def __init__(
        self,
        root: Root,
        options: EmbedOptions,
        settings: Settings,
        progress: Callable[[str], None] = lambda _: None,
        registry: Registry = skopeo,
    ) -> None:
        options.check()
        self.registry = registry
        self.options = options
        self.store = Store(root, options.store, options.driver)
        self.platform = Platform.parse(options.platform) if options.platform else Platform.host()
        self.settings = settings
        self.progress = progress
        self._workdir: Optional[fsutil.RunDir] = None
        self._prepared: dict[tuple[str, str, Optional[str]], Prepared] = {}
        self._stored: Optional[set[str]] = None

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove the temporary directory (fetched and flattened images)."""
        if self._workdir is not None:
            self._workdir.close()
            self._workdir = None

    def _work(self, label: str) -> str:
        if self._workdir is None:
            self._workdir = fsutil.RunDir("embed")  # a killed run's is swept by the next
        top = self._workdir.path
        return os.path.join(top, f"{len(os.listdir(top))}-{label}")

    def stored(self) -> set[str]:
        if self._stored is None:
            self._stored = self.store.names()
        return self._stored

    def prepare(
        self,
        name: str,
        digest: str,
        upstream: Optional[str],
        options: RegistryOptions,
        unit: str,
        installed: Optional[tuple[str, str]] = None,
    ) -> Prepared:
        """The image `name@digest` ready to copy (or already in the store).

        `upstream` is set when `digest` is a flattened one (from the provenance comment):
        the image is then fetched by `upstream` and must flatten to `digest` again.
        `installed` is what an earlier run pinned the installed unit to: (flattened,
        upstream) digests; when its upstream is `digest` and the store has it, it is reused.
        """
        key = (name, digest, upstream)
        if key not in self._prepared:
            earlier = installed if upstream is None and self.options.flatten != "never" else None
            if earlier is not None and earlier[1] == digest and f"{name}@{earlier[0]}" in self.stored():
                return Prepared(name, earlier[0], digest, True, None)
            self._prepared[key] = self._prepare(name, digest, upstream, options, unit)
        return self._prepared[key]

    def _prepare(
        self, name: str, digest: str, upstream: Optional[str], options: RegistryOptions, unit: str
    ) -> Prepared:
        mode = self.options.flatten
        if upstream is not None:
            if f"{name}@{digest}" in self.stored():
                return Prepared(name, digest, upstream, True, None)
            flat = self._flattened(name, upstream, options)
            if flat.digest != digest:
                raise InputError(
                    f"{name}@{upstream} flattens to {flat.digest} for {self.platform}, not to the "
                    f"pinned {digest} (another platform or bindimg version?); pin the unit to its tag "
                    "again",
                    path=unit,
                )
            return flat
        if mode != "always" and f"{name}@{digest}" in self.stored():
            return Prepared(name, digest, digest, False, None)
        self.progress(f"fetching {name}@{digest}")
        work = self._work("image")
        fetched = fetch(name, digest, options, self.platform, work, self.settings, self.registry)
        found = flatten.markers(fetched.layers)
        if mode == "always" or (mode == "auto" and found):
            why = f"whiteouts ({found[0]})" if found else "--flatten always"
            return self._flatten(name, digest, fetched, why)
        _discard(*fetched.layers)  # looked at; the copy into the store takes the served blobs
        if found:
            raise InputError(
                f"{name}@{digest} has whiteouts or opaque-directory markers ({found[0]}), which do "
                "not survive in an image store inside an image layer; embed it with --flatten auto",
                path=unit,
            )
        platform = fetched.platform.skopeo_args if fetched.platform else ()
        return Prepared(name, digest, digest, False, fetched.source, platform)

    def _flattened(self, name: str, upstream: str, options: RegistryOptions) -> Prepared:
        self.progress(f"fetching {name}@{upstream}")
        work = self._work("image")
        fetched = fetch(name, upstream, options, self.platform, work, self.settings, self.registry)
        return self._flatten(name, upstream, fetched, "pinned flattened")

    def _flatten(self, name: str, upstream: str, fetched: Fetched, why: str) -> Prepared:
        self.progress(f"flattening {name}@{upstream} ({len(fetched.layers)} layers; {why})")
        layout = self._work("flat")
        result = flatten.flatten(fetched.layers, fetched.config, upstream, layout)
        _discard(*fetched.layers)  # free the space: only the flattened image is copied
        shutil.rmtree(fetched.directory, ignore_errors=True)
        source = None if f"{name}@{result.digest}" in self.stored() else f"oci:{layout}:flattened"
        return Prepared(name, result.digest, upstream, True, source)

    def commit(self, prepared: list[Prepared]) -> list[str]:
        """Copy every prepared image that the store lacks into it; all or none.

        Returns the references copied. The store's lock files are created even when nothing
        is copied, so that podman accepts it read-only.
        """
        todo: dict[str, Prepared] = {}
        for item in prepared:
            if item.source is not None:
                todo.setdefault(item.reference, item)
        created = self.store.init()
        if not todo:
            return []
        runroot = fsutil.RunDir("runroot")
        added: list[str] = []
        try:
            for reference, item in todo.items():
                assert item.source is not None
                self.progress(f"copying {reference} into {self.store.inner}")
                try:
                    self.registry.copy_local(
                        item.source,
                        self.store.reference(runroot.path, reference),
                        platform=item.platform,
                        preserve_digests=True,
                    )
                except SkopeoError as error:
                    raise ExternalError(
                        f"cannot copy {reference} into the image store: {error.message}",
                        path=self.store.host,
                    ) from None
                added.append(reference)
            self.store.tidy()
        except BaseException:
            self._undo(runroot.path, added, created)
            raise
        finally:
            runroot.close()
        if self._stored is not None:
            self._stored.update(added)
        return added

    def undo(self, added: list[str]) -> None:
        """Delete images `commit` added (when writing the units failed afterwards)."""
        runroot = fsutil.RunDir("runroot")
        try:
            self._undo(runroot.path, added, [])
        finally:
            runroot.close()

    def _undo(self, runroot: str, added: list[str], created: list[str]) -> None:
        host = self.store.host
        if any(host == path or host.startswith(path + os.sep) for path in created):
            Store.remove_created(created)  # the whole store is this run's: remove it all
            return
        for reference in reversed(added):
            with contextlib.suppress(SkopeoError):
                self.registry.delete_local(self.store.reference(runroot, reference))
        self.store.tidy()


def _discard(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
