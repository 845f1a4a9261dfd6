"""Invariant 4 after the first rename too: a step that fails half-way through writing leaves
every file as it was (bytes and mtime), no link, no temporary file, and one line (exit 2).

The faults are those of a real build machine: a unit that cannot be replaced (immutable, or
bind-mounted as `RUN --mount=type=bind` does: rename gives EPERM or EBUSY), bound-images.d
taken by a regular file, inodes running out between the renames and the links, a lock file
that cannot be written after `lock --rewrite` pinned the sources, and a store that runs out
of space while `store init` makes it. None needs a registry (`--lock --frozen`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

import pytest

from tests.faultkit import (
    add_args,
    bind_mounted,
    fill_inodes,
    immutable,
    locked_units,
    read_only,
    refused,
    tmpfs,
)
from tests.kit import BOUND, QDIR, run_bindimg, snapshot

UNITS = 5


def unchanged_but_for_access(before: dict[str, tuple[str, bytes, int, int]], top: Path) -> None:
    after = snapshot(top)
    assert sorted(after) == sorted(before), sorted(set(after) ^ set(before))
    assert after == before


@pytest.fixture
def five(tmp_path: Path) -> Iterator[tuple[Path, Path, list[str]]]:
    root, lock = tmp_path / "root", tmp_path / "bindimg.lock"
    names = sorted(locked_units(root, UNITS, lock))
    yield root, lock, names


BLOCKERS: dict[str, Callable[[Path], AbstractContextManager[Path]]] = {
    "immutable": immutable,
    "bind-mounted": bind_mounted,
}


@pytest.mark.parametrize("blocker", sorted(BLOCKERS))
def test_a_unit_that_cannot_be_replaced_leaves_all_five_as_they_were(
    five: tuple[Path, Path, list[str]], blocker: str
) -> None:
    """Five units, the fourth immutable or bind-mounted: three were pinned, then exit 70."""
    root, lock, names = five
    fourth = root / QDIR / names[3]
    with BLOCKERS[blocker](fourth):
        before = snapshot(root)
        run = run_bindimg(*add_args(root, lock, names))
        refused(run, 2, fourth, "cannot write")
        unchanged_but_for_access(before, root)
    assert not (root / BOUND).exists()


@pytest.mark.parametrize("taken", ["usr/lib/bootc/bound-images.d", "usr/lib/bootc", "usr/lib"])
def test_a_regular_file_in_the_way_of_the_links_is_found_before_any_change(
    five: tuple[Path, Path, list[str]], taken: str
) -> None:
    root, lock, names = five
    (root / taken).parent.mkdir(parents=True, exist_ok=True)
    (root / taken).write_text("not a directory\n")
    before = snapshot(root)
    # add reads bound-images.d first, as bootc does (realtrees): that names the directory
    run = run_bindimg(*add_args(root, lock, names))
    refused(run, 2, root / BOUND, "cannot read bound-images.d: Not a directory")
    unchanged_but_for_access(before, root)


@pytest.mark.parametrize("spare", [1, 4, UNITS + 2])
def test_inodes_running_out_while_writing_changes_nothing(tmp_path: Path, spare: int) -> None:
    """The root on a file system with `spare` free inodes, fewer than the five units and their
    five links need (bound-images.d and its parents take three): out of inodes while staging,
    renaming or linking, whichever comes first, nothing changes."""
    lock = tmp_path / "bindimg.lock"
    with tmpfs(tmp_path / "root", inodes=400) as root:
        names = sorted(locked_units(root, UNITS, lock))
        filler = fill_inodes(root, keep=spare)
        before = snapshot(root)
        run = run_bindimg(*add_args(root, lock, names))
        refused(run, 2, root, "No space left on device")
        unchanged_but_for_access(before, root)
        assert len(filler) > 300


def test_lock_rewrite_pins_nothing_when_the_lock_cannot_be_written(tmp_path: Path) -> None:
    src, locks = tmp_path / "src", tmp_path / "locks"
    locks.mkdir()
    lock = locks / "bindimg.lock"
    names = sorted(locked_units(src, UNITS, lock))
    with open(lock, "a") as handle:  # an entry no unit uses: the lock must be rewritten
        handle.write('\n[images."quay.io/org/gone:1"]\ndigest = "sha256:' + "0" * 64 + '"\n')
        handle.write('media-type = "application/vnd.oci.image.manifest.v1+json"\nused-by = []\n')
    before = snapshot(tmp_path)
    with read_only(locks):
        run = run_bindimg("lock", "--rewrite", "--lock", str(lock), *(str(src / QDIR / n) for n in names))
        refused(run, 2, lock, "cannot write")
    unchanged_but_for_access(before, tmp_path)


@pytest.mark.parametrize("spare", [2, 4, 6])
def test_store_init_out_of_space_leaves_no_half_store(tmp_path: Path, spare: int) -> None:
    """`store init` makes eight entries (directories and lock files); fail after any of them."""
    with tmpfs(tmp_path / "root", inodes=200) as root:
        (root / "usr").mkdir()
        fill_inodes(root, keep=spare)
        before = snapshot(root)
        run = run_bindimg("store", "init", "--root", str(root))
        refused(run, 2, root / "usr/lib", "cannot create the image store: No space left on device")
        unchanged_but_for_access(before, root)


def test_five_units_and_a_fifth_that_is_a_directory_at_its_install_path(tmp_path: Path) -> None:
    """Checked before the first change already: one line, nothing written."""
    root, lock = tmp_path / "root", tmp_path / "bindimg.lock"
    src = tmp_path / "src"
    names = sorted(locked_units(src, UNITS, lock))
    (root / QDIR / names[4]).mkdir(parents=True)
    before = snapshot(tmp_path)
    run = run_bindimg(
        "add", "--root", str(root), "--lock", str(lock), "--frozen", *(str(src / QDIR / n) for n in names)
    )
    refused(run, 2, root / QDIR / names[4], "is a directory")
    unchanged_but_for_access(before, tmp_path)
    assert os.listdir(root / QDIR) == [names[4]]
