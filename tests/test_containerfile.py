"""The end-to-end build: Containerfile.test runs `bindimg add` in a RUN step of `podman build`.

The zipapp is installed in the local base image (python3 and skopeo only), pins the units
against the registry container, and the test reads the built image's files byte for byte.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import buildimage
from tests.registry import PushedImages

QDIR = "usr/share/containers/systemd"
BOUND = "usr/lib/bootc/bound-images.d"
STORAGE = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/bootc/storage"


def units(images: PushedImages) -> dict[str, str]:
    return {
        "app.container": (
            f"[Unit]\nDescription=app\r\n\n[Container]\n  Image = {images.app.ref}\nExec=/bin/true\n"
        ),
        "web.container": "[Container]\nImage=multi.image\nExec=/bin/true\n",
        "multi.image": f"[Image]\nImage={images.multi.ref}\n",
    }


@pytest.fixture
def built(tmp_path: Path, zipapp: Path, base_image: str, images: PushedImages) -> Iterator[dict[str, object]]:
    context = buildimage.build_context(tmp_path, zipapp, units(images))
    image = buildimage.build(context, base_image)
    try:
        yield buildimage.read_tree(image, QDIR, BOUND, "usr/share/bindimg-second-run.json")
    finally:
        buildimage.remove(image)


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
        ]
    }
