"""The one test kit: image-root constants, tree builders, tree snapshots and running the CLI.

Every test file takes these from here, so a path bootc or Quadlet reads is spelled once.
FIFOs, sockets and devices are recorded by `snapshot` by type and mode only, never opened.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import pytest

from bindimg.findings import Finding
from bindimg.skopeo import RegistryOptions

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
PINNED = f"quay.io/o/a@{D1}"
QDIR = "usr/share/containers/systemd"
BOUND = "usr/lib/bootc/bound-images.d"
STORE = "usr/lib/containers/storage"
STORAGE = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/bootc/storage"
EMBED = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/containers/storage"

RUN_TIMEOUT = 600.0  # embedding copies whole images


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


Snapshot = dict[str, tuple[str, bytes, int, int]]


def snapshot(top: Path) -> Snapshot:
    """Bytes, link targets, modes and mtimes of everything under `top`: proves nothing changed."""
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


@dataclass
class Run:
    """One run of the CLI: exit code, stdout, stderr (undecodable bytes surrogate-escaped), time."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def output(self) -> str:
        return self.out + self.err


def run_bindimg(
    *args: str,
    env: Optional[dict[str, str]] = None,
    cwd: Optional[Path] = None,
    prefix: Sequence[str] = (),
    timeout: float = RUN_TIMEOUT,
) -> Run:
    """`python -m bindimg ARGS` as a user runs it (this interpreter), timed; a hang fails the test."""
    start = time.monotonic()
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "bindimg", *args],
            capture_output=True,
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"bindimg {' '.join(args)[:200]} hung for {timeout} s")
    return Run(
        done.returncode,
        done.stdout.decode("utf-8", "surrogateescape"),
        done.stderr.decode("utf-8", "surrogateescape"),
        time.monotonic() - start,
    )


def image_lines(out: str) -> list[str]:
    """The per-image lines of `add`'s text output (`changed|unchanged QUADLET IMAGE`), without
    the file and link lines that follow them."""
    return [line for line in out.splitlines() if line.startswith(("changed ", "unchanged "))]


class FakeRegistry:
    """A `bindimg.registry.Registry` for unit tests: `answer(reference)` returns the manifest
    bytes or raises (a SkopeoError, as skopeo would); `asked` records each look-up in order."""

    def __init__(self, answer: Callable[[str], bytes]) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def inspect_raw(
        self, reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
    ) -> bytes:
        self.asked.append(reference)
        return self.answer(reference)

    def inspect_config(self, reference: str, options: RegistryOptions, *, timeout: float) -> bytes:
        self.asked.append(f"config of {reference}")
        return self.answer(f"config of {reference}")

    def ready(self) -> None:
        """Always ready: no tool behind it."""

    def copy_from_registry(self, reference: str, dest: str, options: RegistryOptions, **more: Any) -> None:
        raise AssertionError(f"unexpected copy of {reference}")

    def copy_local(self, source: str, dest: str, **options: Any) -> None:
        raise AssertionError(f"unexpected copy of {source}")

    def copy_image(self, source: str, dest: str, **options: Any) -> None:
        raise AssertionError(f"unexpected copy of {source}")

    def inspect_local_raw(self, transport_ref: str, *, timeout: Optional[float] = None) -> bytes:
        raise AssertionError(f"unexpected look-up of {transport_ref}")

    def delete_local(self, reference: str, *, timeout: Optional[float] = None) -> None:
        raise AssertionError(f"unexpected delete of {reference}")


def budget(seconds: float) -> float:
    """`seconds` stretched by how overloaded the machine is (1-minute load per core, at least 1).

    The hostile-input tests bound run times to catch exponential or quadratic blow-ups (those
    take minutes, not seconds); they are not speed targets (those are measured in `bench/`).
    A CI machine shared with other jobs must not turn such a bound into a flake.
    """
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, load)
