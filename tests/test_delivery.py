"""The delivery chain (issue 13): platforms, images pulled at first start, the composefs backend.

Each finding is triggered and missed narrowly through the real CLI (`python -m bindimg`), and
`add`, `lint` and `lint --root` are shown to agree on the same input. Images come from the
test registry: a single-arch (linux/amd64) image and a two-platform index (amd64 + arm64).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Optional

import pytest

from tests import ociimage
from tests.kit import BOUND, D1, D2, EMBED, QDIR, STORAGE, link, run_bindimg, snapshot, store, write
from tests.registry import PushedImage, Registry

# The platform this machine is not: what `add` refuses by default for a single-arch image.
HOST = "linux/arm64" if platform.machine().lower() in ("aarch64", "arm64") else "linux/amd64"
OTHER = "linux/amd64" if HOST == "linux/arm64" else "linux/arm64"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    done = run_bindimg(*args)
    return done.code, done.out, done.err


def findings(*args: str) -> tuple[int, list[tuple[str, str, str, int]], list[dict[str, Any]]]:
    """`lint ARGS --format json`: exit code, (id, severity, path, line) rows, the raw findings."""
    code, out, err = run("lint", *args, "--format", "json")
    assert code in (0, 1), err
    found: list[dict[str, Any]] = json.loads(out)["findings"]
    return code, [(f["id"], f["severity"], f["path"], f["line"]) for f in found], found


@pytest.fixture
def single(registry: Registry, unique_repo: str) -> PushedImage:
    """An image for this machine's platform only (no index)."""
    return registry.push_image(ociimage.app_image("single", platform=HOST), unique_repo, "1.0")


@pytest.fixture
def other_only(registry: Registry, unique_repo: str) -> PushedImage:
    """An image for the platform this machine is not, only."""
    return registry.push_image(ociimage.app_image("other", platform=OTHER), unique_repo + "-other", "1.0")


@pytest.fixture
def both(registry: Registry, unique_repo: str) -> PushedImage:
    """The two-platform test index (linux/amd64 + linux/arm64)."""
    return registry.push_image(ociimage.multiarch_index("both"), unique_repo + "-both", "1.0")


def container(top: Path, rel: str, image: str, extra: str = "") -> Path:
    return write(top, rel, f"[Container]\nImage={image}\n{extra}")


# --- 1. platforms ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["linux/arm64", "linux/amd64"])
def test_add_refuses_an_image_without_the_target_platform(
    tmp_path: Path, registry: Registry, unique_repo: str, target: str
) -> None:
    only = "linux/amd64" if target == "linux/arm64" else "linux/arm64"
    pushed = registry.push_image(ociimage.app_image("only", platform=only), unique_repo, "1.0")
    unit = container(tmp_path, f"{QDIR}/app.container", pushed.ref)
    before = snapshot(tmp_path)
    code, out, err = run("add", "--root", str(tmp_path), "--no-tls-verify", "--platform", target, str(unit))
    assert (code, out) == (2, "")
    (line,) = err.splitlines()[-1:]
    assert line.startswith(f"bindimg: error: {unit}:2: ")
    assert pushed.ref in line and target in line and only in line
    assert snapshot(tmp_path) == before


def test_add_accepts_the_index_for_each_target_and_both(tmp_path: Path, both: PushedImage) -> None:
    unit = container(tmp_path, f"{QDIR}/app.container", both.ref)
    args = ("add", "--root", str(tmp_path), "--no-tls-verify", "--json")
    code, out, err = run(*args, "--platform", "linux/arm64", "--platform", "linux/amd64", str(unit))
    assert code == 0, err
    assert json.loads(out)["images"][0]["digest"] == both.digest


def test_add_defaults_to_the_platform_it_runs_on(
    tmp_path: Path, single: PushedImage, other_only: PushedImage
) -> None:
    good = container(tmp_path, f"{QDIR}/good.container", single.ref)
    code, _, err = run("add", "--root", str(tmp_path), "--no-tls-verify", str(good))
    assert code == 0, err
    bad = container(tmp_path, f"{QDIR}/bad.container", other_only.ref)
    code, _, err = run("add", "--root", str(tmp_path), "--no-tls-verify", str(bad))
    assert code == 2
    assert other_only.ref in err and f"no {HOST} image" in err


