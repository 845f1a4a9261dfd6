"""Concurrent digest resolution: each distinct (reference, options) asked once.

The digest pinned is sha256 of the exact top-level manifest bytes (`skopeo inspect --raw`),
so a multi-arch tag pins its image index, never one platform's manifest.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional, TypeVar

from bindimg import fsutil, skopeo
from bindimg.defaults import DEFAULT_JOBS as DEFAULT_JOBS
from bindimg.defaults import DEFAULT_RETRY, DEFAULT_TIMEOUT
from bindimg.errors import ExternalError
from bindimg.lookupfailure import hint, says_missing
from bindimg.platforms import offered
from bindimg.reference import parse as parse_reference
from bindimg.registry import Registry, or_skopeo
from bindimg.skopeo import RegistryOptions, SkopeoError

BACKOFF_SECONDS = 0.5
LOG = logging.getLogger("bindimg")
# Longest wait between two attempts: a registry that is down for minutes gets an attempt
# every 30 s (`--retry 20` would otherwise wait 0.5 s * 2^19, six days, before the last one).
MAX_BACKOFF_SECONDS = 30.0

T = TypeVar("T")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class Request:
    reference: str  # canonical tag reference, e.g. quay.io/org/app:1.2
    options: RegistryOptions = field(default_factory=RegistryOptions)
    # Also learn the platforms the image serves: free for an index, one more request (the
    # config) for a single manifest.
    platforms: bool = False


@dataclass(frozen=True)
class Resolved:
    reference: str
    digest: str
    media_type: str
    platforms: Optional[tuple[str, ...]] = None  # `platforms.offered`; None when not asked


@dataclass(frozen=True)
class Settings:
    jobs: int = DEFAULT_JOBS
    retry: int = DEFAULT_RETRY
    timeout: float = DEFAULT_TIMEOUT


def digest_of(manifest: bytes) -> str:
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def media_type_of(manifest: bytes, reference: str) -> str:
    """The manifest's media type; OCI manifests may leave the field out."""
    try:
        document = fsutil.load_json(manifest)
    except ValueError:
        raise ExternalError(f"{reference}: the registry returned a manifest that is not JSON") from None
    if not isinstance(document, dict):
        raise ExternalError(f"{reference}: the registry returned a manifest that is not an object")
    if document.get("schemaVersion") == 1:
        raise ExternalError(
            f"{reference}: a Docker schema 1 manifest cannot be pinned reliably; push the image again"
        )
    media_type = document.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return media_type
    return OCI_INDEX if "manifests" in document else OCI_MANIFEST


