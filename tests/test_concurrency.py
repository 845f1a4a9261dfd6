"""Two runs on one root: serialised, and each sweeps only what bindimg itself left.

Two `add` in parallel over the same 400 units (a build running two steps at once, a CI job
retried while the first still runs) used to delete each other's temporary files and fail
half-way (exit 70). Now one waits for the other: the first pins and links everything, the
second finds it done. The lock that serialises them leaves nothing behind in the image.

The sweep of leftovers from killed runs removes only names bindimg makes
(`.bindimg-PID-NAME.tmp`) of processes that no longer run: a user's `.bindimg-notes.container`
is the user's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.faultkit import add_args, locked_units
from tests.kit import BOUND, QDIR, run_bindimg
from tests.test_crash import contents

UNITS = 400
ROUNDS = 3


def test_two_adds_in_parallel_on_one_root_are_serialised_and_leave_nothing_else(tmp_path: Path) -> None:
    pristine, lock = tmp_path / "pristine", tmp_path / "bindimg.lock"
    names = sorted(locked_units(pristine, UNITS, lock))
    expected_root = tmp_path / "expected"
    shutil.copytree(pristine, expected_root, symlinks=True)
    first = run_bindimg(*add_args(expected_root, lock, names))
    assert first.code == 0, first.err
    expected = contents(expected_root)
    for n in range(ROUNDS):
        root = tmp_path / f"round-{n}"
        shutil.copytree(pristine, root, symlinks=True)
        args = add_args(root, lock, names)
        with ThreadPoolExecutor(max_workers=2) as pool:
            runs = list(pool.map(lambda a: run_bindimg(*a), [args, args]))
        assert [r.code for r in runs] == [0, 0], [r.err for r in runs]
        waiting = f"waiting for another bindimg working in {root}\n"
        assert {r.err for r in runs} <= {"", waiting}, [r.err for r in runs]
        statuses = sorted(" ".join(sorted({line.split()[0] for line in r.out.splitlines()})) for r in runs)
        assert statuses == ["changed linked modified", "unchanged"]  # one did it all, the other found it done
        assert contents(root) == expected, f"round {n}"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def test_only_leftovers_of_dead_bindimg_runs_are_swept(tmp_path: Path) -> None:
    root, lock = tmp_path / "root", tmp_path / "bindimg.lock"
    names = sorted(locked_units(root, 3, lock))
    qdir, bound = root / QDIR, root / BOUND
    bound.mkdir(parents=True)
    dead, live = _dead_pid(), os.getpid()
    mine = {
        qdir / f".bindimg-{dead}-{names[0]}.tmp": "swept",  # a killed run's staged unit
        bound / f".bindimg-{dead}-{names[0]}.tmp": "swept",  # a killed run's link
    }
    theirs = {
        qdir / ".bindimg-notes.container": "the user's",
        qdir / ".bindimg-1-2.conf": "the user's (no .tmp)",
        qdir / f".bindimg-{live}-{names[1]}.tmp": "a live process's",
    }
    # bound-images.d holds nothing of others: bootc (and so add) fails on any other entry
    for path, text in {**mine, **theirs}.items():
        if path.parent == bound:
            os.symlink(f"/{QDIR}/{names[0]}", path)
        else:
            path.write_text(text)
    run = run_bindimg(*add_args(root, lock, names))
    assert (run.code, run.err) == (0, "")
    assert [p for p in mine if os.path.lexists(p)] == []
    assert {p: p.read_text() for p in theirs} == theirs
