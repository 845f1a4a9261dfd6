"""Fetch one image of a pinned reference into a temporary directory, once, for three uses.

`skopeo copy docker://NAME@DIGEST dir:DIR` keeps the registry's manifest bytes and blobs
as they are, so the same directory can be copied into the store under the pinned digest.
For an index, only the chosen platform's image is fetched and the directory is then given
the index as its top-level manifest (the `dir:` transport's own layout for lists), so the
store records the index digest too and `podman run NAME@INDEX-DIGEST` finds the image.
A second, local copy with `--dest-decompress` gives plain tar layers (gzip or zstd alike)
to look for whiteouts in and to flatten.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from bindimg import fsutil, skopeo
from bindimg.errors import ExternalError, InputError
from bindimg.platforms import Platform, choose
from bindimg.registry import Registry
from bindimg.resolve import Settings, digest_of, media_type_of, retrying
from bindimg.skopeo import RegistryOptions, SkopeoError

_LISTS = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
T = TypeVar("T")


@dataclass(frozen=True)
class Fetched:
    reference: str  # NAME@DIGEST as pinned
    directory: str  # `dir:` layout as served (compressed), top-level manifest = the pinned one
    platform: Optional[Platform]  # the image chosen from an index; None for a plain image
    config: bytes
    layers: tuple[str, ...]  # paths of the uncompressed layer tars, bottom first

    @property
    def source(self) -> str:
        return f"dir:{self.directory}"


def fetch(
    name: str,
    digest: str,
    options: RegistryOptions,
    wanted: Platform,
    workdir: str,
    settings: Settings,
    registry: Registry = skopeo,
) -> Fetched:
    """The image `name@digest` for `wanted` in `workdir` (which must not exist yet)."""
    reference = f"{name}@{digest}"
    raw = _retrying(
        settings, reference, lambda: registry.inspect_raw(reference, options, timeout=settings.timeout)
    )
    if digest_of(raw) != digest:
        raise ExternalError(f"{reference}: the registry served a manifest with another digest; try again")
    media_type = media_type_of(raw, reference)
    top = _json(raw, reference)
    instance, platform = digest, None
    if media_type in _LISTS or "manifests" in top:
        manifests = top.get("manifests")
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise ExternalError(f"{reference}: the image index has no valid manifest list")
        entry = choose(manifests, wanted, reference)
        instance = str(entry.get("digest", ""))
        platform = Platform.of(entry.get("platform") or {})
    served = os.path.join(workdir, "served")
    plain = os.path.join(workdir, "plain")
    os.makedirs(workdir)
    _retrying(
        settings,
        reference,
        lambda: registry.copy_from_registry(f"{name}@{instance}", f"dir:{served}", options),
    )
    try:
        registry.copy_local(f"dir:{served}", f"dir:{plain}", decompress=True)
    except SkopeoError as error:
        raise ExternalError(f"{reference}: cannot unpack its layers: {error.message}") from None
    if instance != digest:
        hexdigest = instance.split(":", 1)[1]
        os.replace(os.path.join(served, "manifest.json"), os.path.join(served, f"{hexdigest}.manifest.json"))
        with open(os.path.join(served, "manifest.json"), "wb") as handle:
            handle.write(raw)
    with open(os.path.join(plain, "manifest.json"), "rb") as handle:
        manifest = _json(handle.read(), reference)
    config_digest = str((manifest.get("config") or {}).get("digest", ""))
    with open(_blob(plain, config_digest, reference), "rb") as handle:
        config = handle.read()
    layers = tuple(
        _blob(plain, str(layer.get("digest", "")), reference) for layer in manifest.get("layers") or []
    )
    if platform is None:
        declared = Platform.of(_json(config, reference))
        if declared is not None and not wanted.accepts(declared):
            raise InputError(
                f"{reference} is a {declared} image, not {wanted}; "
                f"choose --platform {declared} or another image"
            )
    return Fetched(reference, served, platform, config, layers)


def _retrying(settings: Settings, reference: str, call: Callable[[], T]) -> T:
    """`call`, retried on transient failures with the same back-off as the look-ups."""
    return retrying(
        settings,
        call,
        lambda error, tries: ExternalError(
            f"cannot fetch {reference}: {error.message}{tries}; check the registry and its credentials"
        ),
    )


def _json(data: bytes, reference: str) -> dict[str, Any]:
    try:
        document = fsutil.load_json(data)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ExternalError(
            f"{reference}: the registry served a manifest or config that is not a JSON object"
        )
    return document


def _blob(directory: str, digest: str, reference: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    path = os.path.join(directory, hexdigest)
    if algorithm != "sha256" or not hexdigest or not os.path.isfile(path):
        raise ExternalError(f"{reference}: blob {digest or '(none)'} is missing after the copy; try again")
    return path