class ResolveError(ExternalError):
    """A look-up failed for good; `transient` when the network or registry was at fault (after
    the retries); `missing` when the registry answered it has no such manifest, the one answer
    `lint --remote` reports as `digest-gone` (TLS, credentials, network: exit 3)."""

    def __init__(self, message: str, *, transient: bool, missing: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.missing = missing


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (0 for the first)."""
    return min(BACKOFF_SECONDS * float(2 ** min(attempt, 32)), MAX_BACKOFF_SECONDS)


def retrying(
    settings: Settings,
    call: Callable[[], T],
    failure: Callable[[SkopeoError, str], Exception],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call`, retried on transient failures with exponential back-off (0.5 s, 1 s, 2 s … at
    most MAX_BACKOFF_SECONDS); a failure for good becomes `failure(error, " (after N attempts)"
    or "")`. A provisional failure (the registry's direct request, `registry.Skopeo`) is never
    the last word: with no retry left, `call` is made once more, at once, and skopeo answers."""
    attempt = 0
    last_word = False
    while True:
        try:
            return call()
        except SkopeoError as error:
            if error.transient and attempt < settings.retry:
                LOG.debug("transient failure, retry in %g s: %s", backoff(attempt), error.message)
                sleep(backoff(attempt))
                attempt += 1
                continue
            if error.provisional and not last_word:
                last_word = True
                continue
            raise failure(error, f" (after {attempt + 1} attempts)" if attempt else "") from None


def manifest(
    reference: str,
    options: RegistryOptions,
    settings: Settings,
    failure: Callable[[SkopeoError, str], Exception],
    registry: Registry,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """The exact bytes of `reference`'s top-level manifest, retried with back-off; a failure
    for good is `failure(error, tries)`."""
    return retrying(
        settings, lambda: registry.inspect_raw(reference, options, timeout=settings.timeout), failure, sleep
    )


def resolve_one(
    request: Request,
    settings: Settings,
    sleep: Callable[[float], None] = time.sleep,
    registry: Optional[Registry] = None,
    beside: Optional[Executor] = None,
) -> Resolved:
    """Ask the registry, retrying transient failures with exponential back-off.

    The digest of the tag's manifest is then fetched by that digest: a registry (or a proxy)
    that serves bytes for the tag which it does not hold by their digest would otherwise get
    a digest pinned that nobody can pull. One more request per image (the registry checks the
    digest of what it gets by digest). A single-platform image's config (its platform, when
    `request.platforms`) needs only the tag's bytes: with `beside` (an executor whose threads
    keep their own connections) it is read while the by-digest check runs there, so an image
    costs two round trips, not three. `registry`: default, a new `registry.Skopeo`.

    Raises ResolveError (the by-digest check's failure first), ExternalError.
    """
    client = or_skopeo(registry)

    def lookup(reference: str, what: str) -> bytes:
        return manifest(
            reference,
            request.options,
            settings,
            lambda error, tries: _failure(request.reference, what, error, tries),
            client,
            sleep,
        )

    raw = lookup(request.reference, "")
    digest = digest_of(raw)
    media_type = media_type_of(raw, request.reference)

    def check() -> None:
        name = request.reference.rpartition(":")[0]  # a canonical tag reference always has a tag
        served = lookup(f"{name}@{digest}", f"the tag's manifest {digest} is not served by digest: ")
        if served != raw:  # the digest of what comes by digest is checked; this is for sure
            raise ResolveError(
                f"cannot resolve {request.reference}: the tag's manifest {digest} is not served by digest; "
                "check the registry or the proxy in front of it",
                transient=False,
            )

    def platforms() -> Optional[tuple[str, ...]]:
        return _platforms_of(raw, request, settings, sleep, client) if request.platforms else None

    # A reference asked by digest already (lint --remote) had its digest checked by the look-up.
    if "@" in request.reference:
        offers = platforms()
    elif beside is None or not request.platforms:
        check()
        offers = platforms()
    else:
        checked = beside.submit(check)
        try:
            offers = platforms()
        finally:
            checked.result()  # its failure is the one to tell: the digest cannot be pulled
    LOG.debug("%s: %s (%s)", request.reference, digest, media_type)
    return Resolved(request.reference, digest, media_type, offers)


def _failure(reference: str, what: str, error: SkopeoError, tries: str) -> ResolveError:
    """A failed look-up of `reference` (`what` says which step, and is said only when the
    registry answered it has no such manifest): a tag or digest the registry does not have
    is told apart from an outage."""
    missing = not error.transient and says_missing(error.message)
    if not what and missing:
        kind = "digest" if "@" in reference else "tag"
        return ResolveError(
            f"{reference}: no such {kind} in the registry ({error.message}); check the {kind}",
            transient=False,
            missing=True,
        )
    return ResolveError(
        f"cannot resolve {reference}: {what if missing else ''}{error.message}{tries}; {hint(error.message)}",
        transient=error.transient,
    )


def _platforms_of(
    raw: bytes, request: Request, settings: Settings, sleep: Callable[[float], None], registry: Registry
) -> tuple[str, ...]:
    """The platforms of the manifest `raw` (already checked to be a JSON object)."""
    top = fsutil.load_json(raw)
    assert isinstance(top, dict)  # media_type_of checked it
    if isinstance(top.get("manifests"), list):
        return offered(top)
    pinned = f"{parse_reference(request.reference).canonical_name}@{digest_of(raw)}"
    config = retrying(
        settings,
        lambda: registry.inspect_config(pinned, request.options, timeout=settings.timeout),
        lambda error, tries: ResolveError(
            f"cannot read the image config of {pinned}: {error.message}{tries}",
            transient=error.transient,
        ),
        sleep,
    )
    try:
        document = fsutil.load_json(config)
    except ValueError:
        raise ExternalError(f"{pinned}: the registry returned an image config that is not JSON") from None
    return offered(top, document if isinstance(document, dict) else {})


def resolve_each(
    requests: Iterable[Request],
    settings: Settings,
    progress: Callable[[str], None] = lambda _: None,
    registry: Optional[Registry] = None,
) -> dict[Request, Resolved | ExternalError]:
    """Resolve every distinct request concurrently; each one's result or its own failure.
    `registry`: default, a new `registry.Skopeo` for these requests (one ping and token per
    registry, one connection per thread: at most 2 x `settings.jobs`)."""
    unique = sorted(set(requests), key=lambda r: (r.reference, repr(r.options)))
    if not unique:
        return {}
    client = or_skopeo(registry)
    client.ready()  # a missing skopeo is one line, before any "resolving" line

    workers = max(1, min(settings.jobs, len(unique)))
    # `beside` runs each image's by-digest check while its worker reads the config: at most
    # 2 x jobs requests in flight, each image's two at once (README "Benchmarks").
    with ThreadPoolExecutor(workers) as beside, ThreadPoolExecutor(workers) as pool:

        def work(request: Request) -> Resolved | ExternalError:
            progress(f"resolving {request.reference}")
            try:
                return resolve_one(request, settings, registry=client, beside=beside)
            except ExternalError as error:
                return error

        return dict(zip(unique, pool.map(work, unique)))


def resolve_all(
    requests: Iterable[Request],
    settings: Settings,
    progress: Callable[[str], None] = lambda _: None,
    registry: Optional[Registry] = None,
    where: Mapping[Request, tuple[str, int]] = {},
) -> dict[Request, Resolved]:
    """Resolve every distinct request concurrently; the first failure (in sorted order) is
    raised, naming the file and line `where` gives for its request (the unit's Image=)."""
    outcomes = resolve_each(requests, settings, progress, registry)
    failures = [(r, o) for r, o in outcomes.items() if isinstance(o, ExternalError)]
    for _, failure in failures:
        if isinstance(failure, skopeo.ToolError):  # the same for every image: said once
            raise failure
    if failures:
        request, first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        error = ExternalError(first.message + more)
        error.path, error.line = where.get(request, (None, None))
        raise error
    return {r: o for r, o in outcomes.items() if isinstance(o, Resolved)}
