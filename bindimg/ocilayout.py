"""OCI image layouts and archives on disk, as `bindimg export` writes them.

An image is named in a layout's `index.json` by its `org.opencontainers.image.ref.name`
annotation (`NAME@DIGEST`, the string skopeo's `oci:DIR:NAME@DIGEST` looks up). Images are
merged in from staging layouts beside the destination (same file system: blobs are moved, not
copied): blobs first, then `index.json` replaced atomically, so a killed run leaves the old
index or the new one, and every image either names whole. A staging layout starts with hard
links to the destination's blobs: skopeo's `oci:` destination reuses a blob whose file is
there (containers/image oci/layout/oci_dest.go `TryReusingBlobWithOptions`), so only missing
blobs are downloaded, and the destination is still not written before the merge. An archive
is the layout as one tar, packed deterministically.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import tempfile
from typing import Any, Optional

from bindimg import fsutil
from bindimg.errors import ExternalError, InputError

REF_NAME = "org.opencontainers.image.ref.name"
OCI_LAYOUT = b'{"imageLayoutVersion": "1.0.0"}'
STAGING_PREFIX = ".bindimg-export-"

Index = dict[str, Any]  # a parsed index.json


def empty_index() -> Index:
    return {"schemaVersion": 2, "manifests": []}


def ref_name(entry: Any) -> Optional[str]:
    """The ref name annotation of one descriptor of an index."""
    annotations = entry.get("annotations") if isinstance(entry, dict) else None
    return annotations.get(REF_NAME) if isinstance(annotations, dict) else None


def named(index: Index, image: str) -> Optional[dict[str, Any]]:
    """The descriptor of `index` whose ref name is `image` (`NAME@DIGEST`), if any."""
    return next((e for e in index.get("manifests") or [] if ref_name(e) == image), None)


def blob_path(layout: str, digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return os.path.join(layout, "blobs", algorithm, hexdigest)


def read_index(layout: str) -> Index:
    """`layout`'s index.json; an empty index when there is none yet. InputError if unreadable."""
    path = os.path.join(layout, "index.json")
    try:
        with open(path, "rb") as handle:
            document = fsutil.load_json(handle.read())
    except FileNotFoundError:
        return empty_index()
    except (OSError, ValueError) as error:
        raise InputError(
            f"is not a readable OCI index ({error}); give another destination", path=path
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("manifests", []), list):
        raise InputError("is not an OCI image index; give another destination", path=path)
    return document


def merge(stage: str, layout: str, image: str) -> Index:
    """Move the blobs of the staging layout `stage` into `layout`, then replace `layout`'s
    index.json with one naming `image` as `stage` does; the new index. Not thread-safe: the
    caller holds a lock. ExternalError if `stage` does not name `image`."""
    entry = named(read_index(stage), image)
    if entry is None:
        raise ExternalError("skopeo left no image in the staging layout; try again")
    os.makedirs(layout, exist_ok=True)
    for directory, _, names in os.walk(os.path.join(stage, "blobs")):
        target_dir = os.path.join(layout, os.path.relpath(directory, stage))
        os.makedirs(target_dir, exist_ok=True)
        for name in names:
            target = os.path.join(target_dir, name)
            if not os.path.exists(target):
                os.replace(os.path.join(directory, name), target)
    if not os.path.exists(os.path.join(layout, "oci-layout")):
        fsutil.write_atomic(os.path.join(layout, "oci-layout"), OCI_LAYOUT)
    index = read_index(layout)
    kept = [e for e in index.get("manifests") or [] if ref_name(e) != image]
    descriptor: dict[str, Any] = {k: entry[k] for k in ("mediaType", "digest", "size") if k in entry}
    descriptor["annotations"] = {REF_NAME: image}
    index["manifests"] = [*kept, descriptor]
    fsutil.write_atomic(os.path.join(layout, "index.json"), json.dumps(index, indent=2).encode() + b"\n")
    return index


def link_blobs(layout: str, stage: str) -> frozenset[str]:
    """Hard links in `stage` to every blob of `layout`; their paths relative to `stage`
    (`blobs/ALGORITHM/HEX`). Stops linking where the file system refuses (then skopeo
    downloads the rest, as without links)."""
    linked: set[str] = set()
    top = os.path.join(layout, "blobs")
    try:
        algorithms = sorted(os.listdir(top))
    except OSError:
        return frozenset()
    try:
        for algorithm in algorithms:
            target_dir = os.path.join(stage, "blobs", algorithm)
            os.makedirs(target_dir, exist_ok=True)
            with os.scandir(os.path.join(top, algorithm)) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        os.link(entry.path, os.path.join(target_dir, entry.name))
                        linked.add(os.path.join("blobs", algorithm, entry.name))
    except OSError:  # another file system, or one without hard links
        pass
    return frozenset(linked)


def written(stage: str, linked: frozenset[str] = frozenset()) -> int:
    """Bytes skopeo has written into the staging layout `stage` so far: its blobs (and the
    temporary files of blobs still arriving) except the `linked` ones; 0 if unreadable."""
    total = 0
    for directory, _, names in os.walk(stage):
        for name in names:
            relative = os.path.relpath(os.path.join(directory, name), stage)
            if relative in linked or relative in ("index.json", "oci-layout"):
                continue
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


def sweep_staging(parent: str) -> None:
    """Remove the staging directories that killed runs left in `parent` (named by their
    process id); a run calls it when it opens its destination, whether it then copies or not."""
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            pid = name[len(STAGING_PREFIX) :].split("-", 1)[0]
            if name.startswith(STAGING_PREFIX) and pid.isdigit() and not fsutil.running(int(pid)):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def staging_dir(parent: str) -> str:
    """A new staging directory of this run in `parent`."""
    return tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent)


def archived_index(archive: str) -> Index:
    """The `index.json` of an oci-archive, read without unpacking the rest. InputError if the
    file is no oci-archive."""
    try:
        with tarfile.open(archive) as tar:
            member = next((m for m in tar if os.path.normpath(m.name) == "index.json" and m.isfile()), None)
            stream = tar.extractfile(member) if member is not None else None
            document = fsutil.load_json(stream.read()) if stream is not None else None
    except (OSError, tarfile.TarError, ValueError) as error:
        raise _unreadable(archive, error) from None
    if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
        raise InputError("is not an oci-archive (no OCI index); give another destination", path=archive)
    return document


def unpack(archive: str, layout: str) -> None:
    """An existing oci-archive's layout (regular files under blobs/, index.json, oci-layout only)."""
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = os.path.normpath(member.name)
                if not member.isfile() or name.startswith(("/", "..")):
                    continue
                if name not in ("index.json", "oci-layout") and not name.startswith("blobs/"):
                    continue
                stream = tar.extractfile(member)
                assert stream is not None
                target = os.path.join(layout, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as out:
                    shutil.copyfileobj(stream, out)
    except (OSError, tarfile.TarError) as error:
        raise _unreadable(archive, error) from None


def _unreadable(archive: str, error: Exception) -> InputError:
    return InputError(f"is not a readable oci-archive ({error}); give another destination", path=archive)


def pack(layout: str, archive: str) -> None:
    """The layout as a tar, entries sorted, owned by root, dated 0: same images, same bytes."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory, dirs, names in os.walk(layout):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(directory, name)
                info = tar.gettarinfo(path, os.path.relpath(path, layout))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = 0
                info.mode = 0o644
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
