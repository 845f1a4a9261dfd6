"""Flatten an image to one layer: why and how.

Why: an image store nested in an OS image layer loses whiteouts and opaque-directory markers
(`.wh.NAME`, `.wh..wh..opq`): the outer build reads them as its own and drops them, so the
embedded image would show deleted files or fail to copy out. Applying every layer in order
into one layer leaves no marker to lose.

How: the layers (uncompressed tars, bottom first) are read into a tree, each layer's
deletions applied to what the layers below it put there, then its entries added. The
result is written as one tar whose bytes depend only on the input: entries depth first with
each directory's names sorted, headers written here (not by `tarfile`, whose PAX output
differs between Python versions), every file's mode (setuid included), owner, mtime,
xattrs (`security.capability` as PAX `SCHILY.xattr.*`), hardlinks, device nodes and
symlinks kept. The layer is stored uncompressed: its digest then is its diff_id, and no
compressor version (zlib, zlib-ng) can change the flattened image's digest.

One module over 400 lines: the tree and its byte-exact tar writer are one algorithm whose
halves share the private `_Node`/`_Entry` types.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional

from bindimg import fsutil
from bindimg.errors import InputError

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
FLATTENED_FROM = "dev.bindimg.flattened-from"
# PAX records carried over: extended attributes and ACLs. Path, size, owner and times are
# written from the entry itself; inode numbers and the like would be wrong after flattening.
_KEPT_PAX_PREFIXES = ("SCHILY.xattr.", "LIBARCHIVE.xattr.", "SCHILY.acl.")
_BLOCK = 512
_CHUNK = 1 << 20
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # names and values that are not UTF-8 keep their bytes


def is_marker(name: str) -> bool:
    """Whether a layer tar entry named `name` is a whiteout or opaque-directory marker."""
    return posixpath.basename(name.rstrip("/")).startswith(WHITEOUT_PREFIX)


def markers(layers: Sequence[str], limit: int = 3) -> list[str]:
    """Up to `limit` whiteout or opaque markers found in the layers, as `layer N: path`."""
    found: list[str] = []
    for number, path in enumerate(layers, 1):
        with _open_layer(path, number) as tar:
            for info in tar:
                if is_marker(_normalise(info.name, number)):
                    found.append(f"layer {number}: {info.name}")
                    if len(found) >= limit:
                        return found
    return found


@dataclass(frozen=True)
class Flattened:
    digest: str  # the flattened image's manifest digest
    diff_id: str
    size: int  # bytes of the layer tar


def flatten(
    layers: Sequence[str], config: bytes, upstream: str, layout: str, tag: str = "flattened"
) -> Flattened:
    """Write the one-layer image of `layers` + `config` into the OCI layout `layout` as `tag`.

    `upstream` (the digest the image was fetched by) is recorded in the manifest's
    annotations and the new history entry; it is part of the input, so the same upstream
    image always flattens to the same digest.
    """
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with ExitStack() as stack:
        tars = [stack.enter_context(_open_layer(path, n)) for n, path in enumerate(layers, 1)]
        tree = _apply(tars)
        fd, temp = tempfile.mkstemp(prefix=".layer-", dir=blobs)
        try:
            with os.fdopen(fd, "wb") as out:
                writer = _HashingWriter(out)
                _write_tree(tree, tars, writer)
            diff_id = "sha256:" + writer.sha256.hexdigest()
            os.replace(temp, _blob_path(layout, diff_id))
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
    config_blob = _canonical(_flattened_config(config, diff_id, len(layers), upstream))
    _write_blob(layout, config_blob)
    manifest = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config_blob), "size": len(config_blob)},
            "layers": [{"mediaType": OCI_LAYER_TAR, "digest": diff_id, "size": writer.size}],
            "annotations": {FLATTENED_FROM: upstream},
        }
    )
    _write_blob(layout, manifest)
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": _digest(manifest),
        "size": len(manifest),
        "annotations": {REF_NAME: tag},
    }
    with open(os.path.join(layout, "oci-layout"), "wb") as handle:
        handle.write(_canonical({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(layout, "index.json"), "wb") as handle:
        handle.write(_canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]}))
    return Flattened(_digest(manifest), diff_id, writer.size)


# --- reading and applying layers -------------------------------------------------------------


def _open_layer(path: str, number: int) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:", encoding=_ENCODING, errors=_ERRORS)
    except (tarfile.TarError, OSError) as error:
        raise InputError(
            f"layer {number} is not a readable tar ({error}); the image is damaged", path=path
        ) from None


def _normalise(name: str, number: int) -> str:
    """A member name as a path below the root ('' for the root itself)."""
    path = posixpath.normpath("/" + name).lstrip("/")
    if ".." in name.split("/"):
        raise InputError(f"layer {number} has an entry outside the root ({name!r}); the image is unsafe")
    return "" if path in (".", "") else path


@dataclass(eq=False)  # identity matters: one object per inode
class _Inode:
    layer: int
    info: tarfile.TarInfo  # the entry that carries the data and the metadata


@dataclass
class _Entry:
    layer: int
    info: tarfile.TarInfo
    inode: Optional[_Inode]  # None for directories


class _Node:
    __slots__ = ("children", "entry")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.entry: Optional[_Entry] = None


def _lookup(root: _Node, path: str) -> Optional[_Node]:
    node = root
    for part in path.split("/") if path else ():
        child = node.children.get(part)
        if child is None:
            return None
        node = child
    return node


def _ensure(root: _Node, path: str) -> _Node:
    """The node of `path`, created with its parents; a lower layer's file where a parent
    directory now is gives way to it (as when the layer is extracted)."""
    node = root
    parts = path.split("/") if path else []
    for depth, part in enumerate(parts):
        child = node.children.get(part)
        if child is None:
            child = node.children[part] = _Node()
        elif depth < len(parts) - 1 and child.entry is not None and child.entry.inode is not None:
            child.entry = None
        node = child
    return node


def _apply(tars: Sequence[tarfile.TarFile]) -> _Node:
    root = _Node()
    for number, tar in enumerate(tars, 1):
        members = [(info, _normalise(info.name, number)) for info in tar.getmembers()]
        # A layer's markers hide what the layers below it put there, never its own entries.
        for _, path in members:
            parent, base = posixpath.split(path)
            if base == OPAQUE_MARKER:
                node = _lookup(root, parent)
                if node is not None:
                    node.children.clear()
            elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                continue  # other AUFS metadata (.wh..wh.plnk, ...): dropped below
            elif base.startswith(WHITEOUT_PREFIX):
                node = _lookup(root, parent)
                if node is not None:
                    node.children.pop(base[len(WHITEOUT_PREFIX) :], None)
        for info, path in members:
            if posixpath.basename(path).startswith(WHITEOUT_PREFIX):
                continue
            node = _ensure(root, path)
            if info.isdir():
                node.entry = _Entry(number, info, None)
                continue
            node.children.clear()  # a non-directory replaces a directory and all below it
            if info.islnk():
                target = _lookup(root, _normalise(info.linkname, number))
                if target is None or target.entry is None or target.entry.inode is None:
                    raise InputError(
                        f"layer {number}: hardlink {info.name} -> {info.linkname} names no file; "
                        "the image is damaged"
                    )
                node.entry = _Entry(number, info, target.entry.inode)
            else:
                node.entry = _Entry(number, info, _Inode(number, info))
    return root


def _walk(node: _Node, path: str = "") -> Iterator[tuple[str, _Entry]]:
    """Entries depth first, each directory's names in byte order."""
    if node.entry is not None:
        yield path, node.entry
    for name in sorted(node.children, key=lambda n: n.encode(_ENCODING, _ERRORS)):
        yield from _walk(node.children[name], f"{path}/{name}" if path else name)


