"""Small builders for lint and list tests: unit files, links and stores in a temporary tree."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Union

from bindimg.lint import Finding

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
QDIR = "usr/share/containers/systemd"
BOUND = "usr/lib/bootc/bound-images.d"
STORE = "usr/lib/containers/storage"
STORAGE = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/bootc/storage"
EMBED = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/containers/storage"


def write(top: Path, rel: str, data: Union[str, bytes]) -> Path:
    path = top / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def link(root: Path, name: str, target: str) -> Path:
    """`bound-images.d/NAME` -> TARGET (an absolute TARGET means inside the root, as bootc reads it)."""
    path = root / BOUND / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


def store(root: Path, *names: str, driver: str = "overlay") -> Path:
    """An embedded store whose images.json lists one image per name."""
    images = [{"id": f"{i:064x}", "names": [name]} for i, name in enumerate(names, 1)]
    return write(root, f"{STORE}/{driver}-images/images.json", json.dumps(images))


def rows(findings: Iterable[Finding]) -> list[tuple[str, str, str, int]]:
    return [(f.id, f.severity, f.path, f.line) for f in findings]
