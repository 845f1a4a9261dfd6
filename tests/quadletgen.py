"""podman's real Quadlet generator, run on a unit tree, read back as one outcome per unit.

``./scripts/test`` downloads the generators of two podman series from Debian's archive and
exports their paths (``BINDIMG_TEST_QUADLET_54``, ``BINDIMG_TEST_QUADLET_58``). ``-dryrun``
prints each generated service after a ``---NAME.service---`` header; the image is the last
argument of ``ExecStart=/usr/bin/podman run …`` (our trees never set ``Exec=``), of ``podman
image pull …`` for a ``.image``, and ``--opt image=…`` of a ``Driver=image`` ``.volume``; an
image mount is a ``--mount type=image,…`` argument. A unit with no service was rejected (or,
when shadowed, not read): its reason is on stderr.

Two ways to point a generator at a tree:

* ``dirs``: ``QUADLET_UNIT_DIRS=A:B:C`` (highest priority first), as ``bindimg list DIR…`` reads
  source directories: every subdirectory is searched, ``users/`` included.
* ``root``: the tree's ``run``, ``etc`` and ``usr/share`` ``containers`` directories bound over
  the machine's in a private mount namespace (``unshare``), so the generator runs with its
  built-in rootful search path and its filter of ``/etc/containers/systemd/users``, exactly as
  on a booted system with that root. Nothing outside the namespace sees the mounts.
"""

from __future__ import annotations

import csv
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

# (environment variable, Debian suite the binary comes from)
GENERATOR_VARIABLES = (("BINDIMG_TEST_QUADLET_54", "trixie"), ("BINDIMG_TEST_QUADLET_58", "sid"))
ROOTFUL_DIRS = ("run/containers/systemd", "etc/containers/systemd", "usr/share/containers/systemd")
UNIT_SUFFIX = {".container": "", ".image": "-image", ".volume": "-volume", ".build": "-build"}


@dataclass(frozen=True)
class Generator:
    """One Quadlet generator binary and the podman version it reports."""

    path: str
    version: tuple[int, int, int]

    @property
    def name(self) -> str:
        return "podman-" + ".".join(map(str, self.version))

    @property
    def series(self) -> str:
        """The series, e.g. 5.4: what a user of this podman gives as `--podman-version`."""
        return f"{self.version[0]}.{self.version[1]}"


@dataclass(frozen=True)
class Outcome:
    """What systemd gets for one unit: no service (rejected or not read), or a service running,
    pulling or creating from `image` (None: no image, e.g. `Rootfs=` or a plain volume) and
    mounting `mounts` (the sources of `--mount type=image`, in order)."""

    service: bool
    image: Optional[str] = None
    mounts: tuple[str, ...] = ()


NO_SERVICE = Outcome(False)


def generators() -> list[Generator]:
    """The generators ./scripts/test set up; fails (never skips) without them."""
    found = []
    for variable, suite in GENERATOR_VARIABLES:
        path = os.environ.get(variable)
        if not path or not os.access(path, os.X_OK):
            pytest.fail(
                f"{variable} is not set to podman's quadlet binary (Debian {suite}): run the tests "
                "with ./scripts/test, which downloads it",
                pytrace=False,
            )
        out = subprocess.run([path, "-version"], capture_output=True, text=True, check=True).stdout
        major, minor, patch = (int(part) for part in out.strip().split("-")[0].split(".")[:3])
        found.append(Generator(path, (major, minor, patch)))
    return found


def service_name(unit: str) -> str:
    """The service Quadlet generates for a unit file name (no `ServiceName=` in our trees)."""
    stem, ext = os.path.splitext(unit)
    base, at, instance = stem.partition("@")
    return f"{base}{UNIT_SUFFIX[ext]}{at}{instance}.service"