def test_a_malformed_platform_is_bad_usage(tmp_path: Path) -> None:
    write(tmp_path, "q/a.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    for command in (("lint", "q"), ("lock", "q", "--check")):
        code, out, err = run(*command, "--platform", "linux")
        assert (code, out) == (2, "")
        assert "--platform linux: write OS/ARCH or OS/ARCH/VARIANT" in err


def test_lock_records_the_platforms_of_index_and_single_manifest(
    here: Path, both: PushedImage, single: PushedImage
) -> None:
    container(here, "q/both.container", both.ref)
    container(here, "q/single.container", single.ref)
    code, _, err = run("lock", "q", "--no-tls-verify")
    assert code == 0, err
    assert Path("bindimg.lock").read_text() == (
        "# Generated by bindimg; do not edit. Update with `bindimg lock --update`.\n"
        "version = 1\n\n"
        f'[images."{both.ref}"]\n'
        f'digest = "{both.digest}"\n'
        'media-type = "application/vnd.oci.image.index.v1+json"\n'
        'used-by = ["q/both.container"]\n'
        'platforms = ["linux/amd64", "linux/arm64"]\n\n'
        f'[images."{single.ref}"]\n'
        f'digest = "{single.digest}"\n'
        'media-type = "application/vnd.oci.image.manifest.v1+json"\n'
        'used-by = ["q/single.container"]\n'
        f'platforms = ["{HOST}"]\n'
    )


def test_lock_refuses_a_target_an_image_lacks(here: Path, single: PushedImage) -> None:
    container(here, "q/single.container", single.ref)
    code, out, err = run("lock", "q", "--no-tls-verify", "--platform", OTHER)
    assert (code, out) == (2, "")
    assert single.ref in err and OTHER in err
    assert not Path("bindimg.lock").exists()
    assert run("lock", "q", "--no-tls-verify", "--platform", HOST)[0] == 0


def test_version_1_lock_without_platforms_loads_and_update_fills_them(here: Path, both: PushedImage) -> None:
    container(here, "q/both.container", both.ref)
    old = f'version = 1\n\n[images."{both.ref}"]\ndigest = "{both.digest}"\n'
    Path("bindimg.lock").write_text(old)
    Path("r").mkdir()
    assert run("lint", "q", "--lock", "bindimg.lock", "--platform", "linux/arm64", "-q") == (0, "", "")
    code, _, err = run("add", "--root", "r", "--lock", "bindimg.lock", "--frozen", "q/both.container")
    assert code == 0, err
    code, _, err = run("lock", "q", "--no-tls-verify", "--update")
    assert code == 0, err
    assert 'platforms = ["linux/amd64", "linux/arm64"]\n' in Path("bindimg.lock").read_text()


def test_lint_and_add_check_platforms_offline_from_the_lock(here: Path, fresh_registry: Registry) -> None:
    pushed = fresh_registry.push_image(ociimage.app_image("offline", platform="linux/amd64"), "t/off", "1.0")
    container(here, "q/app.container", pushed.ref)
    assert run("lock", "q", "--no-tls-verify")[0] == 0
    fresh_registry.stop()  # from here on, only the lock knows

    code, rows, found = findings("q", "--lock", "bindimg.lock", "--platform", "linux/arm64")
    assert (code, rows) == (1, [("platform-missing", "error", "q/app.container", 2)])
    assert pushed.ref in found[0]["message"] and "linux/arm64" in found[0]["message"]
    assert findings("q", "--lock", "bindimg.lock", "--platform", "linux/amd64")[:2] == (0, [])
    assert findings("q", "--lock", "bindimg.lock")[:2] == (0, [])  # no target given: nothing to check

    args = ("add", "--root", "r", "--lock", "bindimg.lock", "--frozen", "q/app.container")
    Path("r").mkdir()
    code, out, err = run(*args, "--platform", "linux/arm64")
    assert (code, out) == (2, "")
    assert err.startswith("bindimg: error: q/app.container:2: ")
    assert pushed.ref in err and "linux/arm64" in err
    assert list(Path("r").iterdir()) == []
    assert run(*args, "--platform", "linux/amd64")[0] == 0

    code, out, _ = run("lock", "q", "--check", "--platform", "linux/arm64")
    assert code == 1
    assert out.split(": ")[:3] == ["q/app.container:2", "error", "platform-missing"]


def test_lint_remote_and_lint_root_agree_with_add(here: Path, single: PushedImage) -> None:
    """The same image, target and verdict from the sources, the root `add` made, and `add`."""
    container(here, "q/app.container", single.by_digest)
    assert findings("q", "--remote", "--no-tls-verify", "--platform", HOST)[:2] == (0, [])
    code, rows, found = findings("q", "--remote", "--no-tls-verify", "--platform", OTHER)
    assert (code, rows) == (1, [("platform-missing", "error", "q/app.container", 2)])
    assert single.by_digest in found[0]["message"] and OTHER in found[0]["message"]

    unit = container(here, f"r/{QDIR}/app.container", single.ref)
    assert run("add", "--root", "r", "--no-tls-verify", "--platform", OTHER, str(unit))[0] == 2
    assert run("add", "--root", "r", "--no-tls-verify", "--platform", HOST, str(unit))[0] == 0
    root_args = ("--root", "r", "--remote", "--no-tls-verify")
    assert findings(*root_args, "--platform", HOST)[:2] == (0, [])
    code, rows, _ = findings(*root_args, "--platform", OTHER)
    assert (code, rows) == (1, [("platform-missing", "error", f"r/{QDIR}/app.container", 3)])


def test_platform_with_nowhere_to_read_platforms_from_is_bad_usage(here: Path) -> None:
    """A root has no lock: `--platform` needs `--remote`; sources need `--lock` or `--remote`.
    Either way one line, exit 2, no registry asked (none runs here) and nothing written."""
    container(here, "q/app.container", f"quay.io/o/app@{D1}")
    container(here, f"r/{QDIR}/app.container", f"quay.io/o/app@{D1}", f"{STORAGE}\n")
    link(here / "r", "app.container", f"/{QDIR}/app.container")
    before = snapshot(here)
    assert run("lint", "--root", "r", "--platform", OTHER) == (
        2,
        "",
        "bindimg: error: --platform with --root needs --remote: an image root has no lock to read "
        "the platforms from; add --remote\n",
    )
    assert run("lint", "q", "--platform", OTHER) == (
        2,
        "",
        "bindimg: error: --platform needs the images' platforms: add --lock FILE (read from the "
        "lock, offline) or --remote (asked of the registries)\n",
    )
    code, out, _ = run("lint", "--root", "r", "--platform", OTHER, "--format", "json")
    assert code == 2 and json.loads(out)["error"]["exit_code"] == 2
    assert snapshot(here) == before
    assert run("lint", "--root", "r", "-q") == (0, "", "")  # without --platform: nothing to ask


def test_a_per_platform_manifest_is_reported_when_building_for_several(here: Path, both: PushedImage) -> None:
    assert isinstance(both.content, ociimage.Index)
    child = both.content.image_for("linux/amd64").digest
    container(here, "child/app.container", f"{both.host}/{both.repo}@{child}")
    container(here, "index/app.container", both.by_digest)
    remote = ("--remote", "--no-tls-verify", "--platform", "linux/amd64")
    assert findings("child", *remote)[:2] == (0, [])
    code, rows, found = findings("child", *remote, "--platform", "linux/arm64")
    assert (code, rows) == (1, [("platform-missing", "error", "child/app.container", 2)])
    assert "linux/arm64" in found[0]["message"] and "multi-platform index" in found[0]["message"]
    assert findings("index", *remote, "--platform", "linux/arm64")[:2] == (0, [])


# --- 2. coverage: images pulled at first start -----------------------------------------------


def coverage_root(root: Path) -> None:
    """Every way a root runs an image; the comments say which are neither bound nor embedded."""
    write(root, f"{QDIR}/app.container", f"[Container]\nImage=quay.io/o/app@{D1}\n")  # bound
    link(root, "app.container", f"/{QDIR}/app.container")
    write(root, f"{QDIR}/db.image", f"[Image]\nImage=quay.io/o/db@{D2}\n")  # bound
    link(root, "db.image", f"/{QDIR}/db.image")
    write(root, f"{QDIR}/web.container", "[Container]\nImage=db.image\n")  # runs a bound image
    write(
        root,
        f"{QDIR}/emb.container",  # embedded
        f"[Container]\nImage=quay.io/o/emb@{D1}\n{EMBED}\nPull=never\n",
    )
    store(root, f"quay.io/o/emb@{D1}")
    write(root, f"{QDIR}/side.container", f"[Container]\nImage=quay.io/o/side@{D1}\n")  # unbound, line 2
    write(root, f"{QDIR}/tool.image", "[Image]\nImage=quay.io/o/tool:1\n")  # unbound, line 2
    write(root, f"{QDIR}/cache.volume", f"[Volume]\nDriver=image\nImage=quay.io/o/vol@{D2}\n")  # line 3
    write(root, f"{QDIR}/plain.volume", "[Volume]\nDevice=tmpfs\n")  # no image
    write(
        root,
        f"{QDIR}/mounts.container",
        f"[Container]\nImage=quay.io/o/app@{D1}\n"  # the bound image: fine
        f"Mount=type=image,source=quay.io/o/data@{D2},destination=/data\n"  # unbound, line 3
        "Mount=type=artifact,source=quay.io/o/model:1,destination=/model\n"  # unbound, line 4
        "Mount=type=image,source=db.image,destination=/db\n"  # a bound .image unit: fine
        "Mount=type=bind,source=/srv,destination=/srv\n",
    )
    write(root, f"{QDIR}/weights.artifact", "[Artifact]\nArtifact=quay.io/o/weights:2\n")  # unbound, line 2
    write(root, f"{QDIR}/pod.kube", "[Kube]\nYaml=pod.yaml\n")
    write(
        root,
        f"{QDIR}/pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod\nspec:\n"
        "  initContainers:\n  - name: init\n    image: quay.io/o/init:1\n"  # unbound, line 8
        "  containers:\n  - name: web\n    image: quay.io/o/app@" + D1 + "\n"  # bound: fine
        "  - name: side\n    image: quay.io/o/kside:3\n"  # unbound, line 13
        "    env:\n    - name: image\n      value: quay.io/o/not-an-image:1\n",
    )


UNBOUND = [
    ("unbound-image", "warning", f"r/{QDIR}/cache.volume", 3),
    ("unbound-image", "warning", f"r/{QDIR}/mounts.container", 3),
    ("unbound-image", "warning", f"r/{QDIR}/mounts.container", 4),
    ("unbound-image", "warning", f"r/{QDIR}/pod.yaml", 8),
    ("unbound-image", "warning", f"r/{QDIR}/pod.yaml", 13),
    ("unbound-image", "warning", f"r/{QDIR}/side.container", 2),
    ("unbound-image", "warning", f"r/{QDIR}/tool.image", 2),
    ("unbound-image", "warning", f"r/{QDIR}/weights.artifact", 2),
]


def test_every_image_pulled_at_first_start_is_reported_once(here: Path) -> None:
    coverage_root(here / "r")
    code, rows, found = findings("--root", "r")
    assert code == 0
    assert [r for r in rows if r[0] == "unbound-image"] == UNBOUND
    messages = {(f["path"], f["line"]): f["message"] for f in found}
    assert "quay.io/o/init:1" in messages[(f"r/{QDIR}/pod.yaml", 8)]
    assert "pod.kube" in messages[(f"r/{QDIR}/pod.yaml", 8)]
    assert run("lint", "--root", "r", "--strict", "-q")[0] == 1


def test_binding_or_embedding_them_clears_the_finding(here: Path) -> None:
    root = here / "r"
    write(root, f"{QDIR}/side.container", f"[Container]\nImage=quay.io/o/side@{D1}\n")
    write(root, f"{QDIR}/data.image", f"[Image]\nImage=quay.io/o/data@{D2}\n")
    write(
        root,
        f"{QDIR}/mounts.container",
        f"[Container]\nImage=quay.io/o/side@{D1}\nMount=type=image,source=quay.io/o/data@{D2},dst=/d\n",
    )
    assert findings("--root", "r")[1] == [
        ("unbound-image", "warning", f"r/{QDIR}/data.image", 2),
        ("unbound-image", "warning", f"r/{QDIR}/mounts.container", 2),
        ("unbound-image", "warning", f"r/{QDIR}/mounts.container", 3),
        ("unbound-image", "warning", f"r/{QDIR}/side.container", 2),
    ]
    link(root, "side.container", f"/{QDIR}/side.container")
    link(root, "data.image", f"/{QDIR}/data.image")
    assert [r for r in findings("--root", "r")[1] if r[0] == "unbound-image"] == []


def test_sources_are_not_checked_for_coverage(here: Path) -> None:
    coverage_root(here / "r")
    assert [r for r in findings(f"r/{QDIR}")[1] if r[0] == "unbound-image"] == []


def test_list_root_shows_unbound_images(here: Path) -> None:
    coverage_root(here / "r")
    code, out, err = run("list", "--root", "r")
    assert code == 0, err
    unbound = sorted(line for line in out.splitlines() if "\tunbound\t" in line)
    assert unbound == sorted(
        [
            f"quay.io/o/vol@{D2}\tunbound\tr/{QDIR}/cache.volume:3",
            f"quay.io/o/data@{D2}\tunbound\tr/{QDIR}/mounts.container:3",
            f"quay.io/o/model:1\tunbound\tr/{QDIR}/mounts.container:4",
            f"quay.io/o/init:1\tunbound\tr/{QDIR}/pod.yaml:8",
            f"quay.io/o/kside:3\tunbound\tr/{QDIR}/pod.yaml:13",
            f"quay.io/o/side@{D1}\tunbound\tr/{QDIR}/side.container:2",
            f"quay.io/o/tool:1\tunbound\tr/{QDIR}/tool.image:2",
            f"quay.io/o/weights:2\tunbound\tr/{QDIR}/weights.artifact:2",
        ]
    )


def test_add_warns_about_the_images_its_units_mount(here: Path) -> None:
    unit = write(
        here,
        f"r/{QDIR}/app.container",
        f"[Container]\nImage=quay.io/o/app@{D1}\nMount=type=image,source=quay.io/o/data@{D2},dst=/d\n",
    )
    code, _, err = run("add", "--root", "r", str(unit))
    assert code == 0, err
    # line 4 of the unit as written: `add` put GlobalArgs= under Image=
    assert f"{unit}:4: warning: unbound-image: quay.io/o/data@{D2} (Mount=type=image" in err


def kube(root: Path, name: str, yaml: str, data: Optional[bytes] = None) -> None:
    """`NAME.kube` with `Yaml=YAML` on line 2, and the YAML file beside it when `data` is given."""
    write(root, f"{QDIR}/{name}.kube", f"[Kube]\nYaml={yaml}\n")
    if data is not None:
        write(root, f"{QDIR}/{yaml}", data)


POD = b"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    image: quay.io/o/%s:1\n"


def unreadable_kube_root(root: Path, outside: Path) -> None:
    """`.kube` units whose YAML podman kube play cannot read, one bindimg does not read, and
    near misses podman reads (each of those names one image, reported unbound)."""
    kube(root, "syntax", "syntax.yaml", POD % b"s" + b"  - name: d\n    image: [\n")  # line 9
    kube(root, "scalar", "scalar.yaml", b"# a pod, one day\njust a string\n")  # line 2
    kube(root, "seq", "seq.yaml", b"- apiVersion: v1\n  kind: Pod\n")  # line 1
    kube(root, "multi", "multi.yaml", POD % b"m" + b"---\nkind: Pod\nkind: Service\n")  # line 9
    kube(root, "latin", "latin.yaml", POD % b"l" + b"# caf\xe9\n")  # line 7
    kube(root, "huge", "huge.yaml")
    with open(root / QDIR / "huge.yaml", "wb") as handle:
        handle.truncate(2 * 1024 * 1024)  # over the bound: refused by its size, never read
    kube(root, "dir", "dir.yaml")
    (root / QDIR / "dir.yaml").mkdir()
    kube(root, "missing", "missing.yaml")
    outside.write_bytes(POD % b"outside")  # on the host, outside the root: never read
    kube(root, "escape", "escape.yaml")
    os.symlink(str(outside), root / QDIR / "escape.yaml")  # resolves inside the root: missing
    kube(root, "climb", "../../../../../../../outside.yaml")  # `..` stops at the root: missing
    # near misses: podman reads these, so they are checked (and their image is unbound)
    kube(root, "bom", "bom.yaml", b"\xef\xbb\xbf---\n~\n---\n" + POD % b"bom")  # line 9
    kube(root, "wide", "wide.yaml", (POD % b"wide").decode().encode("utf-16"))  # line 6
    kube(root, "spec", "%N.yaml")  # a specifier: only systemd knows the file


UNREADABLE = [
    ("unbound-image", "warning", f"r/{QDIR}/bom.yaml", 9),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/climb.kube", 2),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/dir.kube", 2),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/escape.kube", 2),
    ("kube-yaml-unreadable", "warning", f"r/{QDIR}/huge.yaml", 1),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/latin.yaml", 7),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/missing.kube", 2),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/multi.yaml", 9),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/scalar.yaml", 2),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/seq.yaml", 1),
    ("kube-yaml-unreadable", "error", f"r/{QDIR}/syntax.yaml", 9),
    ("unbound-image", "warning", f"r/{QDIR}/wide.yaml", 6),
]


