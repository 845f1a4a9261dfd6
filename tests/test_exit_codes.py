"""Exit 70 only for a genuine bug: what a user or a machine can cause is exit 2 (or 3) with
one line naming the file.

Found crashing (exit 70): a lock path in a missing or read-only directory, an unreadable
subdirectory in a source tree (for `lock`, `lint` and `list`), a store index nested too deep;
a full disk gave one line, but naming no file. (A manifest nested too deep:
test_registry_trust.py.)
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.faultkit import add_args, locked_units, read_only, refused, tmpfs
from tests.kit import QDIR, run_bindimg, snapshot

D1 = "sha256:" + "1" * 64
WITHOUT_DAC_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all")


def _sources(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.container").write_text(f"[Container]\nImage=quay.io/o/a@{D1}\n")
    return src


def test_a_lock_in_a_missing_directory(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    lock = tmp_path / "missing" / "bindimg.lock"
    refused(
        run_bindimg("lock", "-q", "--lock", str(lock), str(src)),
        2,
        lock,
        "cannot write: No such file or directory",
    )
    assert not lock.parent.exists()


def test_a_lock_in_a_read_only_directory(tmp_path: Path) -> None:
    src = _sources(tmp_path)
    locks = tmp_path / "locks"
    locks.mkdir()
    with read_only(locks):
        run = run_bindimg("lock", "-q", "--lock", str(locks / "bindimg.lock"), str(src))
        refused(run, 2, locks / "bindimg.lock", "cannot write: Read-only file system")
    assert os.listdir(locks) == []


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(("lock", "-q", "--lock", "LOCK"), id="lock"),
        pytest.param(("lint",), id="lint"),
        pytest.param(("list",), id="list"),
    ],
)
def test_an_unreadable_subdirectory_of_a_source_tree(tmp_path: Path, command: tuple[str, ...]) -> None:
    """Tests run as root, which reads a chmod 000 directory: run bindimg without DAC override."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run bindimg as root without DAC override")
    src = _sources(tmp_path)
    (src / "team").mkdir()
    (src / "team" / "db.container").write_text(f"[Container]\nImage=quay.io/o/db@{D1}\n")
    (src / "team").chmod(0)
    args = [a.replace("LOCK", str(tmp_path / "bindimg.lock")) for a in command]
    before = snapshot(tmp_path)
    run = run_bindimg(*args, str(src), prefix=WITHOUT_DAC_OVERRIDE)
    refused(run, 2, src / "team", "cannot read: Permission denied; fix its permissions")
    assert snapshot(tmp_path) == before


def test_a_store_index_nested_too_deep(tmp_path: Path) -> None:
    root = tmp_path / "root"
    index = root / "usr/lib/containers/storage/overlay-images/images.json"
    index.parent.mkdir(parents=True)
    depth = 100_000
    index.write_text("[" * depth + "]" * depth)
    refused(run_bindimg("list", "--root", str(root)), 2, index, "is not valid JSON")


def test_a_full_disk_names_the_file(tmp_path: Path) -> None:
    """Units staged on a file system with no space left: one line naming the unit."""
    lock = tmp_path / "bindimg.lock"
    with tmpfs(tmp_path / "root", size="256k") as root:
        names = sorted(locked_units(root, 3, lock))
        filler = os.open(root / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        before = snapshot(root)
        run = run_bindimg(*add_args(root, lock, names))
        refused(run, 2, root / QDIR / names[0], "cannot write: No space left on device")
        assert snapshot(root) == before


def test_json_lists_the_store_of_a_well_formed_index(tmp_path: Path) -> None:
    """The check above refuses only what is malformed: a real index still lists."""
    root = tmp_path / "root"
    index = root / "usr/lib/containers/storage/overlay-images/images.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps([{"id": "1" * 64, "names": [f"quay.io/o/a@{D1}"]}]))
    run = run_bindimg("list", "--root", str(root))
    assert (run.code, run.out, run.err) == (0, f"quay.io/o/a@{D1}\tembedded\t-\n", "")
