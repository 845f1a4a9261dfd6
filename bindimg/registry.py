"""The one interface to registries and local image copies, and its one implementation.

`Registry` is what `resolve`, `fetch`, `embed`, export's destinations and the lint rules
ask of a registry client; they take one (a fake in unit tests, passed the way pip-audit's
`Auditor` takes its vulnerability service) and never reach skopeo or the network otherwise.

`Skopeo` implements it with the skopeo commands of `bindimg.skopeo`, plus one fast path:
the look-ups (`inspect_raw`: the top-level manifest; `inspect_config`: a single-platform
image's config, for its platform) are first tried as direct HTTP requests over a kept
connection (`bindimg.distribution`). A `skopeo inspect` costs a process, a connection, a
ping and a token for one request; directly, a look-up is that one request (the ping and
token once per registry and repository; a config's manifest is the one the by-digest check
just read), which is what makes `bindimg lock` many times faster than a loop of skopeo
look-ups (bench/resolve.py, README "Benchmarks").
The direct request is made only where its answer is certainly skopeo's (anonymous access,
no certificate directory, no registries.conf entry that could redirect, no proxy: see
`distribution`); everything else is skopeo's, as is every failure's wording:

* a case the direct request does not cover, or an answer it cannot judge (an unknown tag,
  a challenge, a TLS error), goes to skopeo in the same call;
* a transient failure (network, 5xx) is raised as a `provisional` SkopeoError: the retry loop
  (`resolve.retrying`) counts it as an attempt when a retry is left and otherwise calls once
  more, and from then on the reference is skopeo's in this thread until skopeo answers it, so
  a failure a user sees is always skopeo's.

The direct request checks the digest of a manifest asked by digest and of a config blob, as
skopeo does, so the
by-digest check of `resolve.resolve_one` holds on either path. One `Skopeo` per command run
keeps that run's pings, tokens and connections (per thread).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Optional, Protocol

from bindimg import skopeo
from bindimg.distribution import Lookups, Transient, Unsupported
from bindimg.reference import ReferenceError
from bindimg.reference import parse as parse_reference
from bindimg.skopeo import RegistryOptions, SkopeoError

LOG = logging.getLogger("bindimg")


class Registry(Protocol):
    """What bindimg asks of a registry client; every failure is a `skopeo.SkopeoError`
    (`transient` when a retry may help, `provisional` when the next call asks again)."""

    def inspect_raw(
        self, reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
    ) -> bytes:
        """The exact bytes of the top-level manifest of `docker://reference`."""
        ...

    def inspect_config(self, reference: str, options: RegistryOptions, *, timeout: float) -> bytes:
        """The image config of a single-platform `docker://name@digest` (its platform)."""
        ...

    def ready(self) -> None:
        """Raise ToolError when no request can succeed (skopeo missing or older than 1.9);
        commands call it before their first progress line."""
        ...

    def copy_from_registry(
        self,
        reference: str,
        dest: str,
        options: RegistryOptions,
        *,
        platform: Sequence[str] = (),
        timeout: Optional[float] = None,
        watch: Optional[Callable[[int], None]] = None,
    ) -> None:
        """One image from `docker://reference` (of an index: `platform` = (os, arch[, variant]))
        to the local transport `dest`, blobs verified, digests kept; `watch(pid)` is called
        about every 0.2 s while the copy runs."""
        ...

    def copy_local(
        self, source: str, dest: str, *, platform: Sequence[str] = (), decompress: bool = False,
        preserve_digests: bool = False, timeout: Optional[float] = None,
    ) -> None:  # fmt: skip
        """A copy between local transports (`dir:`, `oci:`, `containers-storage:`)."""
        ...

    def copy_image(
        self, source: str, dest: str, *, src_options: RegistryOptions = RegistryOptions(),
        dest_options: RegistryOptions = RegistryOptions(), reference: str = "", multi_arch: str = "system",
        platform: Sequence[str] = (), timeout: Optional[float] = None,
        watch: Optional[Callable[[int], None]] = None,
    ) -> None:  # fmt: skip
        """One image (or index, per `multi_arch`) from `source` to `dest`, any transports, by digest;
        `watch(pid)` about every 0.2 s while the copy runs."""
        ...

    def inspect_local_raw(self, transport_ref: str, *, timeout: Optional[float] = None) -> bytes:
        """The top-level manifest bytes of a local image (e.g. `containers-storage:[…]NAME@DIGEST`)."""
        ...

    def delete_local(self, reference: str, *, timeout: Optional[float] = None) -> None:
        """Delete a local image (e.g. from containers-storage)."""
        ...


def _pinned(reference: str, raw: bytes) -> str:
    """`canonical-name@digest` of the manifest `raw` that the tag `reference` served ("" when
    `reference` has no canonical name)."""
    try:
        return parse_reference(reference).pinned("sha256:" + hashlib.sha256(raw).hexdigest())
    except ReferenceError:
        return ""


def or_skopeo(registry: Optional[Registry]) -> Registry:
    """`registry`, else a new `Skopeo`: the default of the entry points (a command run)."""
    return Skopeo() if registry is None else registry


class Skopeo:
    """The Registry bindimg uses: skopeo's commands, manifests and configs first asked
    directly (above).

    `environ` (default: this process's) is what the direct path reads to decide where it
    stands in for skopeo (HOME, proxies, auth and registries.conf locations)."""

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        self._direct = Lookups(None if environ is None else dict(environ))
        self._local = threading.local()
        self._lock = threading.Lock()
        # manifests by `name@digest` (bytes whose sha256 is that digest, from a look-up by tag
        # or by digest): a config look-up reads its manifest here
        self._by_digest: dict[tuple[str, RegistryOptions], bytes] = {}
        # manifests a look-up by digest got (so the registry serves them by that digest; not
        # those only inferred from a tag's bytes): asked once per run
        self._served: dict[tuple[str, RegistryOptions], bytes] = {}

    ready = staticmethod(skopeo.check_version)
    copy_from_registry = staticmethod(skopeo.copy_from_registry)
    copy_local = staticmethod(skopeo.copy_local)
    copy_image = staticmethod(skopeo.copy_image)
    inspect_local_raw = staticmethod(skopeo.inspect_local_raw)
    delete_local = staticmethod(skopeo.delete_local)

    def inspect_raw(
        self, reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
    ) -> bytes:
        """The exact bytes of the top-level manifest of `docker://reference`: one direct request
        where it is certain, else (and after it failed) `skopeo inspect --raw`. A manifest asked
        by digest earlier in this run is not asked again (its bytes were checked against that
        digest; e.g. `add --embed` reads the manifest `resolve` checked by digest); one only
        inferred from a tag's bytes is (that is `resolve`'s by-digest check).

        Raises SkopeoError: skopeo's, or a provisional one when the direct request failed
        transiently (the next call for `reference` in this thread is then skopeo's)."""
        if "@" in reference:
            with self._lock:
                known = self._served.get((reference, options))
            if known is not None:
                return known

        def direct() -> bytes:
            LOG.debug("GET the manifest of %s (direct HTTP request)", reference)
            return self._direct.manifest(reference, options, timeout)

        raw = self._first_direct(
            ("manifest", reference, options),
            direct,
            lambda: skopeo.inspect_raw(reference, options, timeout=timeout, secrets=secrets),
        )
        pinned = reference if "@" in reference else _pinned(reference, raw)
        if pinned:
            with self._lock:
                self._by_digest[(pinned, options)] = raw
                if pinned == reference:
                    self._served[(reference, options)] = raw
        return raw

    def inspect_config(self, reference: str, options: RegistryOptions, *, timeout: float) -> bytes:
        """The image config of a single-platform `docker://name@digest`: its manifest (known
        from an earlier look-up by digest, else asked directly) and the config blob it names,
        as direct requests where certain, else `skopeo inspect --config --raw` (as above)."""

        def direct() -> bytes:
            LOG.debug("GET the image config of %s (direct HTTP request)", reference)
            with self._lock:
                manifest = self._by_digest.get((reference, options))
            if manifest is None:
                manifest = self._direct.manifest(reference, options, timeout)
            return self._direct.config(reference, manifest, options, timeout)

        return self._first_direct(
            ("config", reference, options),
            direct,
            lambda: skopeo.inspect_config(reference, options, timeout=timeout),
        )

    def _first_direct(self, key: tuple[str, str, RegistryOptions], direct: Callable[[], bytes],
                      command: Callable[[], bytes]) -> bytes:  # fmt: skip
        """`direct()`, unless it failed for `key` in this thread since skopeo last answered it;
        where it cannot answer, `command()` (skopeo). A transient failure of `direct` is a
        provisional SkopeoError, and `key` is then skopeo's."""
        skopeos: set[tuple[str, str, RegistryOptions]] = self._local.__dict__.setdefault("skopeos", set())
        if key not in skopeos:
            try:
                return direct()
            except Unsupported:
                skopeos.add(key)
            except Transient as error:
                skopeos.add(key)
                raise SkopeoError(str(error), transient=True, provisional=True) from None
        answer = command()
        skopeos.discard(key)
        return answer
