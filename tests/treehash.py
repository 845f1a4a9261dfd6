"""Snapshot a directory tree (bytes, link targets, modes, mtimes) to prove nothing changed.

FIFOs, sockets and devices are recorded by type and mode only, never opened.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

Snapshot = dict[str, tuple[str, bytes, int, int]]


def snapshot(top: Path) -> Snapshot:
    result: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, top)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", os.readlink(path).encode(), st.st_mode, 0)
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", b"", st.st_mode, 0)
            elif not stat.S_ISREG(st.st_mode):  # FIFO, socket, device: opening could block
                result[rel] = ("special", b"", st.st_mode, st.st_rdev)
            else:
                result[rel] = ("file", Path(path).read_bytes(), st.st_mode, st.st_mtime_ns)
    return result


def bindimg(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed bindimg as a user would, capturing both streams."""
    return subprocess.run(
        [sys.executable, "-m", "bindimg", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
        timeout=300,
    )
