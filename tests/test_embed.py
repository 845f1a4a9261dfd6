"""`bindimg add --embed` end to end: real `podman build`s embed images in RUN steps, and a
podman on this machine runs them from the store taken out of the built image, offline.

Test images are made of a small runnable layer (python3 and what it needs to start, taken
from the base image) plus layers composed with tests/ociimage.py: a plain multi-layer
image, one with a whiteout, one with an opaque directory, one with a file capability and a
setuid file, and a two-platform index. Two builds of Containerfile.embed.test (overlay, with
the multi-stage flow and in-place steps; vfs) run against a registry container that is
stopped before any image is run. Behaviour that needs no build (refusals, all-or-nothing,
store init, determinism) is checked against a staging root on this machine.
"""

from __future__ import annotations

import ast
import dataclasses
import errno
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bindimg import fsutil, write
from bindimg import skopeo as skopeo_mod
from bindimg.commands import add as add_mod
from bindimg.embed import EmbedOptions
from bindimg.errors import ExternalError, InputError
from bindimg.registry import Skopeo
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.store import Store
from tests import buildimage, ociimage
from tests.faultproxy import fault_proxy
from tests.kit import QDIR, STORE, run_bindimg
from tests.registry import PushedImage, Registry, skopeo

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parent.parent
STORE_ARG = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/containers/storage"
# security.capability: VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_BIND_SERVICE (10)
CAP_NET_BIND_SERVICE = bytes.fromhex("0100000200040000000000000000000000000000")
RUN_TIMEOUT = 120

# Run inside each test container by its python3 (-I -S: no site, nothing but the layer):
# the state of the given paths, printed as a Python literal.
CHECK = """
import os, sys
def state(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    found = {"mode": st.st_mode & 0o7777, "uid": st.st_uid}
    try:
        found["cap"] = os.getxattr(path, "security.capability", follow_symlinks=False).hex()
    except OSError:
        found["cap"] = None
    if os.path.isdir(path):
        found["list"] = sorted(os.listdir(path))
    elif os.path.isfile(path):
        with open(path, "rb") as handle:
            found["data"] = handle.read().decode()
    return found
print(repr({p: state(p) for p in sys.argv[1:]}))
"""


# --- test images ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def python_layer(base_image: str) -> dict[str, ociimage.Content]:
    """python3, its libraries and the modules it needs to start, from the base image."""
    script = r"""
set -e
py=$(readlink -f /usr/bin/python3)
set -- /usr/bin/python3 $(ldd "$py" | grep -o '/[^ ]*' | sort -u)
set -- "$@" $(python3 -I -S -c 'import encodings, encodings.aliases, encodings.utf_8, os
print(encodings.__file__, encodings.aliases.__file__, encodings.utf_8.__file__, os.__file__)')
tar -C / --dereference --hard-dereference -cf - "${@#/}"
"""
    done = subprocess.run(
        ["podman", "run", "--rm", "--network=none", base_image, "bash", "-c", script],
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )
    spec: dict[str, ociimage.Content] = {}
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        for member in tar.getmembers():
            if member.isreg():
                stream = tar.extractfile(member)
                assert stream is not None
                spec[member.name] = ociimage.File(stream.read(), member.mode)
    assert "usr/bin/python3" in spec
    return spec


@dataclass(frozen=True)
class EmbedImages:
    app: PushedImage  # python + 2 layers, nothing to flatten
    caps: PushedImage  # python + a layer with a capability and a setuid file
    whiteout: PushedImage  # python + a layer + a layer deleting /etc/gone (and caps, setuid)
    opaque: PushedImage  # python + a layer + a layer making /var/lib/t opaque
    multi: PushedImage  # index: linux/amd64 (runnable) + linux/arm64
    base_bytes: int  # size of the python layer's tar


def capped(data: str) -> ociimage.File:
    return ociimage.File(data, 0o755, (("security.capability", CAP_NET_BIND_SERVICE),))


def push_test_images(registry: Registry, python: dict[str, ociimage.Content], marker: str) -> EmbedImages:
    def push(name: str, layers: Sequence[ociimage.LayerSpec]) -> PushedImage:
        return registry.push_image(ociimage.image([python, *layers]), f"embed/{name}", "1.0")

    arm = ociimage.image([{"etc/platform": "arm64\n"}], platform="linux/arm64")
    amd = ociimage.image([python, {"etc/platform": f"amd64 {marker}\n"}], platform="linux/amd64")
    return EmbedImages(
        app=push("app", [{"etc/app/one": f"one {marker}\n"}, {"etc/app/two": "two\n"}]),
        caps=push(
            "caps",
            [
                {
                    "usr/local/bin/capped": capped("capped\n"),
                    "usr/local/bin/suid": ociimage.File("s\n", 0o4755),
                }
            ],
        ),
        whiteout=push(
            "whiteout",
            [
                {
                    "etc/gone": "deleted by the next layer\n",
                    "etc/kept": f"kept {marker}\n",
                    "usr/local/bin/capped": capped("capped, flattened\n"),
                    "usr/local/bin/suid": ociimage.File("s\n", 0o4755),
                },
                {"etc/gone": None},
            ],
        ),
        opaque=push(
            "opaque",
            [
                {"var/lib/t/old": "hidden\n", "var/lib/t/sub/older": "hidden too\n"},
                {"var/lib/t": ociimage.OPAQUE, "var/lib/t/new": f"new {marker}\n"},
            ],
        ),
        multi=registry.push_image(ociimage.index([amd, arm]), "embed/multi", "1.0"),
        base_bytes=len(ociimage.layer_tar(python)),
    )


