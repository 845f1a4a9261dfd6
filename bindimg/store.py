"""The embedded image store: a containers/storage directory under /usr inside the image root.

podman reads it as an additional image store, read-only. For that it needs the lock files
that containers-common creates for its own empty `/usr/lib/containers/storage` (a read-only
store cannot create them), and the same driver as the podman that reads it: an overlay
podman does not see a vfs store. bootc updates only `/usr`, hence the check on the path.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import posixpath
import re
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

from bindimg import fsutil
from bindimg.defaults import DEFAULT_STORE as DEFAULT_STORE
from bindimg.defaults import DRIVERS as DRIVERS
from bindimg.errors import InputError
from bindimg.pin import STORAGE_KEYS
from bindimg.rootfs import Root

# vfs has no additional image stores: `vfs.imagestore` is its read-only store option.
VFS_KEYS = ("vfs.imagestore",)
# No mount happens while an image is copied in; the overlay driver still refuses to start on
# overlayfs (a container build's own file system) unless it is given a mount program, and
# it bind-mounts its own directory (not permitted in a build container) unless told not to.
_OVERLAY_OPTIONS = ":overlay.mount_program=/bin/true,overlay.skip_mount_home=true"
# What `containers-storage:[DRIVER@ROOT+RUNROOT:OPTIONS]` uses as separators.
_SPEC_CHARACTERS = "[]:+@"
# The only symlinks containers/storage makes in a store's own directories: overlay's short
# layer names (drivers/overlay/overlay.go, linkDir). Layer contents are not looked at.
_OWN_LINK = re.compile(r"overlay/l/[A-Z0-9]+ -> \.\./[0-9a-f]{64}/diff")
_STRUCTURE_DEPTH = 3  # STORE/overlay/<layer>/diff: a layer's contents start below
MAX_INDEX_BYTES = 256 * 1024 * 1024  # images.json: about 1 KiB per image
# The images a run has copied in but not kept yet (embed.py); absent between runs.
_JOURNAL = "bindimg-staging.json"


@dataclass(frozen=True)
class Layer:
    """One entry of containers/storage's `<driver>-layers/layers.json`."""

    id: str
    parent: Optional[str]
    compressed_digest: Optional[str]  # the blob it was stored from
    diff_digest: Optional[str]  # its plain tar's digest (the config's diff_id)
    diff_size: int  # bytes of its plain tar


