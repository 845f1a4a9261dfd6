"""The one interface to registries and local image copies, which `bindimg.skopeo` implements.

`resolve`, `fetch`, `embed` and export's destinations take a `Registry` (default: the skopeo
module), so that a unit test passes a fake object instead of patching skopeo or subprocess
(pip-audit's `Auditor` takes its vulnerability service the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional, Protocol

from bindimg.skopeo import RegistryOptions


class Registry(Protocol):
    """What bindimg asks of a registry client; every failure is a `skopeo.SkopeoError`
    (`transient` when a retry may help)."""

    def inspect_raw(
        self, reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
    ) -> bytes:
        """The exact bytes of the top-level manifest of `docker://reference`."""
        ...

    def inspect_config(self, reference: str, options: RegistryOptions, *, timeout: float) -> bytes:
        """The image config of a single-platform `docker://name@digest` (its platform)."""
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
    ) -> None:
        """A copy between local transports (`dir:`, `oci:`, `containers-storage:`)."""
        ...

    def copy_image(
        self, source: str, dest: str, *, src_options: RegistryOptions = RegistryOptions(),
        dest_options: RegistryOptions = RegistryOptions(), reference: str = "", multi_arch: str = "system",
        platform: Sequence[str] = (), timeout: Optional[float] = None,
        watch: Optional[Callable[[int], None]] = None,
    ) -> None:
        """One image (or index, per `multi_arch`) from `source` to `dest`, any transports, by digest;
        `watch(pid)` about every 0.2 s while the copy runs."""
        ...

    def inspect_local_raw(self, transport_ref: str, *, timeout: Optional[float] = None) -> bytes:
        """The top-level manifest bytes of a local image (e.g. `containers-storage:[…]NAME@DIGEST`)."""
        ...

    def delete_local(self, reference: str, *, timeout: Optional[float] = None) -> None:
        """Delete a local image (e.g. from containers-storage)."""
        ...
