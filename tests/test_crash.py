"""Crash safety of `bindimg add`: SIGKILL at any moment leaves every file old or new, never half.

A build step can be killed at any time (an OOM kill, a cancelled CI job, a `podman build`
interrupted). What a killed run leaves must still be a root that bootc and Quadlet read
correctly, and a rerun must finish the job. So 50 units that need no registry (25 already
pinned in a non-canonical form, 25 locked tags with `--lock --frozen`) are bound 100 times,
each time killed at another moment of the run, and after every kill:

* each unit is byte-identical to its old or to its new content (mode kept);
* each bound-images.d entry is absent or the correct symlink, and links exist only once every
  unit is written (add links last: a link must never name an unpinned unit);
* no temporary file is left — with one exception that no implementation can avoid, checked
  exactly: replacing a file atomically needs a second name for the instant between `link`
  and `rename`, so a kill in that instant leaves `.bindimg-<pid>-<unit>.tmp` with the unit's
  new bytes while the unit still has its old ones; its `.tmp` suffix keeps Quadlet from
  reading it as a unit, and the next run sweeps it;
* a normal rerun completes the job: the result equals that of a run never killed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from bindimg import fsutil, write
from bindimg.boundimages import Link
from tests.faultkit import locked_units
from tests.kit import BOUND, QDIR, Run, image_lines, run_bindimg

UNITS = 50
# Where the kills land. Time alone would be a poor guide on a loaded machine, so most kills
# are anchored on progress seen in the tree: right after the k-th unit was renamed or the k-th
# link created (add renames in sorted order, then links in the same order), some a fraction
# of a millisecond later, inside the next rename or fsync.
KILLS_BEFORE_WRITES = 10  # by time: over the end of start-up, planning and staging
KILLS_AFTER_RENAME = 70  # after the k-th rename, k spread over all units
KILLS_AFTER_LINK = 20  # after the k-th link

Contents = dict[str, tuple[str, bytes, int]]  # relative path -> (kind, bytes or link target, mode)


def contents(top: Path) -> Contents:
    """Like treehash.snapshot without mtimes: the result of a rerun is compared to a clean run."""
    result: Contents = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, top)
            if stat.S_ISLNK(st.st_mode):
                result[rel] = ("link", os.readlink(path).encode(), 0)
            elif stat.S_ISDIR(st.st_mode):
                result[rel] = ("dir", b"", stat.S_IMODE(st.st_mode))
            else:
                result[rel] = ("file", Path(path).read_bytes(), stat.S_IMODE(st.st_mode))
    return result


@dataclass
class Scenario:
    """The pristine tree, the arguments of `add`, and what a run never killed produces."""

    pristine: Path  # a root with the 50 units, never modified
    lock: Path
    old: dict[str, bytes]  # unit name -> bytes before
    new: dict[str, bytes]  # unit name -> bytes after a complete run
    modes: dict[str, int]
    links: dict[str, str]  # bound-images.d name -> target
    complete: Contents  # the whole root after a complete run
    first_rename: float  # seconds from start to the first rename (calibrated)

    def args(self, root: Path) -> list[str]:
        return [
            "add",
            "--root",
            str(root),
            "--lock",
            str(self.lock),
            "--frozen",
            *(str(root / QDIR / name) for name in sorted(self.old)),
        ]

    def copy(self, dest: Path) -> Path:
        shutil.copytree(self.pristine, dest, symlinks=True)
        return dest


def _start(scenario: Scenario, root: Path) -> tuple[subprocess.Popen[bytes], float]:
    with open(f"{root}.stderr", "wb") as stderr:  # beside the root: not part of the tree
        proc = subprocess.Popen(
            [sys.executable, "-m", "bindimg", *scenario.args(root)], stdout=subprocess.DEVNULL, stderr=stderr
        )
    return proc, time.monotonic()


def _wait_until(proc: subprocess.Popen[bytes], done: Callable[[], bool]) -> None:
    """Poll (no strace needed) until `done()`, or the run ended. The short sleeps leave the CPU
    to bindimg on a busy 2-core machine; 0.2 ms is still finer than one rename and its fsync."""
    while not done() and proc.poll() is None:
        time.sleep(0.0002)


def _replaced(path: Path) -> Callable[[], bool]:
    """Whether `path` has been renamed over since now (a new inode)."""
    inode = os.stat(path).st_ino
    return lambda: os.stat(path).st_ino != inode


def _created(path: Path) -> Callable[[], bool]:
    return lambda: os.path.lexists(path)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    base = tmp_path_factory.mktemp("crash")
    pristine, lock = base / "pristine", base / "bindimg.lock"
    locked_units(pristine, UNITS, lock, modes=True)
    old = {p.name: p.read_bytes() for p in (pristine / QDIR).iterdir()}
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (pristine / QDIR).iterdir()}
    probe = Scenario(pristine, lock, old, {}, modes, {}, {}, 0.0)
    # A complete run on a copy gives the expected result and when the first rename happens.
    timings: list[float] = []
    for n in range(2):
        done = probe.copy(base / f"complete-{n}")
        first_renamed = _replaced(done / QDIR / "u00.container")
        proc, started = _start(probe, done)
        _wait_until(proc, first_renamed)
        timings.append(time.monotonic() - started)
        assert proc.wait(timeout=60) == 0, Path(f"{done}.stderr").read_text()
    new = {p.name: p.read_bytes() for p in (done / QDIR).iterdir()}
    assert new.keys() == old.keys() and all(new[n] != old[n] for n in old)
    assert all(stat.S_IMODE((done / QDIR / n).stat().st_mode) == modes[n] for n in old)
    links = {p.name: os.readlink(p) for p in (done / BOUND).iterdir()}
    assert links == {name: f"/{QDIR}/{name}" for name in old}
    return Scenario(pristine, lock, old, new, modes, links, contents(done), min(timings))


def _kill_schedule() -> Iterator[tuple[str, float, float]]:
    """(anchor, where, extra delay in seconds): anchor 'time' (where: a fraction of the time to
    the first rename), 'renamed' or 'linked' (where: the index of the unit)."""
    for i in range(KILLS_BEFORE_WRITES):
        yield "time", 0.5 + 0.5 * i / (KILLS_BEFORE_WRITES - 1), 0.0
    for i in range(KILLS_AFTER_RENAME):
        yield "renamed", round(i * (UNITS - 1) / (KILLS_AFTER_RENAME - 1)), (i % 4) * 0.0003
    for i in range(KILLS_AFTER_LINK):
        yield "linked", round(i * (UNITS - 1) / (KILLS_AFTER_LINK - 1)), (i % 2) * 0.0003


LEFTOVER = re.compile(r"\.bindimg-(\d+)-(.+)\.tmp")


def _check_killed(scenario: Scenario, root: Path, pid: int) -> str:
    """Assert what a killed run may leave; return 'untouched', 'partial', 'linking' or 'complete'."""
    bound = root / BOUND
    found = contents(root)
    leftovers = sorted(rel for rel in found if os.path.basename(rel).startswith(fsutil.TEMP_PREFIX))
    written: set[str] = set()
    for name, old in scenario.old.items():
        kind, data, mode = found[f"{QDIR}/{name}"]
        assert kind == "file" and mode == scenario.modes[name], name
        assert data in (old, scenario.new[name]), f"{name} is neither its old nor its new content"
        if data == scenario.new[name]:
            written.add(name)
    if leftovers:
        # Only the instant between link and rename of one unit: named as commit names it,
        # holding that unit's complete new bytes, the unit itself not yet replaced.
        (leftover,) = leftovers
        match = LEFTOVER.fullmatch(os.path.basename(leftover))
        assert match is not None and os.path.dirname(leftover) == QDIR, leftovers
        assert int(match.group(1)) == pid
        unit = match.group(2)
        assert found[leftover][:2] == ("file", scenario.new[unit]) and unit not in written
    links: dict[str, str] = {}
    if bound.is_dir():
        for entry in bound.iterdir():
            assert entry.is_symlink(), f"{entry} is not a symlink"
            links[entry.name] = os.readlink(entry)
        assert links.items() <= scenario.links.items(), "a link that a complete run does not make"
        assert not links or len(written) == len(scenario.old), "a link before every unit was written"
    expected = {"usr", "usr/share", "usr/share/containers", QDIR, *(f"{QDIR}/{n}" for n in scenario.old)}
    expected |= set(leftovers)
    # os.makedirs creates bound-images.d's parents one at a time: a kill can leave some of them
    expected |= {d for d in ("usr/lib", "usr/lib/bootc", BOUND) if found.get(d, ("",))[0] == "dir"}
    expected |= {f"{BOUND}/{n}" for n in links}
    assert set(found) == expected
    if not written:
        return "untouched"
    if len(written) < len(scenario.old):
        return "partial"
    return "complete" if links == scenario.links else "linking"


def test_sigkill_anywhere_leaves_old_or_new_files_and_a_rerun_completes(
    scenario: Scenario, tmp_path: Path
) -> None:
    states: Counter[str] = Counter()
    killed: list[tuple[Path, set[str], str]] = []
    names = sorted(scenario.old)
    for n, (anchor, where, extra) in enumerate(_kill_schedule()):
        root = scenario.copy(tmp_path / f"kill-{n}")
        name = names[int(where)]
        renamed = _replaced(root / QDIR / name)
        proc, started = _start(scenario, root)
        if anchor == "renamed":
            _wait_until(proc, renamed)
        elif anchor == "linked":
            _wait_until(proc, _created(root / BOUND / name))
        else:
            extra = max(0.0, started + where * scenario.first_rename - time.monotonic())
        time.sleep(extra)
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        assert code in (0, -signal.SIGKILL), Path(f"{root}.stderr").read_text()
        state = _check_killed(scenario, root, proc.pid)
        states[state] += 1
        pending = {
            u
            for u in scenario.old
            if (root / QDIR / u).read_bytes() != scenario.new[u] or not os.path.lexists(root / BOUND / u)
        }
        killed.append((root, pending, f"kill {n} ({anchor} {where} + {extra:.4f} s: {state})"))
    # The schedule reached the interesting moments: kills amid the renames and amid the links.
    assert states["partial"] >= KILLS_AFTER_RENAME // 2 and states["linking"] >= 1, states

    def rerun(root: Path) -> Run:
        return run_bindimg(*scenario.args(root))

    # A rerun finishes each job, and says which units it still had to change. (Run after the
    # kills, two at a time: the kills' timing must not compete with them.)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reruns = list(pool.map(rerun, [root for root, _, _ in killed]))
    for (root, pending, what), done in zip(killed, reruns):
        assert done.code == 0, f"{what}: {done.err}"
        assert contents(root) == scenario.complete, what
        reported = {Path(line.split()[1]).name: line.split()[0] for line in image_lines(done.out)}
        assert reported == {n: "changed" if n in pending else "unchanged" for n in scenario.old}, what


def test_a_kill_between_link_and_rename_leaves_a_swept_tmp_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one named moment of a commit, made deterministic: the process 'dies' in rename."""
    qdir = tmp_path / QDIR
    qdir.mkdir(parents=True)
    unit = qdir / "app.container"
    unit.write_bytes(b"old\n")

    class Killed(BaseException):
        pass

    def die(*_: object) -> None:
        raise Killed

    staged = fsutil.stage(str(unit), b"new\n")
    with monkeypatch.context() as patched:
        patched.setattr(os, "replace", die)
        with pytest.raises(Killed):
            fsutil.commit(staged)
    (leftover,) = [p for p in qdir.iterdir() if p.name != "app.container"]
    assert leftover.name == f".bindimg-{os.getpid()}-app.container.tmp"  # no unit extension
    assert (leftover.read_bytes(), unit.read_bytes()) == (b"new\n", b"old\n")

    # The next write in that directory sweeps it (the pid is this process's: not in use).
    bound = tmp_path / BOUND
    plan = write.Plan(
        {str(unit): (b"old\n", b"newer\n")},
        [Link(str(bound / "app.container"), f"/{QDIR}/app.container", exists=False)],
        [],
    )
    write.apply(plan)
    assert sorted(p.name for p in qdir.iterdir()) == ["app.container"]
    assert unit.read_bytes() == b"newer\n"
    assert [(p.name, os.readlink(p)) for p in bound.iterdir()] == [
        ("app.container", f"/{QDIR}/app.container")
    ]