def unit_texts(images: EmbedImages) -> dict[str, str]:
    return {
        "app.container": f"[Container]\nImage={images.app.ref}\nExec=/bin/true\n",
        "caps.container": f"[Container]\nImage={images.caps.ref}\nPull=missing\n",
        "whiteout.container": (
            f"[Unit]\nDescription=whiteout\n\n[Container]\n  Image = {images.whiteout.ref}\n"
        ),
        "opaque.container": f"[Container]\nImage={images.opaque.ref}\n",
        "web.container": "[Container]\nImage=multi.image\n",
        "multi.image": f"[Image]\nImage={images.multi.ref}\n",
    }


# --- builds and what is taken out of them -----------------------------------------------


@dataclass
class Built:
    name: str  # the built image
    root: Path  # units and store taken out of it
    output: dict[str, str]  # /usr/share/bindimg-test/*
    seconds: float

    @property
    def store(self) -> Path:
        return self.root / STORE

    def unit(self, name: str) -> str:
        return (self.root / QDIR / name).read_text()


def build_and_extract(tmp: Path, zipapp: Path, base_image: str, units: dict[str, str], *args: str) -> Built:
    context = buildimage.build_context(tmp, zipapp, units)
    started = time.monotonic()
    image = buildimage.build(context, base_image, *args, containerfile="Containerfile.embed.test")
    seconds = time.monotonic() - started
    root = tmp / "root"
    buildimage.extract(image, root, QDIR, "usr/lib/containers", "usr/share/bindimg-test")
    output = {p.name: p.read_text() for p in (root / "usr/share/bindimg-test").iterdir()}
    return Built(image, root, output, seconds)


@dataclass
class Embedded:
    images: EmbedImages
    overlay: Built
    vfs: Built


@pytest.fixture(scope="module")
def embedded(
    tmp_path_factory: pytest.TempPathFactory,
    zipapp: Path,
    base_image: str,
    python_layer: dict[str, ociimage.Content],
) -> Iterator[Embedded]:
    """Both builds, then the registry stopped: every image below runs without it."""
    registry = Registry().start()
    built: list[Built] = []
    try:
        images = push_test_images(registry, python_layer, uuid.uuid4().hex[:8])
        units = unit_texts(images)
        common = "BINDIMG_ARGS=--image-policy missing"
        built.append(
            build_and_extract(
                tmp_path_factory.mktemp("overlay"),
                zipapp,
                base_image,
                units,
                common,
                # the multi-stage flow: a staging root copied into the OS stage
                "STAGED=/src/quadlets/opaque.container /src/quadlets/web.container",
                # in place: app shares the python layer with multi, caps too; whiteout is flattened
                "STEP1=/src/quadlets/app.container",
                "STEP2=/src/quadlets/caps.container",
                "STEP3=/src/quadlets/whiteout.container",
            )
        )
        built.append(
            build_and_extract(
                tmp_path_factory.mktemp("vfs"),
                zipapp,
                base_image,
                units,
                "BINDIMG_ARGS=--driver vfs",
                "STEP1=/src/quadlets/app.container",
                "STEP2=/src/quadlets/whiteout.container",
            )
        )
    finally:
        registry.stop()
        for item in built:
            buildimage.remove(item.name)
    yield Embedded(images, built[0], built[1])


# --- podman on this machine, with the store -----------------------------------------------


