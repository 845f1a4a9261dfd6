"""Deterministic OCI images and OCI image layouts, written from Python with no external tool.

Everything here is byte-for-byte reproducible: tar entries are sorted, owned by 0:0 with a
fixed mtime, gzip streams carry mtime 0, JSON is serialised with sorted keys and no spaces.
The same arguments therefore always give the same layer, config and manifest digests.

Building blocks:

* a *layer spec* is a mapping ``path -> content`` (paths relative to ``/``):
  ``bytes``/``str`` is a regular file (0644), ``File(data, mode, xattrs)`` a file with a mode,
  ``Symlink(target)`` a symlink, ``None`` deletes the path of a lower layer (whiteout
  ``dir/.wh.name``), ``OPAQUE`` makes a directory opaque (``dir/.wh..wh..opq``: everything
  lower layers put below it is hidden). Parent directories are added automatically (0755).
* ``image(layers, platform=...)`` -> ``Image`` (manifest, config and layer blobs in memory);
* ``index(images)`` -> ``Index`` (an OCI image index over several images);
* ``write_layout(dir, tag, content)`` writes an ``Image``/``Index`` into an OCI layout
  directory (``oci:DIR:TAG`` for skopeo); a directory may hold several tags.

Ready-made test images (``marker`` makes the content, hence the digests, distinct):
``app_image``, ``multiarch_index``, ``whiteout_image``, ``opaque_image``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Optional, Union

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST: Final = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG: Final = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME: Final = "org.opencontainers.image.ref.name"

FIXED_MTIME: Final = 0
FIXED_CREATED: Final = "1970-01-01T00:00:00Z"
DEFAULT_PLATFORM: Final = "linux/amd64"
DEFAULT_PLATFORMS: Final = ("linux/amd64", "linux/arm64")
DEFAULT_ENV: Final = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


class _Opaque:
    def __repr__(self) -> str:
        return "OPAQUE"


OPAQUE: Final = _Opaque()
"""Layer-spec value: the directory becomes opaque (``.wh..wh..opq``)."""


@dataclass(frozen=True)
class File:
    """A regular file with an explicit mode (``bytes``/``str`` values get 0644) and extended
    attributes (``(("security.capability", b"..."),)``, written as PAX ``SCHILY.xattr.*``)."""

    data: Union[bytes, str]
    mode: int = 0o644
    xattrs: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Symlink:
    target: str


Content = Union[bytes, str, File, Symlink, _Opaque, None]
LayerSpec = Mapping[str, Content]


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Image:
    """A single-platform image: manifest, config and (gzip) layer blobs."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]
    platform: str
    specs: tuple[LayerSpec, ...] = field(repr=False, compare=False)

    @property
    def digest(self) -> str:
        """The manifest digest: what a registry reports for this image."""
        return self.manifest.digest

    def blobs(self) -> Iterator[Blob]:
        yield self.manifest
        yield self.config
        yield from self.layers

    def files(self) -> dict[str, Content]:
        """The image's final filesystem view (see ``apply_layers``)."""
        return apply_layers(self.specs)