# --- writing the layer -----------------------------------------------------------------------


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.sha256.update(data)
        self.size += len(data)


def _write_tree(root: _Node, tars: Sequence[tarfile.TarFile], out: _HashingWriter) -> None:
    first_path: dict[int, str] = {}  # id(inode) -> the path written with its data
    for path, entry in _walk(root):
        info = entry.info
        if entry.inode is None:
            out.write(_header("./" if not path else path + "/", info, tarfile.DIRTYPE, 0, ""))
            continue
        source = entry.inode.info
        if id(entry.inode) in first_path:
            out.write(_header(path, source, tarfile.LNKTYPE, 0, first_path[id(entry.inode)]))
            continue
        first_path[id(entry.inode)] = path
        if source.isreg():
            out.write(_header(path, source, tarfile.REGTYPE, source.size, ""))
            _copy_data(tars[entry.inode.layer - 1], source, path, out)
        else:
            out.write(_header(path, source, source.type, 0, source.linkname))
    out.write(b"\0" * (2 * _BLOCK))


def _copy_data(tar: tarfile.TarFile, info: tarfile.TarInfo, path: str, out: _HashingWriter) -> None:
    stream = tar.extractfile(info)
    if stream is None:
        raise InputError(f"cannot read {path} from its layer; the image is damaged")
    left = info.size
    with stream:
        while left:
            chunk = stream.read(min(left, _CHUNK))
            if not chunk:
                raise InputError(f"{path} is shorter than its tar header says; the image is damaged")
            out.write(chunk)
            left -= len(chunk)
    if info.size % _BLOCK:
        out.write(b"\0" * (_BLOCK - info.size % _BLOCK))