def run_dirs(generator: Generator, dirs: list[Path]) -> tuple[dict[str, list[str]], str]:
    """Generated services (name -> lines) and stderr, with QUADLET_UNIT_DIRS=dirs."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "QUADLET_UNIT_DIRS": ":".join(map(str, dirs))}
    done = subprocess.run([generator.path, "-dryrun"], capture_output=True, text=True, env=env, timeout=60)
    return parse_dryrun(done.stdout), done.stderr


_BIND_ROOT = (
    'for d in run etc usr/share; do mount --bind "$1/$d/containers" "/$d/containers" || exit 99; done; '
    'exec "$2" -dryrun'
)


def run_root(generator: Generator, root: Path) -> tuple[dict[str, list[str]], str]:
    """Generated services and stderr for an image root, with the generator's own search path."""
    for inner in ROOTFUL_DIRS:
        (root / inner).mkdir(parents=True, exist_ok=True)
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _BIND_ROOT, "sh"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    argv += [str(root), generator.path]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 99, done.stderr
    return parse_dryrun(done.stdout), done.stderr


def parse_dryrun(out: str) -> dict[str, list[str]]:
    services: dict[str, list[str]] = {}
    current: Optional[list[str]] = None
    for line in out.splitlines():
        if line.startswith("---") and line.endswith("---") and len(line) > 6:
            current = services.setdefault(line[3:-3], [])
        elif current is not None:
            current.append(line)
    return services


def outcome(unit: str, services: dict[str, list[str]]) -> Outcome:
    """The outcome of one unit (file name) in a generator's output.

    A service that runs, pulls or mounts the image "" counts as none: the generator writes it
    when `Image=`/`source=` names a `.image` or `.build` that yields no image (or a volume's
    `Image=` is empty), and podman can never start it; bindimg refuses such a unit.
    """
    found = _outcome(unit, services)
    if found.image == "" or "" in found.mounts:
        return NO_SERVICE
    return found


def _outcome(unit: str, services: dict[str, list[str]]) -> Outcome:
    lines = services.get(service_name(unit))
    if lines is None:
        return NO_SERVICE
    starts = [line[len("ExecStart=") :] for line in lines if line.startswith("ExecStart=")]
    assert len(starts) == 1, (unit, lines)
    args = exec_words(starts[0])
    ext = os.path.splitext(unit)[1]
    if ext == ".image":
        assert args[1:3] == ["image", "pull"], args
        return Outcome(True, args[-1])
    if ext == ".volume":
        opts = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--opt"]
        images = [o[len("image=") :] for o in opts if o.startswith("image=")]
        return Outcome(True, images[-1] if images else None)
    assert args[1] == "run", args
    mounts = []
    for i, arg in enumerate(args[:-1]):
        if arg == "--mount":
            fields = next(csv.reader([args[i + 1]]))
            if fields[0] == "type=image":
                mounts.append([f.split("=", 1)[1] for f in fields if f.startswith("source=")][-1])
    # `--rootfs` and an empty one (Quadlet writes no word for "") mean no image
    image = "" if args[-1] == "--rootfs" else None if "--rootfs" in args else args[-1]
    return Outcome(True, image, tuple(mounts))


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "s": " "}


def exec_words(line: str) -> list[str]:
    """Split an ExecStart= value as systemd does for what Quadlet writes (podman split.go
    escapeWords: a word needing escapes is double-quoted; `\\xHH` is a code point)."""
    words: list[str] = []
    pos = 0
    while pos < len(line):
        if line[pos] == " ":
            pos += 1
            continue
        word: list[str] = []
        quoted = line[pos] == '"'
        pos += quoted
        while pos < len(line) and (line[pos] != '"' if quoted else line[pos] != " "):
            c = line[pos]
            if c == "\\":
                nxt = line[pos + 1]
                if nxt == "x":
                    word.append(chr(int(line[pos + 2 : pos + 4], 16)))
                    pos += 4
                    continue
                word.append(_ESCAPES.get(nxt, nxt))
                pos += 2
                continue
            word.append(c)
            pos += 1
        pos += quoted
        words.append("".join(word))
    return words
