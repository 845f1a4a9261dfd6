"""Whether bootc installs an image root with the composefs backend, which ignores bound images.

`bootc install` picks the composefs backend whenever the image carries a unified kernel image
(UKI) in `/boot/EFI/Linux` (bootc `crates/lib/src/kernel.rs` `find_uki_path`; `install.rs`:
`composefs_required = kernel.unified`). Nothing in that backend pulls or keeps logically bound
images, so there embedding is the only way to ship an image with the OS.
"""

from __future__ import annotations

import os
import posixpath
from typing import Optional

from bindimg.boundimages import rust_extension
from bindimg.rootfs import Root

UKI_DIR = "/boot/EFI/Linux"
COMPOSEFS_ADVICE = (
    "bootc installs this root with the composefs backend, which neither pulls nor keeps "
    "logically bound images; embed the image instead (`bindimg add --embed`)"
)


def find_uki(root: Root) -> Optional[str]:
    """The first UKI bootc finds in the root, as a path inside it (`/boot/EFI/Linux/x.efi`), or None.

    As `find_uki_path`: every entry of the directory whose (Rust) extension is `efi`, except
    `*.addon.efi` (kernel add-ons, not kernels) and names that are not UTF-8, first in sorted order.
    """
    try:
        names = os.listdir(root.resolve(UKI_DIR))
    except OSError:
        return None
    ukis = sorted(
        name
        for name in names
        if rust_extension(name) == "efi" and not name.endswith(".addon.efi") and _is_utf8(name)
    )
    return posixpath.join(UKI_DIR, ukis[0]) if ukis else None


def _is_utf8(name: str) -> bool:
    """A file name that was valid UTF-8 (os.listdir decodes other bytes as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