class Store:
    """A store at `inner` (a path inside `root`) for `driver`."""

    def __init__(
        self, root: Root, inner: str = DEFAULT_STORE, driver: str = "overlay", *, reading: bool = False
    ) -> None:
        """`reading`: only its index is read (list, lint), so it need not lie under /usr."""
        if driver not in DRIVERS:
            raise InputError(
                f"--driver {driver}: choose overlay or vfs (the driver of the podman that reads it)"
            )
        normal = posixpath.normpath(inner) if inner.startswith("/") else ""
        if not normal.startswith("/usr/") or any(c in normal for c in _SPEC_CHARACTERS):
            raise InputError(
                f"--store {inner}: give an absolute path under /usr (bootc updates only /usr; "
                "/var and /etc are not replaced on upgrade), without [ ] : + @"
            )
        self.root = root
        self.inner = normal
        self.driver = driver
        # A store reached through a link out of /usr would not be replaced by bootc on upgrade.
        self.host = (
            root.resolve(normal) if reading else root.resolve_within(normal, "/usr", "the image store")
        )
        if any(c in self.host for c in _SPEC_CHARACTERS):
            raise InputError(
                f"the image store's path on this machine has one of {_SPEC_CHARACTERS}, which skopeo's "
                "containers-storage: syntax cannot carry; use another --root",
                path=self.host,
            )

    @property
    def storage_keys(self) -> tuple[str, ...]:
        """The `--storage-opt` keys that add this store to a podman of its driver."""
        return VFS_KEYS if self.driver == "vfs" else STORAGE_KEYS

    @property
    def storage_arg(self) -> str:
        """The podman global argument that adds this store, as the unit sees it."""
        return f"--storage-opt={self.storage_keys[0]}={self.inner}"

    def _path(self, *parts: str) -> str:
        """A path in the store, its links resolved inside the root: never out of the store."""
        name = posixpath.join(*parts)
        inner = posixpath.join(self.inner, name)
        return self.root.resolve_within(inner, self.inner, f"{name} in the image store")

    def check_confined(self) -> None:
        """Refuse a symlink in the store's own directories that containers/storage did not make:
        skopeo follows it on the host, out of the root (SPEC invariant 6)."""
        for path, target in self.root.symlinks_below(self.inner, _STRUCTURE_DEPTH):
            relative = os.path.relpath(path, self.host)
            if not _OWN_LINK.fullmatch(f"{relative} -> {target}"):
                raise InputError(
                    f"is a symlink to {target} in the image store, which skopeo would follow on the host "
                    "(out of the store); remove it",
                    path=path,
                )

    @property
    def lock_files(self) -> tuple[str, str]:
        return (
            self._path(f"{self.driver}-images", "images.lock"),
            self._path(f"{self.driver}-layers", "layers.lock"),
        )

    def init(self) -> list[str]:
        """Create the store's directories (0700, as containers-common does) and lock files.

        Idempotent; returns what it created, outermost first, so a failed run can remove it.
        """
        created: list[str] = []
        missing: list[str] = []
        path = self.host
        while not os.path.lexists(path):
            missing.append(path)
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise InputError("is in the way of the image store; it is not a directory", path=path)
        self.check_confined()
        try:
            for directory in reversed(missing):
                os.mkdir(directory, 0o755)
                created.append(directory)
            for lock in self.lock_files:
                directory = os.path.dirname(lock)
                if not os.path.isdir(directory):
                    os.mkdir(directory, 0o700)
                    created.append(directory)
                if not os.path.exists(lock):
                    with open(lock, "ab"):
                        pass
                    created.append(lock)
        except OSError as error:
            self.remove_created(created)  # all or nothing: no half store (e.g. out of space)
            raise InputError(
                f"cannot create the image store: {error.strerror}", path=error.filename
            ) from None
        return created

    def _index(self, kind: str) -> list[dict[str, Any]]:
        """The records of `<driver>-KIND/KIND.json` (images or layers); [] without a store."""
        path = self._path(f"{self.driver}-{kind}", f"{kind}.json")
        try:
            document = fsutil.load_json(fsutil.read_regular(path, MAX_INDEX_BYTES))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except (fsutil.NotRegularFileError, fsutil.FileTooLargeError) as error:
            raise InputError(f"is not the image store index ({error}); remove it", path=path) from None
        except OSError as error:
            raise InputError(f"cannot read the image store index: {error.strerror}", path=path) from None
        except ValueError:
            raise InputError("is not valid JSON; remove the image store and embed again", path=path) from None
        return [r for r in document if isinstance(r, dict)] if isinstance(document, list) else []

    def names(self) -> set[str]:
        """Every image name in the store's own index (`<driver>-images/images.json`)."""
        names: set[str] = set()
        for image in self._index("images"):
            names.update(n for n in image.get("names") or [] if isinstance(n, str))
        return names

    def layers(self) -> dict[str, Layer]:
        """The store's layers by id (`<driver>-layers/layers.json`)."""
        found: dict[str, Layer] = {}
        for record in self._index("layers"):
            layer_id = record.get("id")
            if isinstance(layer_id, str):
                size = record.get("diff-size")
                found[layer_id] = Layer(
                    layer_id,
                    _text(record.get("parent")),
                    _text(record.get("compressed-diff-digest")),
                    _text(record.get("diff-digest")),
                    size if isinstance(size, int) else 0,
                )
        return found

    def image(self, name: str) -> Optional[tuple[str, list[str]]]:
        """The image named `name`: (its id, its layer ids bottom first); None if absent."""
        layers = self.layers()
        for record in self._index("images"):
            if name in (record.get("names") or []) and isinstance(record.get("id"), str):
                return str(record["id"]), _chain(record, layers)
        return None

    def layers_of(self, names: set[str], layers: dict[str, Layer]) -> set[str]:
        """The layers of the images named one of `names`, of the store's `layers` (`layers()`):
        not those of an image a killed copy left unnamed, nor those it left without an image
        (a copy commits the layers, then the image, then its names)."""
        return {
            layer
            for record in self._index("images")
            if names.intersection(record.get("names") or [])
            for layer in _chain(record, layers)
        }

    def unnamed(self, digest: str) -> list[str]:
        """The ids of the images of manifest `digest` that have no name: a copy killed before
        it named the image left them."""
        return [
            record["id"]
            for record in self._index("images")
            if isinstance(record.get("id"), str)
            and not record.get("names")
            and record.get("digest") == digest
        ]

    def big_data(self, image_id: str, key: str) -> Optional[bytes]:
        """A piece of an image's data as containers/storage keeps it (e.g. its config under
        the config digest): `<driver>-images/ID/=BASE64(KEY)` (storage's images.go)."""
        name = "=" + base64.b64encode(key.encode()).decode()
        try:
            with open(self._path(f"{self.driver}-images", image_id, name), "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def layer_paths(self, layer_id: str) -> Optional[Iterator[str]]:
        """Every entry name of a layer's tar, from the tar-split record storage keeps of it
        (`<driver>-layers/ID.tar-split.gz`, JSON lines; type 1 = a file entry, its name in
        `name` or, when not UTF-8, base64 in `name_raw`: vbatts/tar-split storage/entry.go);
        None when storage kept no such record (then only the layer itself can tell)."""
        path = self._path(f"{self.driver}-layers", f"{layer_id}.tar-split.gz")
        return _tar_split_names(path) if os.path.isfile(path) else None

    def reference(self, runroot: str, name: str) -> str:
        """skopeo's `containers-storage:[DRIVER@ROOT+RUNROOT:OPTIONS]NAME` for this store."""
        options = _OVERLAY_OPTIONS if self.driver == "overlay" else ""
        return f"containers-storage:[{self.driver}@{self.host}+{runroot}{options}]{name}"

    @property
    def _journal(self) -> str:
        return self._path(_JOURNAL)

    def stage(self, references: list[str]) -> None:
        """Record the images a run has put into the store but not kept yet (none: remove the
        record), so that a run killed before it kept or removed them is undone by the next."""
        if not references:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._journal)
            return
        try:
            fsutil.write_atomic(self._journal, json.dumps(references).encode())
        except OSError as error:
            raise InputError(
                f"cannot write to the image store: {error.strerror}", path=self._journal
            ) from None

    def staged(self) -> list[str]:
        """The images an interrupted run left staged (see `stage`)."""
        try:
            found = fsutil.load_json(fsutil.read_regular(self._journal, MAX_INDEX_BYTES))
        except (OSError, ValueError):
            return []
        return [r for r in found if isinstance(r, str)] if isinstance(found, list) else []

    def tidy(self) -> None:
        """Drop what must not be in an image: the overlay driver's block device node (ostree
        cannot store it; osbuild deletes it too)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path("overlay", "backingFsBlockDev"))

    @staticmethod
    def remove_created(created: list[str]) -> None:
        """Undo `init` (and whatever was put below what it created)."""
        for path in reversed(created):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def store_images(root: Root) -> list[str]:
    """Every image name in the embedded store, overlay's then vfs's (either driver may be used)."""
    stores = [Store(root, DEFAULT_STORE, driver, reading=True) for driver in DRIVERS]
    return [name for store in stores for name in sorted(store.names())]


def _chain(record: dict[str, Any], layers: dict[str, Layer]) -> list[str]:
    """The layer ids of the image `record` (of images.json), bottom first."""
    chain: list[str] = []
    top = _text(record.get("layer"))
    while top is not None and top in layers and top not in chain:
        chain.append(top)
        top = layers[top].parent
    return chain[::-1]


def _text(value: object) -> Optional[str]:
    return value if isinstance(value, str) and value else None


def _tar_split_names(path: str) -> Iterator[str]:
    try:
        with gzip.open(path, "rb") as handle:
            for line in handle:
                entry = fsutil.load_json(line)
                if not isinstance(entry, dict) or entry.get("type") != 1:
                    continue
                name = entry.get("name")
                raw = entry.get("name_raw")
                if isinstance(raw, str) and raw:
                    name = base64.b64decode(raw).decode("utf-8", "surrogateescape")
                if isinstance(name, str):
                    yield name
    except (OSError, EOFError, ValueError, zlib.error):
        raise InputError(
            "is damaged (not the gzip JSON lines containers/storage writes); embed into a new store",
            path=path,
        ) from None