@dataclass(frozen=True)
class Index:
    """An OCI image index (multi-platform image)."""

    manifest: Blob
    images: tuple[Image, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    def blobs(self) -> Iterator[Blob]:
        yield self.manifest
        for img in self.images:
            yield from img.blobs()

    def image_for(self, platform: str) -> Image:
        for img in self.images:
            if img.platform == platform:
                return img
        raise KeyError(platform)


def parse_platform(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform must be os/arch[/variant], not {platform!r}")
    out = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


# --- layers ---------------------------------------------------------------------------


def _norm(path: str) -> str:
    p = os.path.normpath("/" + path.strip()).lstrip("/")
    if not p or p == ".":
        raise ValueError(f"bad path in layer spec: {path!r}")
    return p


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _tarinfo(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = linkname
    ti.mtime = FIXED_MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def layer_tar(spec: LayerSpec) -> bytes:
    """The uncompressed, deterministic tar stream of one layer."""
    entries: dict[str, tuple[tarfile.TarInfo, bytes]] = {}

    def add_dir(path: str) -> None:
        if path not in entries:
            entries[path] = (_tarinfo(path, tarfile.DIRTYPE, 0o755), b"")

    def add_file(path: str, data: bytes, mode: int, xattrs: tuple[tuple[str, bytes], ...] = ()) -> None:
        info = _tarinfo(path, tarfile.REGTYPE, mode, len(data))
        info.pax_headers = {f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape") for k, v in xattrs}
        entries[path] = (info, data)

    for raw_path, content in spec.items():
        path = _norm(raw_path)
        for parent in _parents(path):
            add_dir(parent)
        head, _, base = path.rpartition("/")
        prefix = head + "/" if head else ""
        if content is None:
            add_file(prefix + ".wh." + base, b"", 0o644)
        elif isinstance(content, _Opaque):
            add_dir(path)
            add_file(path + "/.wh..wh..opq", b"", 0o644)
        elif isinstance(content, Symlink):
            entries[path] = (_tarinfo(path, tarfile.SYMTYPE, 0o777, linkname=content.target), b"")
        elif isinstance(content, File):
            data = content.data.encode() if isinstance(content.data, str) else content.data
            add_file(path, data, content.mode, content.xattrs)
        else:
            add_file(path, content.encode() if isinstance(content, str) else content, 0o644)

    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for name in sorted(entries):
            info, data = entries[name]
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def layer(spec: LayerSpec) -> tuple[Blob, str]:
    """A gzip layer blob and its diff_id (sha256 of the uncompressed tar)."""
    raw = layer_tar(spec)
    return Blob(OCI_LAYER_GZIP, gzip.compress(raw, compresslevel=6, mtime=0)), sha256_digest(raw)


def apply_layers(specs: Sequence[LayerSpec]) -> dict[str, Content]:
    """What the layers amount to, applied in order: ``path -> content`` of files and links.

    Whiteouts and opaque markers are resolved (nothing of them is left), directories are
    not listed. This is the expected content of a correctly flattened image.
    """
    files: dict[str, Content] = {}
    for spec in specs:
        items = [(_norm(p), c) for p, c in spec.items()]
        # A layer's whiteouts and opaque markers hide what the layers below it put there...
        for path, content in items:
            if content is None or isinstance(content, _Opaque):
                for p in [p for p in files if p == path or p.startswith(path + "/")]:
                    del files[p]
        # ...never what the layer itself adds.
        for path, content in items:
            if not (content is None or isinstance(content, _Opaque)):
                files[path] = content
    return dict(sorted(files.items()))


# --- images ---------------------------------------------------------------------------


def image(
    layers: Sequence[LayerSpec],
    *,
    platform: str = DEFAULT_PLATFORM,
    labels: Optional[Mapping[str, str]] = None,
    env: Sequence[str] = DEFAULT_ENV,
    cmd: Optional[Sequence[str]] = None,
    annotations: Optional[Mapping[str, str]] = None,
) -> Image:
    """A single-platform OCI image made of ``layers`` (bottom first)."""
    if not layers:
        raise ValueError("an image needs at least one layer")
    built = [layer(spec) for spec in layers]
    blobs = tuple(b for b, _ in built)
    diff_ids = tuple(d for _, d in built)
    container_config: dict[str, Any] = {"Env": list(env)}
    if labels:
        container_config["Labels"] = dict(labels)
    if cmd is not None:
        container_config["Cmd"] = list(cmd)
    config = {
        **parse_platform(platform),
        "created": FIXED_CREATED,
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [
            {"created": FIXED_CREATED, "created_by": f"bindimg tests: layer {i}"} for i in range(len(blobs))
        ],
    }
    config_blob = Blob(OCI_CONFIG, canonical_json(config))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [b.descriptor() for b in blobs],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return Image(
        manifest=Blob(OCI_MANIFEST, canonical_json(manifest)),
        config=config_blob,
        layers=blobs,
        diff_ids=diff_ids,
        platform=platform,
        specs=tuple(layers),
    )


def index(images: Sequence[Image], *, annotations: Optional[Mapping[str, str]] = None) -> Index:
    """An OCI image index listing ``images`` with their platforms."""
    if not images:
        raise ValueError("an index needs at least one image")
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [img.manifest.descriptor(platform=parse_platform(img.platform)) for img in images],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return Index(manifest=Blob(OCI_INDEX, canonical_json(doc)), images=tuple(images))


# --- layout ---------------------------------------------------------------------------


def write_layout(
    layout_dir: Union[str, os.PathLike[str]],
    tag: str,
    content: Union[Image, Index, Sequence[LayerSpec]],
    *,
    platforms: Optional[Sequence[str]] = None,
) -> Union[Image, Index]:
    """Write ``content`` into the OCI layout ``layout_dir`` under ``tag``; return it.

    ``content`` is an ``Image``, an ``Index`` or a list of layer specs: one image, or with
    ``platforms`` an index of one image per platform (same layers, per-platform config).
    An existing layout is added to (a ``tag`` already there is replaced), so one directory
    can hold several images. skopeo reads it as ``oci:<layout_dir>:<tag>``.
    """
    if isinstance(content, (Image, Index)):
        if platforms is not None:
            raise ValueError("platforms only applies to a list of layer specs")
        built: Union[Image, Index] = content
    elif platforms is None:
        built = image(content)
    else:
        built = index([image(content, platform=p) for p in platforms])

    root = Path(layout_dir)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    for blob in built.blobs():
        path = blob_dir / blob.digest.split(":", 1)[1]
        if not path.exists():
            path.write_bytes(blob.data)

    index_path = root / "index.json"
    entries: list[dict[str, Any]] = []
    if index_path.exists():
        entries = [
            d
            for d in json.loads(index_path.read_bytes()).get("manifests", [])
            if d.get("annotations", {}).get(REF_NAME) != tag
        ]
    entries.append(built.manifest.descriptor(annotations={REF_NAME: tag}))
    entries.sort(key=lambda d: str(d.get("annotations", {}).get(REF_NAME, "")))
    index_path.write_bytes(canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    return built


# --- ready-made test images -----------------------------------------------------------


def app_layers(marker: str, platform: str = DEFAULT_PLATFORM) -> list[LayerSpec]:
    """Two layers; ``marker`` (and the platform) end up in files, so digests differ by them."""
    return [
        {
            "etc/bindimg-test/marker": marker + "\n",
            "etc/bindimg-test/layer1": "first layer\n",
        },
        {
            "usr/share/bindimg-test/platform": platform + "\n",
            "usr/share/bindimg-test/layer2": f"second layer of {marker}\n",
        },
    ]


def app_image(marker: str, *, platform: str = DEFAULT_PLATFORM) -> Image:
    """(a) A single-platform image with two layers."""
    return image(
        app_layers(marker, platform),
        platform=platform,
        labels={"org.bindimg.test.marker": marker},
    )


def multiarch_index(marker: str, *, platforms: Sequence[str] = DEFAULT_PLATFORMS) -> Index:
    """(b) An index with one image (own manifest, config and layers) per platform."""
    return index([app_image(marker, platform=p) for p in platforms])


def whiteout_layers(marker: str) -> list[LayerSpec]:
    return [
        {
            "etc/gone": "deleted by the second layer\n",
            "etc/kept": marker + "\n",
        },
        {
            "etc/gone": None,
            "etc/bindimg-test/marker": marker + "\n",
        },
    ]


def whiteout_image(marker: str, *, platform: str = DEFAULT_PLATFORM) -> Image:
    """(c) The second layer deletes ``/etc/gone`` of the first (``etc/.wh.gone``)."""
    return image(whiteout_layers(marker), platform=platform)


def opaque_layers(marker: str) -> list[LayerSpec]:
    return [
        {
            "var/lib/bindimg-test/old": "hidden by the opaque marker\n",
            "etc/bindimg-test/marker": marker + "\n",
        },
        {
            "var/lib/bindimg-test": OPAQUE,
            "var/lib/bindimg-test/new": marker + "\n",
        },
    ]


def opaque_image(marker: str, *, platform: str = DEFAULT_PLATFORM) -> Image:
    """(d) The second layer makes ``/var/lib/bindimg-test`` opaque (``.wh..wh..opq``)."""
    return image(opaque_layers(marker), platform=platform)
