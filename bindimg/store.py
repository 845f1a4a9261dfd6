"""The embedded image store: a containers/storage directory under /usr inside the image root.

podman reads it as an additional image store, read-only. For that it needs the lock files
that containers-common creates for its own empty `/usr/lib/containers/storage` (a read-only
store cannot create them), and the same driver as the podman that reads it: an overlay
podman does not see a vfs store. bootc updates only `/usr`, hence the check on the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil

from bindimg.errors import InputError
from bindimg.pin import STORAGE_KEYS
from bindimg.rootfs import Root

DEFAULT_STORE = "/usr/lib/containers/storage"
DRIVERS = ("overlay", "vfs")
# vfs has no additional image stores: `vfs.imagestore` is its read-only store option.
VFS_KEYS = ("vfs.imagestore",)
# No mount happens while an image is copied in; the overlay driver still refuses to start on
# overlayfs (a container build's own file system) unless it is given a mount program, and
# it bind-mounts its own directory (not permitted in a build container) unless told not to.
_OVERLAY_OPTIONS = ":overlay.mount_program=/bin/true,overlay.skip_mount_home=true"
# What `containers-storage:[DRIVER@ROOT+RUNROOT:OPTIONS]` uses as separators.
_SPEC_CHARACTERS = "[]:+@"


class Store:
    """A store at `inner` (a path inside `root`) for `driver`."""

    def __init__(self, root: Root, inner: str = DEFAULT_STORE, driver: str = "overlay") -> None:
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
        self.host = root.resolve(normal)
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
        return os.path.join(self.host, *parts)

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
            raise InputError(
                f"cannot create the image store: {error.strerror}", path=error.filename
            ) from None
        return created

    def names(self) -> set[str]:
        """Every image name in the store's own index (`<driver>-images/images.json`)."""
        path = self._path(f"{self.driver}-images", "images.json")
        try:
            with open(path, "rb") as handle:
                document = json.loads(handle.read())
        except (FileNotFoundError, NotADirectoryError):
            return set()
        except OSError as error:
            raise InputError(f"cannot read the image store index: {error.strerror}", path=path) from None
        except ValueError:
            raise InputError("is not valid JSON; remove the image store and embed again", path=path) from None
        names: set[str] = set()
        for image in document if isinstance(document, list) else []:
            found = image.get("names") if isinstance(image, dict) else None
            names.update(n for n in found or [] if isinstance(n, str))
        return names

    def reference(self, runroot: str, name: str) -> str:
        """skopeo's `containers-storage:[DRIVER@ROOT+RUNROOT:OPTIONS]NAME` for this store."""
        options = _OVERLAY_OPTIONS if self.driver == "overlay" else ""
        return f"containers-storage:[{self.driver}@{self.host}+{runroot}{options}]{name}"

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
    return [name for driver in DRIVERS for name in sorted(Store(root, DEFAULT_STORE, driver).names())]