def _encode(text: str) -> bytes:
    return text.encode(_ENCODING, _ERRORS)


def _header(name: str, info: tarfile.TarInfo, kind: bytes, size: int, linkname: str) -> bytes:
    """A ustar header, preceded by a PAX header when a value does not fit or must be kept."""
    pax: dict[str, bytes] = {}
    for record, text in info.pax_headers.items():
        if record.startswith(_KEPT_PAX_PREFIXES):
            pax[record] = _encode(text)
    fields = {"path": _encode(name), "linkpath": _encode(linkname)}
    for key, limit in (("path", 100), ("linkpath", 100)):
        if len(fields[key]) > limit or not fields[key].isascii():
            pax[key] = fields[key]
    owners = {"uname": _encode(info.uname or ""), "gname": _encode(info.gname or "")}
    for key, owner in owners.items():
        if len(owner) > 32 or not owner.isascii():
            pax[key] = owner
    mtime = info.pax_headers.get("mtime")  # sub-second precision, kept as written upstream
    if mtime is not None and "." in mtime:
        pax["mtime"] = _encode(mtime)
    numbers = {"uid": (info.uid, 8), "gid": (info.gid, 8), "size": (size, 12), "mtime": (int(info.mtime), 12)}
    for key, (number, width) in numbers.items():
        if not 0 <= number < 8 ** (width - 1):
            pax[key] = str(number).encode()
    block = b""
    if pax:
        records = b"".join(_pax_record(k, v) for k, v in sorted(pax.items()))
        block = _ustar(b"././@PaxHeader", 0o644, 0, 0, len(records), 0, tarfile.XHDTYPE, b"", b"", b"", 0, 0)
        block += records + b"\0" * (-len(records) % _BLOCK)
    return block + _ustar(
        fields["path"][:100],
        info.mode & 0o7777,
        info.uid,
        info.gid,
        size,
        int(info.mtime),
        kind,
        fields["linkpath"][:100],
        owners["uname"][:32],
        owners["gname"][:32],
        info.devmajor if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE) else 0,
        info.devminor if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE) else 0,
    )


def _pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode(_ENCODING) + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode() + body


def _octal(value: int, width: int) -> bytes:
    if not 0 <= value < 8 ** (width - 1):
        value = 0  # carried by the PAX header
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _ustar(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    kind: bytes,
    linkname: bytes,
    uname: bytes,
    gname: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    header = b"".join(
        (
            name.ljust(100, b"\0"),
            _octal(mode, 8),
            _octal(uid, 8),
            _octal(gid, 8),
            _octal(size, 12),
            _octal(mtime, 12),
            b" " * 8,  # checksum, computed below over these spaces
            kind,
            linkname.ljust(100, b"\0"),
            b"ustar\x0000",
            uname.ljust(32, b"\0"),
            gname.ljust(32, b"\0"),
            _octal(devmajor, 8),
            _octal(devminor, 8),
            b"\0" * 155,  # prefix: long names go to PAX instead
        )
    ).ljust(_BLOCK, b"\0")
    checksum = f"{sum(header):06o}".encode() + b"\0 "
    return header[:148] + checksum + header[156:]


# --- config, manifest, layout ----------------------------------------------------------------


def _flattened_config(config: bytes, diff_id: str, layer_count: int, upstream: str) -> dict[str, Any]:
    try:
        document = fsutil.load_json(config)
    except ValueError:
        raise InputError(f"the image config of {upstream} is not JSON; the image is damaged") from None
    if not isinstance(document, dict):
        raise InputError(f"the image config of {upstream} is not an object; the image is damaged")
    document["rootfs"] = {"type": "layers", "diff_ids": [diff_id]}
    history: list[Any] = []
    for item in document.get("history") or []:
        if isinstance(item, Mapping):
            history.append({**item, "empty_layer": True})
    added: dict[str, Any] = {
        "created_by": "bindimg flatten",
        "comment": f"{layer_count} layers of {upstream} applied into one (whiteouts resolved)",
    }
    if isinstance(document.get("created"), str):
        added["created"] = document["created"]
    history.append(added)
    document["history"] = history
    return document


def _canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blob_path(layout: str, digest: str) -> str:
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def _write_blob(layout: str, data: bytes) -> None:
    with open(_blob_path(layout, _digest(data)), "wb") as handle:
        handle.write(data)
