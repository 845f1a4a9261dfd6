"""Crash safety of `bindimg add --embed`: SIGKILL at 100 moments of a run that copies two images
into the store (one kept as it is, one flattened), each followed by a rerun.

After every kill:

* each unit has its old or its new bytes, and no link is made (embedded images are not bound);
* the store is usable: `bindimg list --root` reads its index (or there is none yet);
* no bindimg leftover in the root but the one documented instant (`.bindimg-PID-NAME.tmp`);

and a rerun on each killed root exits 0 with the units and the store's image names exactly
those of a run never killed, and TMPDIR (shared by all runs, as a build's /tmp is) holds
nothing of any run at the end: what the killed runs left there was removed by later ones.
Kills that left byte-identical roots (most of those before the store is written) share one
rerun: the same input gives the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kit import BOUND, QDIR
from tests.registry import PushedImages

KILLS = 100
LEFTOVER = re.compile(r"\.bindimg-\d+-.+\.tmp")


@dataclass
class Embedding:
    pristine: Path
    tmpdir: Path
    old: dict[str, bytes]
    new: dict[str, bytes]
    stored: list[str]  # `list --root` of a complete run
    seconds: float  # how long a complete run takes

    def args(self, root: Path) -> list[str]:
        units = [str(root / QDIR / name) for name in sorted(self.old)]
        return ["add", "--embed", "--no-tls-verify", "-q", "--root", str(root), *units]

    def env(self) -> dict[str, str]:
        return {**os.environ, "TMPDIR": str(self.tmpdir)}


def _units(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / QDIR).iterdir()) if p.suffix == ".container"}


def _listed(root: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "bindimg", "list", "--json", "--root", str(root)],
        capture_output=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        return done.returncode, [done.stderr.decode()]
    # the store's images: list --root also names those the units would pull (unbound)
    images = json.loads(done.stdout)["images"]
    return 0, sorted(item["image"] for item in images if item["type"] == "embedded")


@pytest.fixture(scope="module")
def embedding(tmp_path_factory: pytest.TempPathFactory, images: PushedImages) -> Embedding:
    base = tmp_path_factory.mktemp("crash-embed")
    pristine = base / "pristine"
    (pristine / QDIR).mkdir(parents=True)
    (pristine / QDIR / "app.container").write_text(f"[Container]\nImage={images.app.by_digest}\nExec=true\n")
    (pristine / QDIR / "gone.container").write_text(f"[Container]\nImage={images.whiteout.by_digest}\n")
    tmpdir = base / "tmp"
    tmpdir.mkdir()
    probe = Embedding(pristine, tmpdir, _units(pristine), {}, [], 0.0)
    timings = []
    for n in range(2):
        root = base / f"complete-{n}"
        shutil.copytree(pristine, root, symlinks=True)
        start = time.monotonic()
        args = [sys.executable, "-m", "bindimg", *probe.args(root)]
        done = subprocess.run(args, env=probe.env(), check=False)
        timings.append(time.monotonic() - start)
        assert done.returncode == 0
    code, stored = _listed(root, probe.env())
    assert code == 0 and len(stored) == 2, stored
    new = _units(root)
    assert all(new[n] != probe.old[n] for n in new)
    return Embedding(pristine, tmpdir, probe.old, new, stored, min(timings))


def _check_killed(embedding: Embedding, root: Path, pid: int) -> str:
    units = _units(root)
    written = {n for n, data in units.items() if data == embedding.new[n]}
    assert all(data in (embedding.old[n], embedding.new[n]) for n, data in units.items()), units
    assert not (root / BOUND).exists()
    leftovers = [p for p in (root / QDIR).iterdir() if p.suffix != ".container"]
    for leftover in leftovers:  # only the instant between link and rename of one unit
        assert LEFTOVER.fullmatch(leftover.name) and f"-{pid}-" in leftover.name, leftovers
    code, listed = _listed(root, embedding.env())
    assert code == 0, listed  # the store's index reads (or there is none yet)
    journal = root / "usr/lib/containers/storage/bindimg-staging.json"
    staged = set(json.loads(journal.read_text())) if journal.exists() else set()
    assert set(listed) <= set(embedding.stored) | staged  # staged ones: the next run takes them out
    if not written:
        return "untouched" if not listed else "store-only"
    return "complete" if len(written) == len(units) else "partial"


def test_sigkill_anywhere_in_an_embed_leaves_old_or_new_units_a_usable_store_and_a_rerun_completes(
    embedding: Embedding, tmp_path: Path
) -> None:
    states: Counter[str] = Counter()
    killed: list[tuple[Path, str]] = []
    for n in range(KILLS):
        root = tmp_path / f"kill-{n}"
        shutil.copytree(embedding.pristine, root, symlinks=True)
        delay = embedding.seconds * 1.1 * n / KILLS
        proc = subprocess.Popen(
            [sys.executable, "-m", "bindimg", *embedding.args(root)],
            env=embedding.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) in (0, -signal.SIGKILL)
        state = _check_killed(embedding, root, proc.pid)
        states[state] += 1
        killed.append((root, f"kill {n} at {delay:.2f} s: {state}"))
    # The kills reached the copies (store written, units not yet) and the end.
    assert states["store-only"] >= 5 and states["untouched"] >= 5, states

    def rerun(root: Path) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "bindimg", *embedding.args(root)],
            env=embedding.env(),
            capture_output=True,
            check=False,
        )

    distinct: dict[str, tuple[Path, str]] = {}
    for root, what in killed:
        distinct.setdefault(_fingerprint(root), (root, what))
    with ThreadPoolExecutor(max_workers=2) as pool:
        reruns = list(pool.map(rerun, [root for root, _ in distinct.values()]))
    for (root, what), done in zip(distinct.values(), reruns):
        assert done.returncode == 0, f"{what}: {done.stderr.decode()}"
        assert _units(root) == embedding.new, what
        assert _listed(root, embedding.env()) == (0, embedding.stored), what
    assert os.listdir(embedding.tmpdir) == []


def _fingerprint(root: Path) -> str:
    """Every path, link target and file's bytes under `root`, hashed."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()
