"""Invariant 6 below the first path component: every path bindimg or skopeo opens for a root
resolves inside it, the embedded store's own sub-paths included, and an embedded store really
lies under /usr (what bootc replaces on upgrade).

Each case builds a root whose store (or a directory in it) is a symlink, to a directory
outside the root (`elsewhere`, holding a decoy index and a decoy file) or to another place
inside it, and checks: exit 2 with one line naming the link, nothing written anywhere (the
whole test directory is snapshotted), the decoy neither read into the output nor touched.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.faultkit import refused
from tests.kit import QDIR, run_bindimg, snapshot
from tests.registry import PushedImages, Registry

STORE = "usr/lib/containers/storage"
D1 = "sha256:" + "1" * 64
DECOY_IMAGE = f"quay.io/decoy/secret@{D1}"


def decoy(top: Path) -> Path:
    """A directory outside the root with what a store holds: an index naming a decoy image,
    lock files and the overlay driver's block device file (which `add --embed` deletes)."""
    elsewhere = top / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "images.json").write_text(json.dumps([{"id": "1" * 64, "names": [DECOY_IMAGE]}]))
    (elsewhere / "backingFsBlockDev").write_text("decoy\n")
    return elsewhere


def root_with(top: Path, link: str, target: str | Path) -> Path:
    """A root whose `link` (relative to it) is a symlink to `target`."""
    root = top / "root"
    path = root / link
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return root


# (link below the root, its target: "ELSEWHERE" is the decoy directory outside the root)
SUB_PATH_LINKS = [
    pytest.param(f"{STORE}/overlay-images", "ELSEWHERE", id="images-dir-out-of-the-root"),
    pytest.param(f"{STORE}/overlay-layers", "ELSEWHERE", id="layers-dir-out-of-the-root"),
    pytest.param(f"{STORE}/overlay", "ELSEWHERE", id="driver-dir-out-of-the-root"),
    pytest.param(f"{STORE}/overlay-images", "/etc", id="images-dir-absolute-inside-the-root"),
    pytest.param(f"{STORE}/overlay-images", "../../../../../../..", id="images-dir-dot-dot"),
    pytest.param(f"{STORE}/overlay-images/images.lock", "ELSEWHERE/lock", id="lock-file-out-of-the-root"),
    pytest.param(f"{STORE}/overlay-images/images.json", "ELSEWHERE/images.json", id="index-out-of-the-root"),
]


def _target(target: str, elsewhere: Path) -> str:
    return target.replace("ELSEWHERE", str(elsewhere))


@pytest.mark.parametrize(("link", "target"), SUB_PATH_LINKS)
def test_store_init_refuses_a_store_sub_path_that_leads_out_of_the_store(
    tmp_path: Path, link: str, target: str
) -> None:
    elsewhere = decoy(tmp_path)
    root = root_with(tmp_path, link, _target(target, elsewhere))
    before = snapshot(tmp_path)
    run = run_bindimg("store", "init", "--root", str(root))
    refused(run, 2, root / link, "in the image store, which skopeo would follow on the host")
    assert snapshot(tmp_path) == before
    assert "decoy" not in run.err


@pytest.mark.parametrize(("link", "target"), SUB_PATH_LINKS)
def test_list_root_never_reads_an_index_out_of_the_store(tmp_path: Path, link: str, target: str) -> None:
    """`list --root` read the host's images.json through `overlay-images -> /elsewhere`."""
    elsewhere = decoy(tmp_path)
    root = root_with(tmp_path, link, _target(target, elsewhere))
    (root / QDIR).mkdir(parents=True)
    before = snapshot(tmp_path)
    run = run_bindimg("list", "--root", str(root))
    assert snapshot(tmp_path) == before
    assert DECOY_IMAGE not in run.out + run.err
    if link.endswith(("overlay-images", "images.json")):
        refused(run, 2, root / link, "outside /usr/lib/containers/storage")
    else:  # the index is not below this link: nothing to refuse, an empty store
        assert (run.code, run.out, run.err) == (0, "", "")


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/var/lib/containers/storage", id="absolute-to-var"),
        pytest.param("../../../var/lib/containers/storage", id="relative-to-var"),
        pytest.param("ELSEWHERE", id="out-of-the-root"),
    ],
)
def test_a_store_symlinked_out_of_usr_is_refused(tmp_path: Path, target: str) -> None:
    """bootc replaces /usr on upgrade, not /var: an embedded store must really lie under /usr."""
    elsewhere = decoy(tmp_path)
    root = root_with(tmp_path, STORE, _target(target, elsewhere))
    (root / "var/lib/containers/storage").mkdir(parents=True)
    before = snapshot(tmp_path)
    refused(run_bindimg("store", "init", "--root", str(root)), 2, root / STORE, "outside /usr")
    assert snapshot(tmp_path) == before
    unit = root / QDIR / "app.container"
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Container]\nImage=quay.io/o/a@{D1}\n")
    before = snapshot(tmp_path)
    refused(run_bindimg("add", "--embed", "--root", str(root), str(unit)), 2, root / STORE, "outside /usr")
    assert snapshot(tmp_path) == before


def test_a_store_below_a_usr_link_into_var_is_refused(tmp_path: Path) -> None:
    """The link may be any component: here `usr/lib/containers`."""
    root = root_with(tmp_path, "usr/lib/containers", "/var/lib/containers")
    (root / "var/lib/containers").mkdir(parents=True)
    before = snapshot(tmp_path)
    refused(run_bindimg("store", "init", "--root", str(root)), 2, root / STORE, "outside /usr")
    assert snapshot(tmp_path) == before


def test_a_store_linked_elsewhere_under_usr_is_used(tmp_path: Path) -> None:
    """A link that stays under /usr is fine: the store is where it leads."""
    root = root_with(tmp_path, STORE, "/usr/lib/other-store")
    run = run_bindimg("store", "init", "--root", str(root))
    assert (run.code, run.err) == (0, ""), run.err
    assert sorted(os.listdir(root / "usr/lib/other-store")) == ["overlay-images", "overlay-layers"]


@pytest.mark.parametrize(
    "link",
    [
        pytest.param("overlay", id="driver-dir"),
        pytest.param("overlay-layers", id="layers-dir"),
    ],
)
def test_embed_into_a_store_with_a_link_out_of_the_root_is_refused_untouched(
    tmp_path: Path, registry: Registry, images: PushedImages, link: str
) -> None:
    """`overlay -> /elsewhere` made `add --embed` delete a host file (backingFsBlockDev) and
    skopeo write layers outside the root."""
    elsewhere = decoy(tmp_path)
    root = root_with(tmp_path, f"{STORE}/{link}", elsewhere)
    unit = root / QDIR / "app.container"
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Container]\nImage={images.app.by_digest}\n")
    before = snapshot(tmp_path)
    run = run_bindimg("add", "-q", "--embed", "--no-tls-verify", "--root", str(root), str(unit))
    refused(run, 2, root / STORE / link, "in the image store, which skopeo would follow on the host")
    assert snapshot(tmp_path) == before
