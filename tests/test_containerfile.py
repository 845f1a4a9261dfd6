"""The end-to-end build: Containerfile.test runs `bindimg add` in a RUN step of `podman build`.

The zipapp is installed in the local base image (python3 and skopeo only), pins the units
against the registry container, and the test reads the built image's files byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import buildimage
from tests.kit import BOUND, QDIR, STORAGE, Run, run_bindimg
from tests.registry import PushedImages


def units(images: PushedImages) -> dict[str, str]:
    return {
        "app.container": (
            f"[Unit]\nDescription=app\r\n\n[Container]\n  Image = {images.app.ref}\nExec=/bin/true\n"
        ),
        "web.container": "[Container]\nImage=multi.image\nExec=/bin/true\n",
        "multi.image": f"[Image]\nImage={images.multi.ref}\n",
    }


@pytest.fixture(scope="module")
def image(
    tmp_path_factory: pytest.TempPathFactory, zipapp: Path, base_image: str, images: PushedImages
) -> Iterator[str]:
    context = buildimage.build_context(tmp_path_factory.mktemp("build"), zipapp, units(images))
    name = buildimage.build(context, base_image)
    try:
        yield name
    finally:
        buildimage.remove(name)


@pytest.fixture
def built(image: str) -> dict[str, object]:
    return buildimage.read_tree(image, QDIR, BOUND, "usr/share/bindimg-second-run.json")


@pytest.fixture(scope="module")
def image_root(image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built image's Quadlet directories and bootc directories, copied out."""
    root = tmp_path_factory.mktemp("image") / "root"
    buildimage.extract(image, root, "usr/share/containers", "usr/lib/bootc", "etc/containers")
    return root


def expected_files(images: PushedImages) -> dict[str, bytes]:
    app, multi = images.app, images.multi
    return {
        f"{QDIR}/app.container": (
            f"[Unit]\nDescription=app\r\n\n[Container]\n  # bindimg: pinned from {app.ref}\n"
            f"  Image = {app.host}/{app.repo}@{app.digest}\n  {STORAGE}\nExec=/bin/true\n"
        ).encode(),
        f"{QDIR}/web.container": f"[Container]\nImage=multi.image\n{STORAGE}\nExec=/bin/true\n".encode(),
        f"{QDIR}/multi.image": (
            f"[Image]\n# bindimg: pinned from {multi.ref}\nImage={multi.host}/{multi.repo}@{multi.digest}\n"
        ).encode(),
    }


def test_containerfile_build_pins_links_and_is_idempotent(
    built: dict[str, object], images: PushedImages
) -> None:
    links = {name: member.linkname for name, member in built.items() if isinstance(member, tarfile.TarInfo)}
    assert links == {
        f"{BOUND}/app.container": "/usr/share/containers/systemd/app.container",
        f"{BOUND}/multi.image": "/usr/share/containers/systemd/multi.image",
    }
    files = {name: data for name, data in built.items() if isinstance(data, bytes)}
    second = json.loads(files.pop("usr/share/bindimg-second-run.json"))
    assert files == expected_files(images)
    app = images.app
    assert second == {
        "images": [
            {
                "quadlet": "/usr/share/containers/systemd/app.container",
                "source": f"{app.host}/{app.repo}@{app.digest}",
                "reference": f"{app.host}/{app.repo}@{app.digest}",
                "digest": app.digest,
                "mode": "logical",
                "changed": False,
            }
        ],
        # the base image's dpkg database has no podman package: the newest rules
        "podman": {"version": None, "source": "default"},
    }


def lint_root(root: Path) -> Run:
    return run_bindimg("lint", "-q", "--root", str(root))


def test_lint_of_the_built_image_reports_nothing(image_root: Path) -> None:
    done = lint_root(image_root)
    assert (done.code, done.out, done.err) == (0, "", "")


def _append(path: Path, text: str) -> None:
    path.write_bytes(path.read_bytes() + text.encode())


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# Each way bootc-bound-images.md §2 says a bound image breaks bootc, done to the built image.
BREAKAGES = {
    "not-a-symlink": lambda r: (r / BOUND / "extra.container").write_text("[Container]\nImage=x\n"),
    "dangling-link": lambda r: os.symlink(f"/{QDIR}/gone.image", r / BOUND / "gone.image"),
    "bad-extension": lambda r: os.symlink(f"/{QDIR}/app.container", r / BOUND / "app.kube"),
    "authfile-unsupported": lambda r: _append(r / QDIR / "multi.image", "AuthFile=/etc/app/auth.json\n"),
    "specifier": lambda r: _replace(r / QDIR / "app.container", "@sha256:", ":%i@sha256:"),
    "bootc-parse-error": lambda r: _replace(
        r / QDIR / "app.container", "Exec=/bin/true", "Exec=/bin/true \\\n  --x"
    ),
    "missing-image": lambda r: _replace(r / QDIR / "multi.image", "\nImage=", "\nNotImage="),
}


@pytest.mark.parametrize("finding", sorted(BREAKAGES))
def test_lint_of_the_built_image_broken_each_way(image_root: Path, tmp_path: Path, finding: str) -> None:
    root = tmp_path / "root"
    shutil.copytree(image_root, root, symlinks=True)
    BREAKAGES[finding](root)
    done = lint_root(root)
    assert done.code == 1, done.out
    found = {line.split(": ")[2] for line in done.out.splitlines()}
    assert finding in found, done.out
