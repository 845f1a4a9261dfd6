"""bindimg.flatten: layers applied into one deterministic layer, every file's metadata kept.

The layers are written here with tarfile (whiteouts, opaque markers, hardlinks, devices,
xattrs as PAX `SCHILY.xattr.*`, sub-second mtimes); the flattened layer is read back with
tarfile and GNU tar, and compared with `tests.ociimage.apply_layers`, the harness's own
model of what layers amount to.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import pytest

from bindimg import flatten
from bindimg.errors import InputError
from tests import ociimage

CAP_NET_BIND_SERVICE = bytes.fromhex("0100000200040000000000000000000000000000")  # v2, effective
BINARY_XATTR = bytes(range(256))  # not UTF-8: must come back byte for byte
CONFIG = json.dumps(
    {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64, "sha256:" + "1" * 64]},
        "history": [
            {"created_by": "one"},
            {"created_by": "two", "empty_layer": True},
            {"created_by": "three"},
        ],
    }
).encode()
UPSTREAM = "sha256:" + "ab" * 32


def entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: float = 1_700_000_000,
    linkname: str = "",
    xattrs: Optional[dict[str, bytes]] = None,
    pax: Optional[dict[str, str]] = None,
    dev: tuple[int, int] = (0, 0),
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname, info.gname = ("app", "app") if uid else ("root", "root")
    info.mtime = mtime
    info.linkname = linkname
    info.devmajor, info.devminor = dev
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    headers = dict(pax or {})
    for key, value in (xattrs or {}).items():
        headers[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = headers
    return info, data


def write_layer(path: Path, entries: Sequence[tuple[tarfile.TarInfo, bytes]]) -> str:
    with tarfile.open(
        path, "w", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    ) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return str(path)


def directory(name: str, mode: int = 0o755) -> tuple[tarfile.TarInfo, bytes]:
    return entry(name, tarfile.DIRTYPE, mode=mode)


def run_flatten(
    tmp_path: Path, layers: Sequence[str], upstream: str = UPSTREAM
) -> tuple[flatten.Flattened, Path]:
    layout = tmp_path / f"layout-{len(list(tmp_path.glob('layout-*')))}"
    result = flatten.flatten(layers, CONFIG, upstream, str(layout))
    return result, layout / "blobs" / "sha256" / result.diff_id.split(":", 1)[1]


def members(layer: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(layer, encoding="utf-8", errors="surrogateescape") as tar:
        return {m.name: m for m in tar.getmembers()}


def contents(layer: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with tarfile.open(layer, encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar.getmembers():
            if member.isreg():
                stream = tar.extractfile(member)
                assert stream is not None
                found[member.name] = stream.read()
    return found


@pytest.fixture
def rich_layers(tmp_path: Path) -> list[str]:
    """Three layers using everything an image layer can hold."""
    first = write_layer(
        tmp_path / "1.tar",
        [
            directory("etc"),
            entry("etc/gone", data=b"deleted later\n"),
            entry("etc/kept", data=b"kept\n"),
            directory("opaque"),
            entry("opaque/old", data=b"hidden by the opaque marker\n"),
            directory("opaque/olddir"),
            entry("opaque/olddir/deep", data=b"hidden too\n"),
            directory("tree"),
            entry("tree/leaf", data=b"removed with its directory\n"),
            directory("usr/bin", mode=0o755),
            entry(
                "usr/bin/ping",
                data=b"\x7fELF cap",
                mode=0o755,
                xattrs={"security.capability": CAP_NET_BIND_SERVICE},
            ),
            entry("usr/bin/su", data=b"\x7fELF suid", mode=0o4755),
            entry("usr/bin/wall", data=b"\x7fELF sgid", mode=0o2755, gid=5),
            directory("tmp", mode=0o1777),
            entry("data/blob", data=b"x" * 5000, xattrs={"user.binary": BINARY_XATTR}),
            entry("data/original", data=b"hardlinked\n", uid=1000, gid=1000),
            entry("data/alias", tarfile.LNKTYPE, linkname="data/original", uid=1000, gid=1000),
            entry("zz/late", data=b"hardlink target sorted after its link\n"),
            entry("aa/early", tarfile.LNKTYPE, linkname="zz/late"),
            entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
            entry("dev/loop0", tarfile.BLKTYPE, mode=0o660, dev=(7, 0)),
            entry("run/fifo", tarfile.FIFOTYPE, mode=0o600),
            entry("bin", tarfile.SYMTYPE, linkname="usr/bin", mode=0o777),
            entry("fraction", data=b"sub-second\n", pax={"mtime": "1700000000.123456789"}),
            entry("old-file-then-dir", data=b"a file below\n"),
        ],
    )
    second = write_layer(
        tmp_path / "2.tar",
        [
            entry("etc/.wh.gone"),
            directory("opaque"),
            entry("opaque/.wh..wh..opq"),
            entry("opaque/new", data=b"new content\n"),
            entry(".wh.tree"),
            entry("data/.wh.original"),  # the alias keeps the inode (and its data)
            entry("usr/bin/su", data=b"\x7fELF suid v2", mode=0o4755),
            directory("old-file-then-dir"),
            entry("old-file-then-dir/inside", data=b"now a directory\n"),
        ],
    )
    third = write_layer(
        tmp_path / "3.tar",
        [
            entry("etc/gone", data=b"back again\n"),  # a later layer may add it again
            entry(".wh..wh..plnk"),  # AUFS metadata: never copied
            entry("long/" + "d" * 120 + "/f\u00e9", data=b"long and non-ASCII name\n"),
        ],
    )
    return [first, second, third]


def test_whiteouts_and_opaque_markers_are_applied_and_gone(tmp_path: Path, rich_layers: list[str]) -> None:
    _, layer = run_flatten(tmp_path, rich_layers)
    names = members(layer)
    assert not [n for n in names if os.path.basename(n).startswith(".wh.")]
    data = contents(layer)
    assert data["etc/gone"] == b"back again\n"
    assert data["etc/kept"] == b"kept\n"
    assert [n for n in names if n.startswith("opaque/")] == ["opaque/new"]
    assert "tree" not in names and "tree/leaf" not in names
    assert names["old-file-then-dir"].isdir()
    assert data["old-file-then-dir/inside"] == b"now a directory\n"
    assert data["long/" + "d" * 120 + "/f\u00e9"] == b"long and non-ASCII name\n"
    assert flatten.markers(rich_layers) == [
        "layer 2: etc/.wh.gone",
        "layer 2: opaque/.wh..wh..opq",
        "layer 2: .wh.tree",
    ]


def test_modes_owners_times_xattrs_devices_links_are_kept(tmp_path: Path, rich_layers: list[str]) -> None:
    _, layer = run_flatten(tmp_path, rich_layers)
    names = members(layer)
    ping = names["usr/bin/ping"]
    assert ping.mode == 0o755
    assert ping.pax_headers["SCHILY.xattr.security.capability"].encode("utf-8", "surrogateescape") == (
        CAP_NET_BIND_SERVICE
    )
    blob = names["data/blob"].pax_headers["SCHILY.xattr.user.binary"]
    assert blob.encode("utf-8", "surrogateescape") == BINARY_XATTR
    assert names["usr/bin/su"].mode == 0o4755
    assert contents(layer)["usr/bin/su"] == b"\x7fELF suid v2"
    assert (names["usr/bin/wall"].mode, names["usr/bin/wall"].gid) == (0o2755, 5)
    assert names["tmp"].mode == 0o1777
    assert (names["dev/null"].ischr(), names["dev/null"].devmajor, names["dev/null"].devminor) == (True, 1, 3)
    assert (names["dev/loop0"].isblk(), names["dev/loop0"].devmajor) == (True, 7)
    assert names["run/fifo"].isfifo()
    assert names["bin"].issym() and names["bin"].linkname == "usr/bin"
    assert names["fraction"].mtime == pytest.approx(1700000000.123456789)
    assert names["etc/kept"].mtime == 1_700_000_000
    # hardlinks: the alias keeps the deleted original's inode; the first name in the output
    # carries the data so that a link never comes before its target
    alias = names["data/alias"]
    assert alias.isreg() and (alias.uid, alias.gid, alias.uname) == (1000, 1000, "app")
    assert contents(layer)["data/alias"] == b"hardlinked\n"
    assert "data/original" not in names
    assert names["aa/early"].isreg() and names["zz/late"].islnk()
    assert names["zz/late"].linkname == "aa/early"


def test_gnu_tar_reads_it_with_xattrs(tmp_path: Path, rich_layers: list[str]) -> None:
    _, layer = run_flatten(tmp_path, rich_layers)
    listing = subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-tvvf", str(layer)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "usr/bin/ping" in listing
    assert "-rwsr-xr-x" in listing
    assert "crw-rw-rw-" in listing
    assert "aa/early link to" not in listing and "zz/late link to aa/early" in listing


def test_entries_are_depth_first_sorted_and_the_bytes_deterministic(
    tmp_path: Path, rich_layers: list[str]
) -> None:
    first, layer = run_flatten(tmp_path, rich_layers)
    second, again = run_flatten(tmp_path, rich_layers)
    assert first == second
    assert layer.read_bytes() == again.read_bytes()
    assert first.diff_id == "sha256:" + hashlib.sha256(layer.read_bytes()).hexdigest()
    with tarfile.open(layer) as tar:
        order = [m.name for m in tar.getmembers()]
    parts = [n.split("/") for n in order]
    assert parts == sorted(parts, key=lambda p: [c.encode() for c in p])
    other, _ = run_flatten(tmp_path, rich_layers, upstream="sha256:" + "cd" * 32)
    assert other.diff_id == first.diff_id and other.digest != first.digest


def test_config_manifest_and_layout(tmp_path: Path, rich_layers: list[str]) -> None:
    result, layer = run_flatten(tmp_path, rich_layers)
    layout = layer.parent.parent.parent
    index = json.loads((layout / "index.json").read_bytes())
    (descriptor,) = index["manifests"]
    assert descriptor["digest"] == result.digest
    manifest_bytes = (layout / "blobs" / "sha256" / result.digest.split(":")[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == result.digest
    manifest = json.loads(manifest_bytes)
    assert manifest["layers"] == [
        {"mediaType": flatten.OCI_LAYER_TAR, "digest": result.diff_id, "size": result.size}
    ]
    assert manifest["annotations"] == {flatten.FLATTENED_FROM: UPSTREAM}
    config = json.loads(
        (layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_bytes()
    )
    assert config["rootfs"] == {"type": "layers", "diff_ids": [result.diff_id]}
    assert (config["os"], config["architecture"], config["config"]["Cmd"]) == ("linux", "amd64", ["/bin/sh"])
    assert [h.get("empty_layer") for h in config["history"]] == [True, True, True, None]
    assert config["history"][-1]["created"] == "2024-01-02T03:04:05Z"
    assert UPSTREAM in config["history"][-1]["comment"]


def test_hardlink_to_nothing_and_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    broken = write_layer(tmp_path / "b.tar", [entry("a", tarfile.LNKTYPE, linkname="missing")])
    with pytest.raises(InputError, match="hardlink a -> missing names no file"):
        run_flatten(tmp_path, [broken])
    escaping = write_layer(tmp_path / "e.tar", [entry("../etc/passwd", data=b"x")])
    with pytest.raises(InputError, match="outside the root"):
        run_flatten(tmp_path, [escaping])
    with pytest.raises(InputError, match="not a readable tar"):
        (tmp_path / "junk").write_bytes(b"junk" * 1000)
        run_flatten(tmp_path, [str(tmp_path / "junk")])


def _random_specs(rng: random.Random) -> list[ociimage.LayerSpec]:
    """Layers over a fixed tree: directories are only deleted or made opaque, leaves are
    files or symlinks (a file replacing a directory is covered above, not by the model)."""
    directories = ["a", "a/b", "e"]
    leaves = ["a/b/c", "a/d", "a/x", "e/f", "g"]
    specs: list[ociimage.LayerSpec] = []
    for _ in range(rng.randint(1, 4)):
        spec: dict[str, ociimage.Content] = {}
        for path in rng.sample(directories + leaves, rng.randint(1, 5)):
            choice = rng.random()
            if specs and choice < 0.25:
                spec[path] = None
            elif path in directories:
                if specs:
                    spec[path] = ociimage.OPAQUE
            elif choice < 0.4:
                spec[path] = ociimage.Symlink("/" + rng.choice(leaves))
            else:
                spec[path] = f"{path} in layer {len(specs)}\n"
        # a layer does not delete a directory and add below it at once
        for path in [p for p, c in spec.items() if c is None]:
            if any(other.startswith(path + "/") for other in spec):
                del spec[path]
        specs.append(spec)
    return specs


@pytest.mark.parametrize("seed", range(40))
def test_random_layers_flatten_to_what_the_harness_model_says(tmp_path: Path, seed: int) -> None:
    specs = _random_specs(random.Random(seed))
    layers = []
    for number, spec in enumerate(specs):
        path = tmp_path / f"{number}.tar"
        path.write_bytes(ociimage.layer_tar(spec))
        layers.append(str(path))
    _, layer = run_flatten(tmp_path, layers)
    found: dict[str, object] = {}
    with tarfile.open(layer) as tar:
        for member in tar.getmembers():
            if member.isreg():
                stream = tar.extractfile(member)
                assert stream is not None
                found[member.name] = stream.read().decode()
            elif member.issym():
                found[member.name] = ociimage.Symlink(member.linkname)
    assert found == ociimage.apply_layers(specs), specs


def test_the_flattened_digest_is_the_same_on_every_python(tmp_path: Path) -> None:
    """Golden digests: the layer headers are bindimg's own, so Python 3.9 (tests/test_python39.py
    runs this file there) and later versions write the same bytes."""
    specs: list[ociimage.LayerSpec] = [
        {
            "etc/gone": "deleted\n",
            "usr/bin/tool": ociimage.File(
                b"\x7fELF", 0o4755, (("security.capability", CAP_NET_BIND_SERVICE),)
            ),
            "lib/link": ociimage.Symlink("/usr/bin/tool"),
            "var/lib/t/old": "old\n",
        },
        {
            "etc/gone": None,
            "var/lib/t": ociimage.OPAQUE,
            "var/lib/t/new": "new\n",
            "long/" + "x" * 150: "long\n",
        },
    ]
    layers = []
    for number, spec in enumerate(specs):
        path = tmp_path / f"{number}.tar"
        path.write_bytes(ociimage.layer_tar(spec))
        layers.append(str(path))
    config = ociimage.image(specs).config.data
    result = flatten.flatten(layers, config, UPSTREAM, str(tmp_path / "layout"))
    assert result == flatten.Flattened(
        digest="sha256:c05c793187d054490fb31e9a38bc80e6a48a25b80799800844d5226e4d85c107",
        diff_id="sha256:163bdc079980d434d780d63f23c69a42bc2e89550be6dc4e52d6837fa2e524d7",
        size=10752,
    )
