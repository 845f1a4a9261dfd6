"""`bindimg add --embed`: copy each image from its registry straight into the store, look
for whiteouts in the layers no stored image had (this copy's, or a killed copy's), flatten and
replace only the images that have them.

The copy is skopeo's own (`docker://` to `containers-storage:`): layers the store already has
are not downloaded again. Whiteouts are found in the tar-split record containers/storage
keeps of every layer it applies (the tar headers, no file data), so nothing is downloaded
or read twice; an image that has them is read back from the store as plain tars, flattened
(flatten.py) and stored under its flattened digest, and its upstream copy deleted.

Copying happens while `add` plans, since a flattened digest must be known before any unit
is rendered: the store is this run's staging area (`staging.StoreRun`: the journal, `commit`,
and the undo that leaves the store as it was after a failed or abandoned run). `--dry-run`
reads manifests only.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from bindimg import fetch, flatten
from bindimg.defaults import FLATTEN_MODES
from bindimg.errors import ExternalError, InputError
from bindimg.fetch import Described
from bindimg.platforms import Platform
from bindimg.progress import Lines, Live, Meter, downloaded, megabytes
from bindimg.registry import Registry
from bindimg.resolve import Settings
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions, SkopeoError
from bindimg.staging import StoreRun
from bindimg.store import DEFAULT_STORE, Layer, Store

IMAGE_POLICIES = ("missing",)


@dataclass(frozen=True)
class EmbedOptions:
    store: str = DEFAULT_STORE  # inside the root
    driver: str = "overlay"
    platform: Optional[str] = None  # OS/ARCH[/VARIANT]; default: this machine's
    flatten: str = "auto"
    image_policy: Optional[str] = None  # "missing": write Policy=missing into .image units
    dry_run: bool = False  # manifests only: say what would be stored, store nothing
    live: bool = False  # a live progress line per image (stderr is a terminal)
    rootless: bool = False  # also register the store for rootless podman (storage.conf.d)

    def check(self) -> None:
        if self.flatten not in FLATTEN_MODES:
            raise InputError(f"--flatten {self.flatten}: choose auto, always or never")
        if self.image_policy is not None and self.image_policy not in IMAGE_POLICIES:
            raise InputError(
                f"--image-policy {self.image_policy}: only `missing` is known (podman >= 5.6 Policy=)"
            )


@dataclass(frozen=True)
class Prepared:
    """One embedded image: what the unit pins, and whether this run stores it."""

    name: str  # canonical repository name
    digest: str  # what the unit is pinned to (the flattened digest when flattened)
    upstream: str  # the registry's digest it comes from
    flattened: bool
    source: Optional[str]  # where this run takes it from (docker://…); None when the store had it

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.digest}"


class Embedder:
    """The images of one `add --embed` run, copied into the store (`staging`) as `prepare`
    is asked for each."""

    def __init__(
        self,
        root: Root,
        options: EmbedOptions,
        settings: Settings,
        progress: Callable[[str], None],
        registry: Registry,
    ) -> None:
        options.check()
        self.registry = registry
        self.options = options
        self.staging = StoreRun(root, options.store, options.driver, registry, progress, options.dry_run)
        self.platform = Platform.parse(options.platform) if options.platform else Platform.host()
        self.settings = settings
        self.progress = progress
        self.meter: Meter = Live() if options.live else Lines(progress)
        self._prepared: dict[tuple[str, str, Optional[str]], Prepared] = {}
        self._described: set[str] = set()  # --dry-run: layers an earlier image would store

    @property
    def store(self) -> Store:
        return self.staging.store

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Take this run's images out of the store again unless `commit` kept them, and
        remove the temporary directory."""
        try:
            self.meter.close()
        finally:
            self.staging.close()

    def stored(self) -> set[str]:
        """The image names in the store (`StoreRun.stored`)."""
        return self.staging.stored()

    def prepare(
        self,
        name: str,
        digest: str,
        upstream: Optional[str],
        options: RegistryOptions,
        unit: str,
        installed: Optional[tuple[str, str]] = None,
    ) -> Prepared:
        """The image `name@digest`, stored (or already in the store; with `--dry-run`, described).

        `upstream` is set when `digest` is a flattened one (from the provenance comment):
        the image is then copied by `upstream` and must flatten to `digest` again.
        `installed` is what an earlier run pinned the installed unit to: (flattened,
        upstream) digests; when its upstream is `digest` and the store has it, it is reused.
        Raises InputError (whiteouts with --flatten never, a wrong platform, another
        flattened digest) and ExternalError (registry or skopeo failures).
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
        if upstream is not None:
            if f"{name}@{digest}" in self.stored():
                return Prepared(name, digest, upstream, True, None)
            if self.options.dry_run:
                return self._describe(name, upstream, options, flattened_to=digest)
            return self._copy(name, upstream, options, unit, "always", expected=digest)
        if self.options.flatten != "always" and f"{name}@{digest}" in self.stored():
            return Prepared(name, digest, digest, False, None)
        if self.options.dry_run:
            return self._describe(name, digest, options)
        return self._copy(name, digest, options, unit, self.options.flatten)

    def _new_layers(self, described: Described, layers: dict[str, Layer]) -> list[fetch.Blob]:
        """The layers of `described` the store (whose `layers` these are) does not have (by
        blob digest)."""
        known: set[Optional[str]] = set(self._described)
        for layer in layers.values():
            known.update((layer.compressed_digest, layer.diff_digest))
        return [blob for blob in described.layers if blob.digest not in known]

    def _describe(
        self, name: str, digest: str, options: RegistryOptions, flattened_to: Optional[str] = None
    ) -> Prepared:
        """--dry-run: what copying `name@digest` would store, from its manifests alone."""
        described = fetch.describe(name, digest, options, self.platform, self.settings, self.registry)
        new = self._new_layers(described, self.store.layers())
        self._described.update(blob.digest for blob in new)  # an image after it shares them
        size = described.config.size + sum(blob.size for blob in new)
        then = (
            f"; then flattened to {flattened_to}"
            if flattened_to
            else "; flattened to one layer if its layers hold whiteouts (seen once downloaded)"
            if self.options.flatten != "always"
            else "; then flattened to one layer (--flatten always)"
        )
        self.progress(
            f"would store {name}@{digest}: {len(new)} of {len(described.layers)} layers new, "
            f"{megabytes(size)} to fetch{then}"
        )
        flattened = flattened_to is not None
        return Prepared(name, flattened_to or digest, digest, flattened, f"docker://{name}@{digest}")

    def _copy(
        self,
        name: str,
        digest: str,
        options: RegistryOptions,
        unit: str,
        mode: str,
        expected: Optional[str] = None,
    ) -> Prepared:
        """Copy `name@digest` into the store; flatten it there when `mode` (or its whiteouts)
        says so. `expected`: the flattened digest it must give."""
        reference = f"{name}@{digest}"
        described = fetch.describe(name, digest, options, self.platform, self.settings, self.registry)
        self.staging.init()
        present = reference in self.stored()  # (a killed run's staged images taken out first)
        before = self.store.layers()
        new = self._new_layers(described, before)
        checked = self.store.layers_of(self.stored(), before)
        self.meter.start(
            reference, described.config.size + sum(b.size for b in new), len(described.layers), len(new)
        )
        platform = described.platform.skopeo_args if described.platform else ()
        dest = self.staging.reference(reference)
        watch = self._watch if self.options.live else None
        if not present:
            self.staging.stage(reference)
        fetch.retried(
            self.settings,
            reference,
            lambda: self.registry.copy_from_registry(
                reference, dest, options, platform=platform, watch=watch
            ),
        )
        if not present:
            self.staging.copied(reference)
        image = self.store.image(reference)
        if image is None:
            raise ExternalError(f"{reference} is not in the image store after skopeo copied it; try again")
        image_id, chain = image
        if described.platform is None:
            self._check_platform(reference, self.store.big_data(image_id, described.config.digest))
        added = [layer for layer in chain if layer not in before]
        found = self._markers(chain, [layer for layer in chain if layer not in checked])
        unpacked = None
        if found is None:  # storage kept no tar-split record: read the layers themselves
            unpacked = self._unpack(reference, image_id)
            found = flatten.markers(unpacked.layers)
        if mode == "always" or (mode == "auto" and found):
            why = f"whiteouts ({found[0]})" if found else "--flatten always"
            result = self._flatten(name, digest, image_id, why, unpacked)
            if expected is not None and result.digest != expected:
                raise InputError(
                    f"{reference} flattens to {result.digest} for {self.platform}, not to the "
                    f"pinned {expected} (another platform or bindimg version?); pin the unit to its "
                    "tag again",
                    path=unit,
                )
            if not present:  # only the flattened image is kept
                self.staging.delete(reference)
            self.meter.end(f"flattened to {result.digest} ({why})")
            return result
        if found:
            self.meter.end("refused")
            raise InputError(
                f"{reference} has whiteouts or opaque-directory markers ({found[0]}), which do "
                "not survive in an image store inside an image layer; embed it with --flatten auto",
                path=unit,
            )
        self.meter.end(f"{len(added)} new layers, {megabytes(self.staging.size(added))} unpacked")
        return Prepared(name, digest, digest, False, None if present else f"docker://{reference}")

    def _watch(self, pid: int) -> None:
        self.meter.advance(downloaded(pid))

    def _check_platform(self, reference: str, config: Optional[bytes]) -> None:
        declared = Platform.of(fetch.json_object(config, reference)) if config is not None else None
        if declared is not None and not self.platform.accepts(declared):
            raise InputError(
                f"{reference} is a {declared} image, not {self.platform}; "
                f"choose --platform {declared} or another image"
            )

    def _markers(self, chain: list[str], unchecked: list[str], limit: int = 3) -> Optional[list[str]]:
        """Up to `limit` whiteout or opaque markers in the `unchecked` layers of the image's
        `chain`, as `layer N: path`; None when a layer's tar-split record is missing.
        Layers of the images the store had before come from images embedded without
        markers; the others are this copy's, or a killed copy's (which skopeo reuses)."""
        found: list[str] = []
        for number, layer in enumerate(chain, 1):
            if layer not in unchecked:
                continue
            names = self.store.layer_paths(layer)
            if names is None:
                return None
            for path in names:
                if flatten.is_marker(path):
                    found.append(f"layer {number}: {path}")
                    if len(found) >= limit:
                        return found
        return found

    def _unpack(self, reference: str, image_id: str) -> fetch.Unpacked:
        """The stored image's config and plain layer tars (storage rebuilds them exactly)."""
        directory = self.staging.work("layers")
        try:
            source = self.staging.reference(f"@{image_id}")
            self.registry.copy_local(source, f"dir:{directory}", decompress=True)
        except SkopeoError as error:
            raise ExternalError(
                f"cannot read {reference} back from the image store: {error.message}", path=self.store.host
            ) from None
        return fetch.unpacked(directory, reference)

    def _flatten(
        self, name: str, upstream: str, image_id: str, why: str, unpacked: Optional[fetch.Unpacked]
    ) -> Prepared:
        reference = f"{name}@{upstream}"
        if unpacked is None:
            unpacked = self._unpack(reference, image_id)
        self.progress(f"flattening {reference} ({len(unpacked.layers)} layers; {why})")
        layout = self.staging.work("flat")
        result = flatten.flatten(unpacked.layers, unpacked.config, upstream, layout)
        for path in unpacked.layers:
            _discard(path)  # free the space before the flattened copy is stored
        flat = f"{name}@{result.digest}"
        if flat not in self.stored():
            self.staging.store_local(f"oci:{layout}:flattened", flat)
        shutil.rmtree(layout, ignore_errors=True)
        return Prepared(name, result.digest, upstream, True, f"docker://{reference}")

    def commit(self, prepared: list[Prepared]) -> list[str]:
        """Keep what `prepare` stored (the units are written next); returns those references
        (`StoreRun.commit`)."""
        del prepared  # every image was stored while preparing
        self.meter.close()
        return self.staging.commit()

    def undo(self, added: list[str]) -> None:
        """Delete images `commit` kept (when writing the units failed afterwards)."""
        self.staging.undo(added)


def _discard(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