def podman_run(
    store: Path, image: str, *paths: str, driver: str = "overlay", read_only: bool = False
) -> dict[str, Any]:
    """`podman run --pull=never --network=none` of `image` found only in `store`; the CHECK
    of `paths` inside it. podman runs in a mount namespace of its own, so that none of its
    mounts outlives it, with `read_only` the store bind-mounted read-only there."""
    # a short path: conmon's sockets live below the runroot (a long one costs a 20 s timeout)
    work = Path(tempfile.mkdtemp(prefix="bindimg-p", dir="/tmp"))
    try:
        conf = work / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{work}/graph"\nrunroot = "{work}/run"\n'
            "[storage.options]\n" + (f'additionalimagestores = ["{store}"]\n' if driver == "overlay" else "")
        )
        argv = ["podman"]
        if driver == "vfs":  # vfs has no additional stores; its read-only store option
            argv += [f"--storage-opt=vfs.imagestore={store}"]
        argv += ["run", "--rm", "--pull=never", "--network=none", image, "python3", "-I", "-S", "-c", CHECK]
        argv += list(paths)
        protect = (
            f'mount --bind "{store}" "{store}" && mount -o remount,bind,ro "{store}" && ' if read_only else ""
        )
        argv = ["unshare", "--mount", "--propagation=private", "sh", "-c", f'{protect}exec "$@"', "sh", *argv]
        env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        result: dict[str, Any] = ast.literal_eval(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pinned(image: PushedImage, digest: str) -> str:
    return f"{image.host}/{image.repo}@{digest}"


def second_run(built: Built) -> dict[str, dict[str, Any]]:
    entries = json.loads(built.output["second-run.json"])["images"]
    return {Path(e["quadlet"]).name: e for e in entries}


# --- the overlay build ------------------------------------------------------------------


def test_units_pin_the_store_and_are_not_linked(embedded: Embedded) -> None:
    images, built = embedded.images, embedded.overlay
    runs = second_run(built)
    app = images.app
    assert built.unit("app.container") == (
        f"[Container]\n# bindimg: pinned from {app.ref}\nImage={pinned(app, app.digest)}\n"
        f"{STORE_ARG}\nPull=never\nExec=/bin/true\n"
    )
    caps = images.caps
    assert built.unit("caps.container") == (
        f"[Container]\n# bindimg: pinned from {caps.ref}\nImage={pinned(caps, caps.digest)}\n"
        f"{STORE_ARG}\nPull=never\n"
    )
    flat = runs["whiteout.container"]["digest"]
    assert flat != images.whiteout.digest
    assert built.unit("whiteout.container") == (
        "[Unit]\nDescription=whiteout\n\n[Container]\n"
        f"  # bindimg: pinned from {images.whiteout.ref} (flattened from {images.whiteout.digest})\n"
        f"  Image = {pinned(images.whiteout, flat)}\n  {STORE_ARG}\n  Pull=never\n"
    )
    multi = images.multi
    assert built.unit("multi.image") == (
        f"[Image]\n# bindimg: pinned from {multi.ref}\nImage={pinned(multi, multi.digest)}\n"
        f"{STORE_ARG}\nPolicy=missing\n"
    )
    assert built.unit("web.container") == f"[Container]\nImage=multi.image\n{STORE_ARG}\nPull=never\n"
    assert not (built.root / "usr/lib/bootc").exists()


def test_second_run_is_unchanged_and_reports_upstream_digests(embedded: Embedded) -> None:
    images, runs = embedded.images, second_run(embedded.overlay)
    assert {name: e["changed"] for name, e in runs.items()} == {
        "app.container": False,
        "caps.container": False,
        "whiteout.container": False,
        "opaque.container": False,
        "multi.image": False,
    }
    assert all(e["type"] == "embedded" for e in runs.values())
    for name, image, flattened in (
        ("app.container", images.app, False),
        ("caps.container", images.caps, False),
        ("multi.image", images.multi, False),
        ("whiteout.container", images.whiteout, True),
        ("opaque.container", images.opaque, True),
    ):
        entry = runs[name]
        assert (entry["flattened"], entry["upstream_digest"]) == (flattened, image.digest), name
        assert (entry["digest"] == image.digest) is not flattened


def test_each_image_runs_offline_from_the_store(embedded: Embedded) -> None:
    images, built = embedded.images, embedded.overlay
    runs = second_run(built)
    app = podman_run(built.store, pinned(images.app, images.app.digest), "/etc/app/one", "/etc/app/two")
    assert app["/etc/app/one"]["data"].startswith("one ") and app["/etc/app/two"]["data"] == "two\n"

    caps = podman_run(
        built.store,
        pinned(images.caps, images.caps.digest),
        "/usr/local/bin/capped",
        "/usr/local/bin/suid",
    )
    assert caps["/usr/local/bin/capped"]["cap"] == CAP_NET_BIND_SERVICE.hex()
    assert caps["/usr/local/bin/suid"]["mode"] == 0o4755

    whiteout = podman_run(
        built.store,
        runs["whiteout.container"]["image"],
        "/etc/gone",
        "/etc/kept",
        "/usr/local/bin/capped",
        "/usr/local/bin/suid",
    )
    assert whiteout["/etc/gone"] is None
    assert whiteout["/etc/kept"]["data"].startswith("kept ")
    assert whiteout["/usr/local/bin/capped"]["cap"] == CAP_NET_BIND_SERVICE.hex()
    assert whiteout["/usr/local/bin/suid"]["mode"] == 0o4755

    opaque = podman_run(built.store, runs["opaque.container"]["image"], "/var/lib/t")
    assert opaque["/var/lib/t"]["list"] == ["new"]

    multi = podman_run(built.store, pinned(images.multi, images.multi.digest), "/etc/platform")
    assert multi["/etc/platform"]["data"].startswith("amd64 ")


def test_the_store_works_read_only(embedded: Embedded) -> None:
    images, built = embedded.images, embedded.overlay
    found = podman_run(built.store, pinned(images.app, images.app.digest), "/etc/app/two", read_only=True)
    assert found["/etc/app/two"]["data"] == "two\n"


def test_a_shared_base_layer_is_stored_once_and_a_flattened_image_is_whole(embedded: Embedded) -> None:
    out, base = embedded.overlay.output, embedded.images.base_bytes
    sizes = [int(out[f"size-{n}"]) for n in range(4)]
    # staged: multi (python layer + 1) and opaque (flattened: a whole copy of its content)
    assert sizes[0] > 2 * base * 0.9
    # app and caps share the python layer with multi: only their own small layers are added
    assert sizes[1] - sizes[0] < base / 10
    assert sizes[2] - sizes[1] < base / 10
    # the flattened whiteout image carries its python files in its one layer
    assert sizes[3] - sizes[2] > base * 0.9
    layers = json.loads((embedded.overlay.store / "overlay-layers/layers.json").read_text())
    # python (shared), multi's 1, app's 2, caps' 1, opaque's 1, whiteout's 1
    assert len(layers) == 7


def test_the_store_is_ready_for_an_image_and_nothing_is_left_behind(embedded: Embedded) -> None:
    built = embedded.overlay
    for lock in ("overlay-images/images.lock", "overlay-layers/layers.lock"):
        assert (built.store / lock).is_file()
    assert not (built.store / "overlay/backingFsBlockDev").exists()
    leftovers = [line for line in built.output["leftovers"].splitlines() if "bindimg" in line]
    assert leftovers == []
    found = []
    for path in built.store.rglob(".wh.*"):
        found.append(str(path))
    assert found == []  # nothing a nested layer could read as its own whiteout


def test_lint_root_is_clean_and_reports_a_missing_image(embedded: Embedded, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(embedded.overlay.root, root, symlinks=True)
    clean = run_bindimg("lint", "--root", str(root), "--format", "json")
    assert clean.code == 0, clean.out + clean.err
    assert json.loads(clean.out)["findings"] == []
    app = embedded.images.app
    store = Store(Root(str(root)))
    skopeo_mod.delete_local(
        store.reference(str(tmp_path / "run"), pinned(app, app.digest)), timeout=RUN_TIMEOUT
    )
    assert mounts_below(root) == []
    missing = run_bindimg("lint", "--root", str(root), "--format", "json")
    assert missing.code == 1
    ids = [(Path(f["path"]).name, f["id"]) for f in json.loads(missing.out)["findings"]]
    assert ids == [("app.container", "embedded-missing")]


# --- the vfs build ----------------------------------------------------------------------


def test_vfs_store_runs_with_a_vfs_podman(embedded: Embedded) -> None:
    images, built = embedded.images, embedded.vfs
    runs = second_run(built)
    arg = "GlobalArgs=--storage-opt=vfs.imagestore=/usr/lib/containers/storage"
    assert arg in built.unit("app.container")
    assert {name: e["changed"] for name, e in runs.items()} == {
        "app.container": False,
        "whiteout.container": False,
    }
    assert (built.store / "vfs-images/images.lock").is_file() and not (built.store / "overlay").exists()
    app = podman_run(built.store, pinned(images.app, images.app.digest), "/etc/app/two", driver="vfs")
    assert app["/etc/app/two"]["data"] == "two\n"
    whiteout = podman_run(
        built.store, runs["whiteout.container"]["image"], "/etc/gone", "/etc/kept", driver="vfs"
    )
    assert whiteout["/etc/gone"] is None and whiteout["/etc/kept"] is not None


# --- on this machine: refusals, all-or-nothing, determinism -----------------------------


def mounts_below(path: Path) -> list[str]:
    """Mount points under `path`: bindimg (skopeo, containers/storage) must leave none."""
    with open("/proc/self/mounts") as handle:
        points = [line.split()[1] for line in handle]
    return [p for p in points if p == str(path) or p.startswith(f"{path}/")]


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def small_images(registry: Registry, unique_repo: str) -> dict[str, PushedImage]:
    return {
        "plain": registry.push_image(ociimage.app_image(unique_repo), f"{unique_repo}/plain", "1"),
        "whiteout": registry.push_image(ociimage.whiteout_image(unique_repo), f"{unique_repo}/whiteout", "1"),
    }


def write_units(tmp_path: Path, images: dict[str, PushedImage]) -> list[str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for name, image in images.items():
        (src / f"{name}.container").write_text(f"[Container]\nImage={image.ref}\n")
    return [str(src / f"{name}.container") for name in images]


def test_flatten_never_refuses_an_image_with_whiteouts(
    tmp_path: Path, small_images: dict[str, PushedImage]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    done = run_bindimg(
        "add",
        "--embed",
        "--flatten",
        "never",
        "--root",
        str(root),
        "--no-tls-verify",
        *write_units(tmp_path, small_images),
    )
    assert done.code == 2, done.err
    assert "has whiteouts or opaque-directory markers (layer 2: etc/.wh.gone)" in done.err
    assert "--flatten auto" in done.err
    assert snapshot(root) == {}


def test_a_logically_bound_unit_is_not_embedded(tmp_path: Path, small_images: dict[str, PushedImage]) -> None:
    root = tmp_path / "root"
    (root / QDIR).mkdir(parents=True)
    (root / "usr/lib/bootc/bound-images.d").mkdir(parents=True)
    (root / QDIR / "plain.container").write_text(f"[Container]\nImage={small_images['plain'].ref}\n")
    os.symlink(f"/{QDIR}/plain.container", root / "usr/lib/bootc/bound-images.d/plain.container")
    before = snapshot(root)
    done = run_bindimg(
        "add", "--embed", "--root", str(root), "--no-tls-verify", str(root / QDIR / "plain.container")
    )
    assert done.code == 2
    assert "is bound logically (/usr/lib/bootc/bound-images.d/plain.container)" in done.err
    assert snapshot(root) == before


def test_embedding_is_idempotent_deterministic_and_json(
    tmp_path: Path, small_images: dict[str, PushedImage]
) -> None:
    units = write_units(tmp_path, small_images)
    results = []
    for name in ("one", "two"):
        root = tmp_path / name
        root.mkdir()
        done = run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", "--json", *units)
        assert done.code == 0, done.err
        results.append({Path(e["quadlet"]).name: e for e in json.loads(done.out)["images"]})
    first, second = results
    assert first == {
        name: {**entry, "quadlet": entry["quadlet"].replace("/two/", "/one/")}
        for name, entry in second.items()
    }
    whiteout = small_images["whiteout"]
    entry = first["whiteout.container"]
    assert entry["flattened"] is True and entry["upstream_digest"] == whiteout.digest
    assert entry["digest"] != whiteout.digest and entry["changed"] is True
    assert first["plain.container"]["flattened"] is False
    assert first["plain.container"]["digest"] == first["plain.container"]["upstream_digest"]
    again = run_bindimg(
        "add", "--embed", "--root", str(tmp_path / "one"), "--no-tls-verify", "--json", *units
    )
    assert [e["changed"] for e in json.loads(again.out)["images"]] == [False, False]
    assert "fetching" not in again.err  # the store has both: nothing is downloaded again
    assert mounts_below(tmp_path) == []


def test_a_unit_pinned_flattened_is_embedded_again_into_a_new_root(
    tmp_path: Path, small_images: dict[str, PushedImage]
) -> None:
    """A unit pinned to a flattened digest (say from a source tree) is re-flattened from its
    upstream digest, to the same digest."""
    first = tmp_path / "first"
    first.mkdir()
    units = write_units(tmp_path, {"whiteout": small_images["whiteout"]})
    assert run_bindimg("add", "--embed", "--root", str(first), "--no-tls-verify", *units).code == 0
    pinned_unit = first / QDIR / "whiteout.container"
    second = tmp_path / "second"
    (second / QDIR).mkdir(parents=True)
    shutil.copy(pinned_unit, second / QDIR)
    done = run_bindimg(
        "add", "--embed", "--root", str(second), "--no-tls-verify", str(second / QDIR / "whiteout.container")
    )
    assert done.code == 0, done.err
    assert (second / QDIR / "whiteout.container").read_bytes() == pinned_unit.read_bytes()
    assert "unchanged" not in done.out  # the store was filled
    names = json.loads((second / STORE / "overlay-images/images.json").read_text())[0]["names"]
    assert names == json.loads((first / STORE / "overlay-images/images.json").read_text())[0]["names"]
    # logically bound instead, the unit goes back to the upstream image
    third = tmp_path / "third"
    (third / QDIR).mkdir(parents=True)
    shutil.copy(pinned_unit, third / QDIR)
    done = run_bindimg("add", "--root", str(third), str(third / QDIR / "whiteout.container"))
    assert done.code == 0, done.err
    whiteout = small_images["whiteout"]
    assert f"Image={pinned(whiteout, whiteout.digest)}\n" in (third / QDIR / "whiteout.container").read_text()


def test_a_failed_copy_leaves_the_root_untouched(
    tmp_path: Path,
    registry: Registry,
    small_images: dict[str, PushedImage],
) -> None:
    root = tmp_path / "root"
    (root / QDIR).mkdir(parents=True)
    # an existing store with an image in it: the failed run must take out only its own
    keep = small_images["plain"]
    done = run_bindimg(
        "add", "--embed", "--root", str(root), "--no-tls-verify", *write_units(tmp_path, {"plain": keep})
    )
    assert done.code == 0, done.err
    before = snapshot(root)
    extra = {"extra": ociimage.app_image(f"extra-{uuid.uuid4().hex}"), "wh": ociimage.whiteout_image("w")}
    units = []
    for name, content in extra.items():
        pushed = registry.push_image(content, f"{keep.repo}-{name}", "1")
        units.append(tmp_path / f"{name}.container")
        units[-1].write_text(f"[Container]\nImage={pushed.ref}\n")
    copies: list[str] = []

    class FailingSecondCopy(Skopeo):
        """The real skopeo, except that the second copy into the store fails."""

        def copy_from_registry(self, reference: str, dest: str, *args: Any, **kwargs: Any) -> None:
            copies.append(dest)
            if len(copies) == 2:
                raise skopeo_mod.SkopeoError("no space left on device (simulated)")
            skopeo_mod.copy_from_registry(reference, dest, *args, **kwargs)

    options = add_mod.AddOptions(
        root=Root(str(root)),
        registry=RegistryOptions(tls_verify=False),
        embed=EmbedOptions(),
        client=FailingSecondCopy(),
    )
    with pytest.raises(ExternalError, match="no space left on device"):
        add_mod.plan([str(u) for u in units], options)
    assert len(copies) == 2 and all(c.startswith("containers-storage:") for c in copies)
    assert_store_as_before(root, before, keep)


def assert_store_as_before(root: Path, before: dict[str, bytes], keep: PushedImage) -> None:
    after = snapshot(root)
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    # c/storage rewrites its own index and lock files in place; the images are as before
    assert not [p for p in changed if not p.startswith(STORE)]
    assert json.loads((root / STORE / "overlay-images/images.json").read_text())[0]["names"] == [
        pinned(keep, keep.digest)
    ]
    assert len(json.loads((root / STORE / "overlay-layers/layers.json").read_text())) == len(
        json.loads(before[f"{STORE}/overlay-layers/layers.json"])
    )


def test_a_failed_write_takes_the_images_out_of_the_store_again(
    tmp_path: Path, small_images: dict[str, PushedImage], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / QDIR).mkdir(parents=True)
    keep = small_images["plain"]
    units = write_units(tmp_path, {"plain": keep})
    assert run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", *units).code == 0
    before = snapshot(root)

    def full_disk(path: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device (simulated)", path)

    options = add_mod.AddOptions(
        root=Root(str(root)), registry=RegistryOptions(tls_verify=False), embed=EmbedOptions()
    )
    plan = add_mod.plan(write_units(tmp_path, {"whiteout": small_images["whiteout"]}), options)
    try:
        assert [e.flattened for e in plan.entries] == [True]  # stored flattened while planning
        monkeypatch.setattr(fsutil, "stage", full_disk)  # the units' write (planning wrote the journal)
        with pytest.raises(InputError, match="No space left on device"):
            write.apply(plan)
    finally:
        plan.close()
    assert_store_as_before(root, before, keep)


def test_a_second_image_on_a_stored_base_fetches_only_its_own_layers(
    tmp_path: Path, registry: Registry, unique_repo: str
) -> None:
    base_layer: ociimage.LayerSpec = {"usr/lib/base/data": "base " * 50_000, "etc/base": unique_repo}
    base = registry.push_image(ociimage.image([base_layer]), f"{unique_repo}/base", "1")
    app = registry.push_image(ociimage.image([base_layer, {"etc/app": "app\n"}]), f"{unique_repo}/app", "1")
    root = tmp_path / "root"
    root.mkdir()
    with fault_proxy(registry.host) as proxy:
        units = write_units(tmp_path, {"base": dataclasses.replace(base, host=proxy.host)})
        assert run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", *units).code == 0
        first = {s.path.rsplit("/", 1)[1] for s in proxy.requests(r"/blobs/")}
        proxy.seen.clear()
        units = write_units(tmp_path, {"app": dataclasses.replace(app, host=proxy.host)})
        done = run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", *units)
        assert done.code == 0, done.err
        second = [s.path.rsplit("/", 1)[1] for s in proxy.requests(r"/blobs/")]
    manifest = json.loads(registry.raw_manifest(app.repo, app.digest))
    base_digest, own_digest = (layer["digest"] for layer in manifest["layers"])
    assert base_digest in first
    assert sorted(second) == sorted([manifest["config"]["digest"], own_digest])  # the base: not again
    assert "1 of 2 layers new" in done.err
    growth = r"^image store /usr/lib/containers/storage: 1 image added, \+0\.\d MB of layers$"
    assert re.search(growth, done.err, re.M), done.err


def test_dry_run_reads_manifests_only_and_says_what_would_be_stored(
    tmp_path: Path, registry: Registry, small_images: dict[str, PushedImage]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    plain = small_images["plain"]
    with fault_proxy(registry.host) as proxy:
        units = write_units(tmp_path, {"plain": dataclasses.replace(plain, host=proxy.host)})
        done = run_bindimg("add", "--embed", "--dry-run", "--root", str(root), "--no-tls-verify", *units)
        blobs = proxy.requests(r"/blobs/")
    assert done.code == 0, done.err
    assert blobs == []
    manifest = json.loads(registry.raw_manifest(plain.repo, plain.digest))
    size = manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"])
    layers = len(manifest["layers"])
    assert (
        f"would store {proxy.host}/{plain.repo}@{plain.digest}: {layers} of {layers} layers new, "
        f"{size / 1e6:.1f} MB to fetch;"
    ) in done.err
    assert f"+Image={proxy.host}/{plain.repo}@{plain.digest}\n" in done.out
    assert snapshot(root) == {}


def test_store_init_makes_an_empty_store_podman_reads_read_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = run_bindimg("store", "init", "--root", str(root))
    assert first.code == 0 and first.out.startswith("created /usr/lib/containers/storage")
    again = run_bindimg("store", "init", "--root", str(root))
    assert again.out.startswith("unchanged")
    store = root / STORE
    assert sorted(str(p.relative_to(store)) for p in store.rglob("*")) == [
        "overlay-images",
        "overlay-images/images.lock",
        "overlay-layers",
        "overlay-layers/layers.lock",
    ]
    assert (store / "overlay-images").stat().st_mode & 0o777 == 0o700
    vfs = run_bindimg(
        "store", "init", "--root", str(root), "--driver", "vfs", "--store", "/usr/share/containers/storage"
    )
    assert vfs.code == 0 and (root / "usr/share/containers/storage/vfs-layers/layers.lock").is_file()
    bad = run_bindimg("store", "init", "--root", str(root), "--store", "/var/lib/containers/storage")
    assert bad.code == 2 and "under /usr" in bad.err
    # an empty, read-only store: podman lists nothing, and fails on nothing
    work = tmp_path / "podman"
    conf = tmp_path / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/graph"\nrunroot = "{work}/run"\n'
        f'[storage.options]\nadditionalimagestores = ["{store}"]\n'
    )
    listed = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation=private",
            "sh",
            "-c",
            f'mount --bind "{store}" "{store}" && mount -o remount,bind,ro "{store}" && podman images -q',
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)},
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert (listed.returncode, listed.stdout) == (0, ""), listed.stderr


def test_an_embedded_image_unit_may_have_an_authfile_and_gets_policy_missing(
    tmp_path: Path, small_images: dict[str, PushedImage]
) -> None:
    """bootc never reads an embedded .image unit: its AuthFile= (inside the root) is used to copy."""
    root = tmp_path / "root"
    (root / QDIR).mkdir(parents=True)
    (root / "etc/containers").mkdir(parents=True)
    (root / "etc/containers/auth.json").write_text('{"auths": {}}')
    unit = root / QDIR / "plain.image"
    plain = small_images["plain"]
    unit.write_text(f"[Image]\nImage={plain.ref}\nAuthFile=/etc/containers/auth.json\n")
    done = run_bindimg(
        "add", "--embed", "--image-policy", "missing", "--root", str(root), "--no-tls-verify", str(unit)
    )
    assert done.code == 0, done.err
    assert unit.read_text() == (
        f"[Image]\n# bindimg: pinned from {plain.ref}\nImage={pinned(plain, plain.digest)}\n"
        f"{STORE_ARG}\nPolicy=missing\nAuthFile=/etc/containers/auth.json\n"
    )
    (tmp_path / "other").mkdir()
    logical = run_bindimg("add", "--root", str(tmp_path / "other"), "--no-tls-verify", str(unit))
    assert logical.code == 2 and "AuthFile=" in logical.err


def test_a_drop_in_that_pulls_is_refused_before_any_network(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / QDIR / "app.container.d").mkdir(parents=True)
    (root / QDIR / "app.container").write_text("[Container]\nImage=127.0.0.1:9/none/app:1\n")
    (root / QDIR / "app.container.d/pull.conf").write_text("[Container]\nPull=always\n")
    before = snapshot(root)
    done = run_bindimg("add", "--embed", "--root", str(root), str(root / QDIR / "app.container"))
    assert done.code == 2
    assert "pull.conf:2: Pull=always in this drop-in lets podman pull" in done.err
    assert "resolving" not in done.err
    assert snapshot(root) == before


def test_a_podman_6_root_gets_a_storage_conf_d_drop_in_and_keeps_global_args(
    tmp_path: Path, small_images: dict[str, PushedImage]
) -> None:
    root = tmp_path / "root"
    vendor = root / "usr/share/containers/storage.rootful.conf.d/00-vendor-additional-store.conf"
    vendor.parent.mkdir(parents=True)
    vendor.write_text('[storage.options]\nadditionalimagestores = ["/usr/lib/containers/storage"]\n')
    (root / "etc/containers").mkdir(parents=True)
    units = write_units(tmp_path, {"plain": small_images["plain"]})
    dry = run_bindimg(
        "add", "--embed", "--rootless", "--dry-run", "--root", str(root), "--no-tls-verify", *units
    )
    dropin = "usr/share/containers/storage.rootless.conf.d/50-bindimg-usr-lib-containers-storage.conf"
    assert dry.code == 0, dry.err
    assert f"+++ {root}/{dropin}\n" in dry.out
    assert "storage.rootful.conf.d/50-bindimg" not in dry.out  # the vendor's lists the store
    done = run_bindimg("add", "--embed", "--rootless", "--root", str(root), "--no-tls-verify", *units)
    assert done.code == 0, done.err
    assert (
        (root / dropin)
        .read_text()
        .endswith(
            '[storage.options]\nadditionalimagestores = ["/usr/lib/containers/storage", {append = true}]\n'
        )
    )
    assert STORE_ARG in (root / QDIR / "plain.container").read_text()
    assert not (root / "etc/containers/storage.conf").exists()
    again = run_bindimg("add", "--embed", "--rootless", "--root", str(root), "--no-tls-verify", *units)
    assert again.code == 0 and again.out.startswith("unchanged"), again.out


def test_images_a_killed_run_left_staged_are_taken_out_by_the_next_run(
    tmp_path: Path, small_images: dict[str, PushedImage]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    plain, whiteout = small_images["plain"], small_images["whiteout"]
    assert (
        run_bindimg(
            "add", "--embed", "--root", str(root), "--no-tls-verify", *write_units(tmp_path, {"plain": plain})
        ).code
        == 0
    )
    # as a run killed after copying it, before the units were written, leaves it
    journal = root / STORE / "bindimg-staging.json"
    journal.write_text(json.dumps([pinned(plain, plain.digest)]))
    dry = run_bindimg(
        "add",
        "--embed",
        "--dry-run",
        "--root",
        str(root),
        "--no-tls-verify",
        *write_units(tmp_path, {"whiteout": whiteout}),
    )
    assert dry.code == 0 and journal.exists()  # --dry-run changes nothing
    done = run_bindimg(
        "add",
        "--embed",
        "--root",
        str(root),
        "--no-tls-verify",
        *write_units(tmp_path, {"whiteout": whiteout}),
    )
    assert done.code == 0, done.err
    assert "removing 1 image an interrupted run left in the store" in done.err
    assert not journal.exists()
    names = [
        n
        for image in json.loads((root / STORE / "overlay-images/images.json").read_text())
        for n in image["names"]
    ]
    assert len(names) == 1 and names[0].startswith(f"{whiteout.host}/{whiteout.repo}@")  # flattened only


@pytest.mark.parametrize("left", ["layers", "unnamed image"])
def test_what_a_killed_copy_left_is_read_for_whiteouts_when_the_next_copy_reuses_it(
    tmp_path: Path, small_images: dict[str, PushedImage], left: str
) -> None:
    """containers/storage commits an image's layers, then the image, then its names: a copy
    killed in between (skopeo dies with a SIGKILLed bindimg) leaves layers no image uses, or
    an unnamed image the journal's `skopeo delete NAME@DIGEST` cannot find. The next copy of
    that image reuses them; their whiteouts must still be found, the image flattened exactly
    as in a store that never saw the killed copy, and no unnamed image left."""
    plain, whiteout = small_images["plain"], small_images["whiteout"]
    roots = {name: tmp_path / name / "root" for name in ("clean", "killed")}
    for name, root in roots.items():
        root.mkdir(parents=True)
        units = write_units(tmp_path / name, {"plain": plain})
        assert run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", *units).code == 0
    store = Store(Root(str(roots["killed"])))
    reference = f"{whiteout.host}/{whiteout.repo}@{whiteout.digest}"
    skopeo(
        *("copy", "--src-tls-verify=false", "--preserve-digests"),
        f"docker://{reference}",
        store.reference(str(tmp_path / "runroot"), reference),
    )
    index = roots["killed"] / STORE / "overlay-images/images.json"
    records = json.loads(index.read_text())
    if left == "layers":
        records = [r for r in records if reference not in r["names"]]
    else:
        for record in records:
            if reference in record["names"]:
                del record["names"]
        (roots["killed"] / STORE / "bindimg-staging.json").write_text(json.dumps([reference]))
    index.write_text(json.dumps(records))
    layers = store.layers()
    assert reference not in store.names() and len(layers) > len(store.layers_of(store.names(), layers))
    pinned_units = {}
    for name, root in roots.items():
        units = write_units(tmp_path / name, {"whiteout": whiteout})
        done = run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", *units)
        assert done.code == 0, done.err
        pinned_units[name] = (root / QDIR / "whiteout.container").read_text()
    assert pinned_units["killed"] == pinned_units["clean"]
    lines = pinned_units["killed"].splitlines()
    assert lines[1] == f"# bindimg: pinned from {whiteout.ref} (flattened from {whiteout.digest})", lines
    assert [r.get("names") for r in json.loads(index.read_text()) if not r.get("names")] == []


def test_an_image_a_killed_copy_left_unnamed_is_taken_out_by_the_next_run(
    tmp_path: Path, small_images: dict[str, PushedImage]
) -> None:
    """The journal names the image NAME@DIGEST, which a copy killed before naming it cannot
    be found by: the next run deletes it by its id (podman would list it as <none>)."""
    plain, whiteout = small_images["plain"], small_images["whiteout"]
    root = tmp_path / "root"
    root.mkdir()
    units = write_units(tmp_path, {"plain": plain})
    assert run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", *units).code == 0
    store = Store(Root(str(root)))
    layers = set(store.layers())
    reference = f"{whiteout.host}/{whiteout.repo}@{whiteout.digest}"
    skopeo(
        *("copy", "--src-tls-verify=false", "--preserve-digests"),
        f"docker://{reference}",
        store.reference(str(tmp_path / "runroot"), reference),
    )
    index = root / STORE / "overlay-images/images.json"
    records = json.loads(index.read_text())
    for record in records:
        if reference in record["names"]:
            del record["names"]
    index.write_text(json.dumps(records))
    (root / STORE / "bindimg-staging.json").write_text(json.dumps([reference]))
    assert len(store.unnamed(whiteout.digest)) == 1
    done = run_bindimg("add", "--embed", "--root", str(root), "--no-tls-verify", *units)
    assert done.code == 0, done.err
    assert "removing 1 image an interrupted run left in the store" in done.err
    assert store.unnamed(whiteout.digest) == []
    names = [r["names"] for r in json.loads(index.read_text())]
    assert names == [[f"{plain.host}/{plain.repo}@{plain.digest}"]]
    assert set(store.layers()) == layers
