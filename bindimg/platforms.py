"""Platforms: which image of an index to embed, and whether a pinned image serves a target.

`--platform OS/ARCH[/VARIANT]` names the platforms the OS image is built for (default for
`add`: the one it runs on, which inside `podman build --platform` is the target). bootc pulls
every bound image for the host's platform and ignores `Arch=`, so an image without a target
platform breaks only at upgrade, on that hardware: `missing` finds it at build time.

The choice of an index entry is bindimg's own (not skopeo's), so that it knows the exact
manifest it fetches and flattens, and can tell the user which platforms an index has when
none fits.
"""

from __future__ import annotations

import platform as _platform  # the standard library module
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from bindimg.errors import InputError

# uname -m → OCI architecture and variant (the Go names containers/image uses).
_MACHINES: Mapping[str, tuple[str, Optional[str]]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}
# A missing variant means this one (OCI image-index spec: arm64 is v8).
_DEFAULT_VARIANT = {"arm64": "v8"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InputError(f"--platform {text}: write OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def parse_all(cls, texts: Sequence[str]) -> tuple[Platform, ...]:
        """Each `--platform` given, in order, duplicates dropped; an InputError for a bad one."""
        return tuple(dict.fromkeys(cls.parse(text) for text in texts))

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine().lower()
        arch, variant = _MACHINES.get(machine, (machine, None))
        return cls("linux", arch, variant)

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Optional[Platform]:
        """The platform an index entry or an image config declares, if it declares one."""
        os_, arch = document.get("os"), document.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str) or not os_ or not arch:
            return None
        variant = document.get("variant")
        return cls(os_, arch, variant if isinstance(variant, str) and variant else None)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @property
    def skopeo_args(self) -> tuple[str, ...]:
        """(os, arch[, variant]) for skopeo's --override-* options."""
        return (self.os, self.architecture, *([self.variant] if self.variant else []))

    def accepts(self, other: Platform) -> bool:
        """Whether an image for `other` is the one wanted (no variant asked: any variant)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        if self.variant is None:
            return True
        default = _DEFAULT_VARIANT.get(self.architecture)
        return (other.variant or default) == (self.variant or default)


def choose(manifests: Sequence[Mapping[str, Any]], wanted: Platform, image: str) -> Mapping[str, Any]:
    """The index entry for `wanted`: an exact variant first, then the first acceptable one."""
    candidates: list[tuple[Mapping[str, Any], Platform]] = []
    offered: list[str] = []
    for entry in manifests:
        found = Platform.of(entry.get("platform") or {})
        if found is None:
            continue
        offered.append(str(found))
        if wanted.accepts(found):
            candidates.append((entry, found))
    if not candidates:
        listed = ", ".join(sorted(set(offered))) or "none"
        raise InputError(f"{image} has no {wanted} image (it has: {listed}); choose one with --platform")
    default = _DEFAULT_VARIANT.get(wanted.architecture)
    for entry, found in candidates:
        if found.variant in (wanted.variant, None, default):
            return entry
    return candidates[0][0]


LIST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
# Index entries that are no platform's image: buildx attestation manifests declare unknown/unknown.
_NOT_A_PLATFORM = "unknown"


def offered(top: Mapping[str, Any], config: Optional[Mapping[str, Any]] = None) -> tuple[str, ...]:
    """The platforms a pinned image serves, sorted: an index's entries, or a single manifest's
    config (`config`, the image config JSON). Shapes: `linux/amd64`, `linux/arm64/v8`."""
    if isinstance(top.get("manifests"), list):
        entries = [e.get("platform") for e in top["manifests"] if isinstance(e, dict)]
        found = [Platform.of(e) for e in entries if isinstance(e, dict)]
    else:
        found = [Platform.of(config or {})]
    return tuple(sorted({str(p) for p in found if p is not None and p.os != _NOT_A_PLATFORM}))


def missing(targets: Sequence[Platform], offers: Sequence[str]) -> list[Platform]:
    """The targets none of the offered platforms (as `offered` gives them) serves."""
    served = [Platform.parse(text) for text in offers]
    return [t for t in targets if not any(t.accepts(p) for p in served)]


def problem(image: str, targets: Sequence[Platform], offers: Sequence[str], media_type: str) -> Optional[str]:
    """Why devices of some target platform cannot pull `image` (one line, with what to do), or
    None when it serves them all. `media_type` is that of the pinned manifest: a single-platform
    one is called so, since pinning the tag's index instead may serve every target."""
    absent = missing(targets, offers)
    if not absent:
        return None
    single = media_type not in LIST_MEDIA_TYPES
    names = ", ".join(str(p) for p in absent)
    has = ", ".join(offers) or "no platform"
    what = f"a single-platform manifest: {has} only" if single else f"it has {has}"
    fix = "use an image that has it"
    if single:
        fix = "pin a multi-platform index that has it (the tag's, if it has one)"
    return (
        f"{image} has no {names} image ({what}); bootc pulls the host's platform and fails the upgrade "
        f"on such a device: {fix}, or build for other platforms"
    )
