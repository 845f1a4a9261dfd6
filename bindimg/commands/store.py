"""`bindimg store init`: an empty embedded store that podman accepts even read-only."""

from __future__ import annotations

from bindimg.rootfs import Root
from bindimg.store import Store


def init(root: str, store: str, driver: str) -> tuple[str, bool]:
    """Create the store `store` (inside `root`) for `driver`; (its path in the root, whether
    anything was created). Idempotent; InputError for a path outside /usr or a bad driver."""
    image_root = Root(root)
    target = Store(image_root, store, driver)
    with image_root.locked():  # one run at a time on a root
        return target.inner, bool(target.init())
