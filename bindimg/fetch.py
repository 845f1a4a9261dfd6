"""What an embedded image is made of, from its manifests alone, and its layers once stored.

`describe` reads the pinned manifest (and, for an index, the chosen platform's manifest):
no layer blob is downloaded, so `--dry-run` can say what would be stored, and the copy
knows how many bytes it is waiting for. The copy itself goes straight from the registry
into the store (skopeo skips every layer the store already has); `unpacked` then reads
the plain layer tars of a stored image back (for flattening).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from bindimg import fsutil
from bindimg.errors import ExternalError
from bindimg.lookupfailure import hint
from bindimg.platforms import Platform, choose
from bindimg.registry import Registry
from bindimg.resolve import Settings, digest_of, manifest, media_type_of, retrying
from bindimg.skopeo import RegistryOptions, SkopeoError

_LISTS = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
T = TypeVar("T")


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int  # bytes as served (compressed)


@dataclass(frozen=True)
class Described:
    reference: str  # NAME@DIGEST as pinned
    instance: str  # digest of the image manifest copied (== the pinned one unless an index)
    platform: Optional[Platform]  # the image chosen from an index; None for a plain image
    config: Blob
    layers: tuple[Blob, ...]  # bottom first

    @property
    def size(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)


def describe(
    name: str,
    digest: str,
    options: RegistryOptions,
    wanted: Platform,
    settings: Settings,
    registry: Registry,
) -> Described:
    """The manifests of `name@digest` for `wanted`: one look-up, two for an index.

    Raises ExternalError when the registry fails (after the retries) or serves another
    digest or a malformed manifest; InputError (from `choose`) when an index lacks `wanted`.
    """
    reference = f"{name}@{digest}"
    raw = _manifest(reference, options, settings, registry)
    if digest_of(raw) != digest:
        raise ExternalError(f"{reference}: the registry served a manifest with another digest; try again")
    media_type = media_type_of(raw, reference)
    top = json_object(raw, reference)
    instance, platform, manifest = digest, None, top
    if media_type in _LISTS or "manifests" in top:
        manifests = top.get("manifests")
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise ExternalError(f"{reference}: the image index has no valid manifest list")
        entry = choose(manifests, wanted, reference)
        instance = str(entry.get("digest", ""))
        platform = Platform.of(entry.get("platform") or {})
        raw_instance = _manifest(f"{name}@{instance}", options, settings, registry)
        if digest_of(raw_instance) != instance:
            raise ExternalError(f"{reference}: the registry served a manifest with another digest; try again")
        manifest = json_object(raw_instance, reference)
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise ExternalError(f"{reference}: the image manifest has no valid layer list")
    return Described(
        reference, instance, platform, _descriptor(manifest.get("config"), reference),
        tuple(_descriptor(layer, reference) for layer in layers),
    )  # fmt: skip


def _manifest(reference: str, options: RegistryOptions, settings: Settings, registry: Registry) -> bytes:
    return manifest(reference, options, settings, _failure(reference), registry)


def _descriptor(value: object, reference: str) -> Blob:
    if isinstance(value, dict):
        digest, size = value.get("digest"), value.get("size")
        if isinstance(digest, str) and isinstance(size, int) and size >= 0:
            return Blob(digest, size)
    raise ExternalError(f"{reference}: the image manifest has a malformed blob descriptor")


@dataclass(frozen=True)
class Unpacked:
    config: bytes
    layers: tuple[str, ...]  # paths of the plain layer tars, bottom first


def unpacked(directory: str, reference: str) -> Unpacked:
    """The config and plain layer tars of a `dir:` layout written with `--dest-decompress`."""
    with open(os.path.join(directory, "manifest.json"), "rb") as handle:
        manifest = json_object(handle.read(), reference)
    config_digest = str((manifest.get("config") or {}).get("digest", ""))
    with open(_blob(directory, config_digest, reference), "rb") as handle:
        config = handle.read()
    layers = tuple(
        _blob(directory, str(layer.get("digest", "")), reference) for layer in manifest.get("layers") or []
    )
    return Unpacked(config, layers)


def retried(settings: Settings, reference: str, call: Callable[[], T]) -> T:
    """`call` (a transfer of `reference`), retried on transient failures with the same
    back-off as the look-ups; a failure for good is an ExternalError naming it."""
    return retrying(settings, call, _failure(reference))


def _failure(reference: str) -> Callable[[SkopeoError, str], Exception]:
    return lambda error, tries: ExternalError(
        f"cannot fetch {reference}: {error.message}{tries}; "
        + hint(error.message, default="check the registry and its credentials")
    )


def json_object(data: bytes, reference: str) -> dict[str, Any]:
    """`data` (a manifest or config of `reference`) as a JSON object, else ExternalError."""
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


__all__ = ["Blob", "Described", "Unpacked", "describe", "json_object", "retried", "unpacked"]