def test_a_kube_yaml_that_cannot_be_read_is_reported_not_skipped(here: Path) -> None:
    unreadable_kube_root(here / "r", here / "outside.yaml")
    code, rows, found = findings("--root", "r")
    assert (code, rows) == (1, UNREADABLE)
    messages = {(f["path"], f["line"]): f["message"] for f in found}
    assert messages[(f"r/{QDIR}/escape.kube", 2)] == (
        f"Yaml=escape.yaml: {here}/outside.yaml is not in the image: podman kube play fails when "
        "escape.kube starts, and its images are not checked; fix the path"
    )
    assert messages[(f"r/{QDIR}/dir.kube", 2)].startswith(f"Yaml=dir.yaml: /{QDIR}/dir.yaml is a directory")
    assert messages[(f"r/{QDIR}/multi.yaml", 9)].startswith('not YAML: found duplicate key "kind"')
    assert messages[(f"r/{QDIR}/huge.yaml", 1)].startswith("larger than 1024 KiB: bindimg does not read it")
    assert not any("outside" in f["message"] and "quay.io" in f["message"] for f in found)
    code, out, err = run("lint", "--root", "r")
    assert code == 1 and err == "bindimg: 9 errors, 3 warnings\n"
    assert (
        f"r/{QDIR}/latin.yaml:7: error: kube-yaml-unreadable: not UTF-8 text (byte 87): podman kube "
        "play fails when latin.kube starts, and its images are not checked; fix it\n"
    ) in out


