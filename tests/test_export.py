"""`bindimg export` against real components: registry containers, skopeo, podman.

Each test pushes its own images (distinct markers, so no two share an image ID) to a
registry of its own, exports them, then stops that registry before checking the result
with podman or skopeo: what was exported must work without the source.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ociimage
from tests.faultproxy import FaultProxy, fault_proxy
from tests.kit import D1, D2, QDIR, RUN_TIMEOUT, Run, link, run_bindimg, snapshot, write
from tests.registry import PushedImage, Registry, skopeo

pytestmark = pytest.mark.e2e

NO_TLS = ("--no-tls-verify",)
REF_NAME = "org.opencontainers.image.ref.name"


# The overlay driver bind-mounts its home unless told not to: a test leaves no mounts behind.
OVERLAY_OPTIONS = "overlay.skip_mount_home=true"
_RUNROOTS: dict[Path, str] = {}


def podman(store: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """podman on a private store (never the machine's own), with a run root of its own: podman
    wants a short one, and the same one every time."""
    runroot = _RUNROOTS.setdefault(store, tempfile.mkdtemp(prefix="bindimg-run-"))
    argv = ["podman", "--root", str(store / "root"), "--runroot", runroot, "--storage-driver", "overlay"]
    argv += ["--storage-opt", OVERLAY_OPTIONS]
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=env, timeout=300, check=False)


@pytest.fixture(autouse=True)
def _podman_runroots() -> Iterator[None]:
    yield
    while _RUNROOTS:
        shutil.rmtree(_RUNROOTS.popitem()[1], ignore_errors=True)


def push_three(registry: Registry, marker: str) -> tuple[PushedImage, PushedImage, PushedImage]:
    """A one-platform image, a two-platform index and a second one-platform image."""
    return (
        registry.push_image(ociimage.app_image(f"{marker}-app"), "exp/app", "1.0"),
        registry.push_image(ociimage.multiarch_index(f"{marker}-multi"), "exp/multi", "1.0"),
        registry.push_image(ociimage.app_image(f"{marker}-tool"), "exp/tool", "2.0"),
    )


def config_of(image: PushedImage) -> str:
    """The config digest of the image podman stores on this (amd64) machine."""
    content = image.content
    if isinstance(content, ociimage.Index):
        content = content.images[0]
    return content.config.digest


def bound_root(top: Path, images: tuple[PushedImage, ...]) -> Path:
    """A root binding each image: the first through a .image unit, the others .container."""
    root = top / "root"
    for number, image in enumerate(images):
        ext = "image" if number == 0 else "container"
        group = "Image" if number == 0 else "Container"
        write(root, f"{QDIR}/u{number}.{ext}", f"[{group}]\nImage={image.by_digest}\n")
        link(root, f"u{number}.{ext}", f"/{QDIR}/u{number}.{ext}")
    return root


def lock_file(path: Path, images: tuple[PushedImage, ...]) -> Path:
    entries = "".join(
        f'[images."{image.ref}"]\ndigest = "{image.digest}"\nmedia-type = "x"\nused-by = []\n\n'
        for image in images
    )
    path.write_text(f"version = 1\n\n{entries}")
    return path


def export_lock(lock: Path, dest: str, *extra: str) -> Run:
    return run_bindimg("export", "--lock", str(lock), "--to", dest, *extra, *NO_TLS)


def index_refs(layout: Path) -> dict[str, str]:
    document = json.loads((layout / "index.json").read_text())
    return {m["annotations"][REF_NAME]: m["digest"] for m in document["manifests"]}


def statuses(stdout: str) -> list[tuple[str, str]]:
    return sorted((line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in stdout.splitlines())


def test_root_to_private_containers_storage_works_offline_and_twice_copies_nothing(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    images = push_three(fresh_registry, "cs")
    root = bound_root(tmp_path, images)
    store = tmp_path / "store"
    dest = f"containers-storage:[overlay@{store}/root+{store}/run:{OVERLAY_OPTIONS}]"

    done = run_bindimg("export", "--root", str(root), "--to", dest, *NO_TLS)
    assert done.code == 0, done.err
    assert statuses(done.out) == sorted(("exported", i.by_digest) for i in images)
    for image in images:
        assert f"exporting {image.by_digest}" in done.err

    fresh_registry.stop()
    expected = [config_of(image) for image in images]
    for image, config in zip(images, expected):
        found = podman(store, "image", "inspect", image.by_digest, "--format", "{{.Id}}")
        assert found.returncode == 0, found.stderr
        assert "sha256:" + found.stdout.strip() == config

    before = snapshot(store / "root")
    again = run_bindimg("export", "--root", str(root), "--to", dest, *NO_TLS)
    assert again.code == 0, again.err
    assert statuses(again.out) == sorted(("present", i.by_digest) for i in images)
    assert "exporting" not in again.err
    assert snapshot(store / "root") == before


def test_lock_to_oci_layout_restores_each_image_with_its_digest(
    fresh_registry: Registry, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    images = push_three(fresh_registry, "oci")
    lock = lock_file(tmp_path / "bindimg.lock", images)
    layout = tmp_path / "layout"

    done = run_bindimg("export", "--lock", str(lock), "--to", f"oci:{layout}", "--json", *NO_TLS)
    assert done.code == 0, done.err
    result = json.loads(done.out)
    assert [(i["image"], i["type"], i["status"]) for i in result["images"]] == [
        (i.by_digest, "lock", "exported") for i in images
    ]
    assert index_refs(layout) == {i.by_digest: i.digest for i in images}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bindimg-export-")] == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bindimg-export-")]

    fresh_registry.stop()  # the registry wiped: restore from the layout alone
    for image in images:
        target = registry.ref(f"{unique_repo}/{image.repo}", "restored")
        skopeo(
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci:{layout}:{image.by_digest}",
            f"docker://{target}",
        )
        assert registry.digest(f"{unique_repo}/{image.repo}", "restored") == image.digest

    # a rerun with the registry gone copies nothing and succeeds; it still removes what a
    # killed run left beside the layout (staging named by a process that no longer runs)
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = tmp_path / f".bindimg-export-{gone.pid}-x1"
    (left / "layout").mkdir(parents=True)
    before = snapshot(layout)
    again = run_bindimg("export", "--lock", str(lock), "--to", f"oci:{layout}", *NO_TLS)
    assert again.code == 0, again.err
    assert statuses(again.out) == sorted(("present", i.by_digest) for i in images)
    assert snapshot(layout) == before
    assert not left.exists()


def test_registry_failure_exits_3_saying_what_was_exported_and_leaves_dest_usable(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    images = push_three(fresh_registry, "fail")
    layout = tmp_path / "layout"
    first = export_lock(lock_file(tmp_path / "one.lock", images[:1]), f"oci:{layout}")
    assert first.code == 0, first.err
    before = snapshot(layout)
    fresh_registry.stop()

    failed = export_lock(lock_file(tmp_path / "two.lock", images[:2]), f"oci:{layout}", "--retry", "0")
    assert failed.code == 3, failed.err
    message = failed.err.strip().splitlines()[-1]
    assert message.startswith(
        f"bindimg: error: 1 of 2 images not exported to oci:{layout}: {images[1].by_digest}: "
    )
    assert message.endswith(f"; exported: none; already there: {images[0].by_digest}")
    lines = failed.out.splitlines()
    assert lines[0] == f"present {images[0].by_digest}"
    assert lines[1].startswith(f"failed {images[1].by_digest}: pinging container registry ")
    assert "connection refused" in lines[1]
    assert snapshot(layout) == before
    assert index_refs(layout) == {images[0].by_digest: images[0].digest}


def test_platform_keeps_the_index_and_only_the_images_asked_for(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    multi = fresh_registry.push_image(ociimage.multiarch_index("plat"), "exp/multi", "1.0")
    unit = write(tmp_path, "src/m.container", f"[Container]\nImage={multi.by_digest}\n")
    assert isinstance(multi.content, ociimage.Index)
    amd64, arm64 = multi.content.images
    layout = tmp_path / "layout"

    done = run_bindimg("export", str(unit), "--to", f"oci:{layout}", "--platform", "linux/arm64", *NO_TLS)
    assert done.code == 0, done.err
    assert index_refs(layout) == {multi.by_digest: multi.digest}
    blobs = {p.name for p in (layout / "blobs" / "sha256").iterdir()}
    assert multi.digest.split(":")[1] in blobs
    assert arm64.digest.split(":")[1] in blobs and arm64.config.digest.split(":")[1] in blobs
    assert amd64.digest.split(":")[1] not in blobs
    raw = skopeo("inspect", "--raw", f"oci:{layout}:{multi.by_digest}")
    assert ociimage.sha256_digest(raw) == multi.digest


def test_oci_archive_holds_every_image_and_is_replaced_whole(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    images = push_three(fresh_registry, "arc")
    archive = tmp_path / "images.tar"
    for count in (1, 3):  # the second run adds two images to the archive of the first
        done = run_bindimg(
            "export",
            "--lock",
            str(lock_file(tmp_path / "x.lock", images[:count])),
            "--to",
            f"oci-archive:{archive}",
            *NO_TLS,
        )
        assert done.code == 0, done.err
    for image in images:
        raw = skopeo("inspect", "--raw", f"oci-archive:{archive}:{image.by_digest}")
        assert ociimage.sha256_digest(raw) == image.digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.tar", "x.lock"]


def test_mirror_with_registries_conf_serves_podman_pulls_by_digest(
    fresh_registry: Registry, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    images = push_three(fresh_registry, "mirror")
    root = bound_root(tmp_path, images)
    conf = tmp_path / "50-bindimg-mirror.conf"
    dest = f"docker://{registry.host}/{unique_repo}"

    done = run_bindimg(
        "export",
        "--root",
        str(root),
        "--to",
        dest,
        "--registries-conf",
        str(conf),
        "--no-dest-tls-verify",
        *NO_TLS,
    )
    assert done.code == 0, done.err
    for image in images:
        assert registry.digest(f"{unique_repo}/{image.repo}", image.digest) == image.digest
    text = conf.read_text()
    for image in images:
        name = f"{fresh_registry.host}/{image.repo}"
        assert (
            f'[[registry]]\nprefix = "{name}"\nlocation = "{name}"\nmirror-by-digest-only = true\n\n'
            f'[[registry.mirror]]\nlocation = "{registry.host}/{unique_repo}/{image.repo}"\n'
            "insecure = true\n"
        ) in text

    fresh_registry.stop()
    env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf)}
    store = tmp_path / "device"
    for image in images:
        pulled = podman(store, "pull", "-q", image.by_digest, env=env)
        assert pulled.returncode == 0, pulled.stderr
        found = podman(store, "image", "inspect", image.by_digest, "--format", "{{.Digest}}")
        assert found.stdout.strip() == image.digest
    # without the drop-in the same pull fails: the mirror is what served it
    plain = podman(tmp_path / "other", "pull", "-q", images[0].by_digest)
    assert plain.returncode != 0

    again = run_bindimg("export", "--root", str(root), "--to", dest, "--no-dest-tls-verify", *NO_TLS)
    assert again.code == 0, again.err
    assert statuses(again.out) == sorted(("present", i.by_digest) for i in images)


def test_dry_run_copies_nothing_and_lists_what_would_be_exported(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    images = push_three(fresh_registry, "dry")
    root = bound_root(tmp_path, images)
    done = run_bindimg("export", "--root", str(root), "--to", f"oci:{tmp_path}/layout", "--dry-run", *NO_TLS)
    assert done.code == 0, done.err
    assert statuses(done.out) == sorted(("planned", i.by_digest) for i in images)
    assert not (tmp_path / "layout").exists()


# --- refusals: exit 2, one line, nothing written (no registry needed) ------------------------

PINNED = f"quay.io/org/app@{D1}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "oci:{tmp}/out"], "give one of --root DIR, --lock FILE or UNIT-OR-DIR..."),
        (
            ["{unit}", "--to", "dir:{tmp}/out"],
            "--to dir:{tmp}/out: give containers-storage:[…], oci:DIR, oci-archive:FILE or "
            "docker://MIRROR[/PREFIX]",
        ),
        (
            ["{unit}", "--to", "containers-storage:quay.io/x"],
            "--to containers-storage:quay.io/x: give containers-storage: or "
            "containers-storage:[DRIVER@ROOT+RUNROOT] without an image name "
            "(each image is stored as NAME@DIGEST)",
        ),
        (
            [
                "{unit}",
                "--to",
                "containers-storage:",
                "--platform",
                "linux/amd64",
                "--platform",
                "linux/arm64",
            ],
            "--platform: containers-storage holds one image per name; give one --platform "
            "(default: this machine's)",
        ),
        (
            ["{unit}", "--to", "oci:{tmp}/out", "--registries-conf", "{tmp}/r.conf"],
            "--registries-conf: only with --to docker://MIRROR (it maps sources to the mirror)",
        ),
        (
            ["{unit}", "--to", "docker://mirror.example/m", "--platform", "linux/arm64"],
            "--platform: a mirror gets every platform of an index (a registry refuses an index "
            "whose images it lacks, and a smaller index would not have the pinned digest); drop "
            "--platform, or export only some platforms to oci:DIR or oci-archive:FILE",
        ),
        (
            ["{unit}", "--to", "docker://mirror.example/m:tag"],
            "--to docker://mirror.example/m:tag: give docker://REGISTRY[/PREFIX], e.g. "
            "docker://mirror.example:5000/bootc",
        ),
        (
            ["{unit}", "{twin}", "--to", "docker://mirror.example/m"],
            "quay.io/org/app and registry.example/org/app would both be mirrored as "
            "mirror.example/m/org/app; export them to different --to prefixes",
        ),
        (
            ["{unit}", "--to", "oci:{tmp}/out", "--include-embedded"],
            "--include-embedded: only with --root (the embedded store is in the root)",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    unit = write(tmp_path, "src/a.container", f"[Container]\nImage={PINNED}\n")
    twin = write(
        tmp_path, "src/b.container", f"[Container]\nImage=registry.example/org/app@{D2}\n"
    )
    before = snapshot(tmp_path)
    fill = {"tmp": str(tmp_path), "unit": str(unit), "twin": str(twin)}
    done = run_bindimg("export", *(a.format(**fill) for a in args))
    assert (done.code, done.out) == (2, "")
    assert done.err == f"bindimg: error: {message.format(**fill)}\n"
    assert snapshot(tmp_path) == before


def test_an_unpinned_unit_is_refused_naming_the_unit_and_line(tmp_path: Path) -> None:
    write(tmp_path, "src/a.container", f"[Container]\nImage={PINNED}\n")
    unit = write(tmp_path, "src/b.container", "[Container]\n# tag\nImage=quay.io/org/b:1.0\n")
    done = run_bindimg("export", str(tmp_path / "src"), "--to", f"oci:{tmp_path}/out")
    assert (done.code, done.out) == (2, "")
    assert done.err == (
        f"bindimg: error: {unit}:3: Image=quay.io/org/b:1.0 is not pinned by digest, and export copies "
        "pinned images only; pin it with `bindimg add` (or `bindimg lock --rewrite`)\n"
    )
    assert not (tmp_path / "out").exists()


def test_an_unpinned_bound_unit_in_a_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root, f"{QDIR}/a.image", "[Image]\nImage=quay.io/org/a:latest\n")
    link(root, "a.image", f"/{QDIR}/a.image")
    done = run_bindimg("export", "--root", str(root), "--to", "containers-storage:")
    assert done.code == 2
    where = f"{root}/{QDIR}/a.image:2"
    assert done.err.startswith(f"bindimg: error: {where}: Image=quay.io/org/a:latest is not pinned")


def test_include_embedded_adds_the_store_images_flattened_ones_from_the_store(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    logical, plain = push_three(fresh_registry, "emb")[:2]
    whiteout = fresh_registry.push_image(ociimage.whiteout_image("emb-w"), "exp/whiteout", "1.0")
    root = bound_root(tmp_path, (logical,))
    units = [
        write(tmp_path, f"src/{n}.container", f"[Container]\nImage={i.by_digest}\n")
        for n, i in (("plain", plain), ("whiteout", whiteout))
    ]
    added = run_bindimg("add", "--root", str(root), "--embed", *NO_TLS, *map(str, units))
    assert added.code == 0, added.err
    listed = run_bindimg("list", "--root", str(root), "--json")
    embedded = sorted(i["image"] for i in json.loads(listed.out)["images"] if i["type"] == "embedded")
    flattened = next(name for name in embedded if name.startswith(f"{fresh_registry.host}/exp/whiteout@"))
    assert flattened != whiteout.by_digest  # pinned to the flattened image, which no registry has
    assert embedded == sorted([plain.by_digest, flattened])

    layout = tmp_path / "layout"
    only = run_bindimg("export", "--root", str(root), "--to", f"oci:{layout}", *NO_TLS)
    assert only.code == 0, only.err
    assert list(index_refs(layout)) == [logical.by_digest]
    done = run_bindimg("export", "--root", str(root), "--include-embedded", "--to", f"oci:{layout}", *NO_TLS)
    assert done.code == 0, done.err
    assert statuses(done.out) == sorted(
        [("present", logical.by_digest), ("exported", plain.by_digest), ("exported", flattened)]
    )
    fresh_registry.stop()
    for name in (logical.by_digest, plain.by_digest, flattened):
        raw = skopeo("inspect", "--raw", f"oci:{layout}:{name}")
        assert ociimage.sha256_digest(raw) == name.split("@")[1]
        assert index_refs(layout)[name] == name.split("@")[1]


def test_a_killed_export_leaves_a_usable_layout_and_a_rerun_completes(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    images = push_three(fresh_registry, "kill")
    lock = lock_file(tmp_path / "bindimg.lock", images)
    layout = tmp_path / "layout"
    argv = [
        sys.executable,
        "-m",
        "bindimg",
        "export",
        "--lock",
        str(lock),
        "--to",
        f"oci:{layout}",
        "--jobs",
        "1",
    ]
    seen: set[int] = set()  # how many images the layout held after each kill
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.0, 0.1):
        process = subprocess.Popen(
            [*argv, *NO_TLS],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        for line in process.stderr:  # kill while an image is being copied, or just after
            if " exporting " in line:
                time.sleep(delay)
                break
        os.killpg(process.pid, signal.SIGKILL)  # bindimg and the skopeo it runs
        process.wait()
        process.stderr.close()
        refs = index_refs(layout) if (layout / "index.json").exists() else {}
        seen.add(len(refs))
        for number, (name, digest) in enumerate(refs.items()):  # every image listed is whole
            assert ociimage.sha256_digest(skopeo("inspect", "--raw", f"oci:{layout}:{name}")) == digest
            skopeo(
                "copy",
                "--all",
                "--preserve-digests",
                f"oci:{layout}:{name}",
                f"oci:{tmp_path}/check:{number}",
            )
    assert seen & {1, 2}, seen  # some kill fell between two images
    done = run_bindimg("export", "--lock", str(lock), "--to", f"oci:{layout}", *NO_TLS)
    assert done.code == 0, done.err
    assert index_refs(layout) == {i.by_digest: i.digest for i in images}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bindimg-export-")] == []


def test_credentials_never_show_in_output(fresh_registry: Registry, tmp_path: Path) -> None:
    image = fresh_registry.push_image(ociimage.app_image("creds"), "exp/app", "1.0")
    unit = write(tmp_path, "src/a.container", f"[Container]\nImage={image.by_digest}\n")
    mirror = Registry().start()
    mirror.stop()  # unreachable: every attempt fails and is reported
    secret = "s3cret-Pa55word"
    for fmt in ((), ("--json",)):
        done = run_bindimg(
            "export", str(unit), "--to", f"docker://{mirror.host}/m", "--retry", "0", *fmt,
            "--creds", f"user:{secret}", "--dest-creds", f"other:{secret}x", "--no-dest-tls-verify", *NO_TLS,
        )  # fmt: skip
        assert done.code == 3, done.err
        assert "connection refused" in done.err
        assert secret not in done.out + done.err


def test_an_image_units_own_registry_settings_apply_to_its_image(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    image = fresh_registry.push_image(ociimage.app_image("unitopts"), "exp/app", "1.0")
    unit = write(tmp_path, "src/a.image", f"[Image]\nImage={image.by_digest}\nTLSVerify=false\n")
    done = run_bindimg("export", str(unit), "--to", f"oci:{tmp_path}/layout")  # no --no-tls-verify
    assert done.code == 0, done.err
    assert index_refs(tmp_path / "layout") == {image.by_digest: image.digest}
    unit.write_text(f"[Image]\nImage={image.by_digest}\n")  # without it, TLS is verified and fails
    failed = run_bindimg("export", str(unit), "--to", f"oci:{tmp_path}/other", "--retry", "0")
    assert failed.code == 3
    assert "http: server gave HTTP response to HTTPS client" in failed.err


# --- on a terminal; what an oci: DEST already holds ------------------------------------------

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
EMPTY_INDEX = '{"schemaVersion": 2, "manifests": []}'


def on_terminal(*args: str) -> tuple[int, str, str]:
    """`python -m bindimg ARGS` with stderr on a pseudo-terminal 400 columns wide: the exit
    code, stdout, and what the terminal showed (escape sequences removed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "400"}
    env.pop("NO_COLOR", None)
    child = subprocess.Popen(
        [sys.executable, "-m", "bindimg", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    shown = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            shown.extend(data)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        out, _ = child.communicate(timeout=RUN_TIMEOUT)
    finally:
        child.kill()
        reader.join(timeout=30)
        os.close(master)
    return child.returncode, out.decode(), ESCAPES.sub("", shown.decode("utf-8", "replace"))


def blobs_of(registry: Registry, image: PushedImage) -> dict[str, int]:
    """Every blob an OCI layout holds for `image` (all platforms): digest -> size."""
    found: dict[str, int] = {}
    pending = [image.digest]
    while pending:
        digest = pending.pop()
        raw = registry.raw_manifest(image.repo, digest)
        found[digest] = len(raw)
        document = json.loads(raw)
        pending += [m["digest"] for m in document.get("manifests", [])]
        for blob in [document.get("config"), *document.get("layers", [])]:
            if blob is not None:
                found[blob["digest"]] = blob["size"]
    return found


def blob_gets(proxy: FaultProxy) -> list[str]:
    return sorted(s.path.rsplit("/", 1)[1] for s in proxy.requests(r"/blobs/sha256:") if s.method == "GET")


def test_on_a_terminal_each_image_has_a_live_line_with_its_exact_bytes(
    fresh_registry: Registry, tmp_path: Path
) -> None:
    app, multi, _ = push_three(fresh_registry, "tty")
    lock = lock_file(tmp_path / "bindimg.lock", (app, multi))
    code, out, shown = on_terminal("export", "--lock", str(lock), "--to", f"oci:{tmp_path}/layout", *NO_TLS)
    assert code == 0, shown
    assert statuses(out) == sorted(("exported", i.by_digest) for i in (app, multi))
    for image in (app, multi):
        blobs = blobs_of(fresh_registry, image)
        total = sum(blobs.values())
        ended = rf"exported in \d+\.\d s: {len(blobs)} of {len(blobs)} blobs new, {total} bytes"
        assert re.search(rf"{re.escape(image.by_digest)}: {ended}", shown), shown
        assert f"{len(blobs)}/{len(blobs)} blobs new" in shown  # the line's detail while it runs
    assert isinstance(multi.content, ociimage.Index)  # every platform's blobs are counted
    pushed = {blob.digest for image in multi.content.images for blob in image.blobs()}
    assert len(blobs_of(fresh_registry, multi)) == 1 + len(pushed)  # a blob two platforms share: once
    assert "exporting" not in shown  # the live line replaces the start and end lines
    assert "2 exported" in shown


def test_an_oci_dest_fetches_only_the_blobs_it_lacks(fresh_registry: Registry, tmp_path: Path) -> None:
    shared: ociimage.LayerSpec = {"usr/lib/base/data": "base " * 50_000, "etc/base": "shared\n"}
    base = fresh_registry.push_image(ociimage.image([shared]), "exp/base", "1")
    app = fresh_registry.push_image(ociimage.image([shared, {"etc/app": "app\n"}]), "exp/app", "1")
    layout = tmp_path / "layout"
    with fault_proxy(fresh_registry.host) as proxy:
        via = tuple(dataclasses.replace(image, host=proxy.host) for image in (base, app))
        first = export_lock(lock_file(tmp_path / "base.lock", via[:1]), f"oci:{layout}")
        assert first.code == 0, first.err
        proxy.seen.clear()
        app_lock = lock_file(tmp_path / "app.lock", via[1:])
        code, _, shown = on_terminal("export", "--lock", str(app_lock), "--to", f"oci:{layout}", *NO_TLS)
        assert code == 0, shown
        second = blob_gets(proxy)
        # a run killed after moving blobs, before writing the index: every blob is there
        (layout / "index.json").write_text(EMPTY_INDEX)
        proxy.seen.clear()
        again = export_lock(lock_file(tmp_path / "both.lock", via), f"oci:{layout}")
        assert again.code == 0, again.err
        third = blob_gets(proxy)
    manifest = json.loads(fresh_registry.raw_manifest(app.repo, app.digest))
    base_manifest = json.loads(fresh_registry.raw_manifest(base.repo, base.digest))
    shared_layer, own_layer = (layer["digest"] for layer in manifest["layers"])
    assert base_manifest["layers"][0]["digest"] == shared_layer
    assert second == sorted([manifest["config"]["digest"], own_layer])  # the shared layer: not again
    new = len(fresh_registry.raw_manifest(app.repo, app.digest)) + manifest["config"]["size"]
    new += manifest["layers"][1]["size"]
    assert f"{via[1].by_digest}: exported in " in shown
    assert f"3 of 4 blobs new, {new} bytes" in shown  # manifest, config, own layer
    assert third == sorted([manifest["config"]["digest"], base_manifest["config"]["digest"]])
    assert index_refs(layout) == {v.by_digest: v.digest for v in via}
    held = {p.name for p in (layout / "blobs" / "sha256").iterdir()}
    assert held == {d.split(":")[1] for i in (base, app) for d in blobs_of(fresh_registry, i)}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bindimg-export-")]
    fresh_registry.stop()
    for image in via:  # the layout is whole: skopeo reads each image back by its digest
        copied = tmp_path / f"check-{image.repo.replace('/', '-')}"
        skopeo("copy", "--quiet", "--preserve-digests", f"oci:{layout}:{image.by_digest}", f"oci:{copied}:x")
        assert index_refs_digest(copied) == image.digest


def index_refs_digest(layout: Path) -> str:
    return str(json.loads((layout / "index.json").read_text())["manifests"][0]["digest"])