def test_kube_yaml_findings_are_in_sarif_and_list_root_skips_them(here: Path) -> None:
    unreadable_kube_root(here / "r", here / "outside.yaml")
    code, out, _ = run("lint", "--root", "r", "--format", "sarif")
    assert code == 1
    run_ = json.loads(out)["runs"][0]
    rules = [rule["id"] for rule in run_["tool"]["driver"]["rules"]]
    located = sorted(
        (
            r["ruleId"],
            r["level"],
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in run_["results"]
        if rules[r["ruleIndex"]] == r["ruleId"] == "kube-yaml-unreadable"
    )
    assert located == sorted(row for row in UNREADABLE if row[0] == "kube-yaml-unreadable")
    code, out, err = run("list", "--root", "r")
    assert code == 0, err
    assert sorted(line for line in out.splitlines() if "\tunbound\t" in line) == [
        f"quay.io/o/bom:1\tunbound\tr/{QDIR}/bom.yaml:9",
        f"quay.io/o/wide:1\tunbound\tr/{QDIR}/wide.yaml:6",
    ]


# --- 3. the composefs backend ----------------------------------------------------------------


def uki_root(root: Path, uki: str) -> Path:
    write(root, uki, b"MZ")
    unit = write(root, f"{QDIR}/app.container", f"[Container]\nImage=quay.io/o/app@{D1}\n")
    return unit


def test_bound_images_in_a_uki_root_are_errors(here: Path) -> None:
    uki_root(here / "r", "boot/EFI/Linux/fedora-6.14.efi")
    link(here / "r", "app.container", f"/{QDIR}/app.container")
    write(here / "r", f"{QDIR}/db.image", f"[Image]\nImage=quay.io/o/db@{D2}\n")
    link(here / "r", "db.image", f"/{QDIR}/db.image")
    code, rows, found = findings("--root", "r")
    assert (code, [r for r in rows if r[0] == "composefs-ignores-bound"]) == (
        1,
        [
            ("composefs-ignores-bound", "error", f"r/{BOUND}/app.container", 1),
            ("composefs-ignores-bound", "error", f"r/{BOUND}/db.image", 1),
        ],
    )
    assert "--embed" in found[0]["message"] and "boot/EFI/Linux/fedora-6.14.efi" in found[0]["message"]


@pytest.mark.parametrize("other", ["boot/EFI/Linux/readme.txt", "boot/EFI/BOOT/BOOTX64.EFI", "boot/vmlinuz"])
def test_no_uki_no_finding(here: Path, other: str) -> None:
    uki_root(here / "r", other)
    link(here / "r", "app.container", f"/{QDIR}/app.container")
    assert [r for r in findings("--root", "r")[1] if r[0] == "composefs-ignores-bound"] == []


def test_add_refuses_to_bind_logically_in_a_uki_root(here: Path) -> None:
    unit = uki_root(here / "r", "boot/EFI/Linux/fedora-6.14.efi")
    before = snapshot(here / "r")
    code, out, err = run("add", "--root", "r", str(unit))
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and "--embed" in err and "composefs" in err
    assert snapshot(here / "r") == before
    os.remove(here / "r/boot/EFI/Linux/fedora-6.14.efi")
    code, _, err = run("add", "--root", "r", str(unit))
    assert code == 0, err
