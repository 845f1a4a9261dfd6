"""Export's destinations against a fake `Registry`: which copies they ask for, and with what.

The end-to-end tests (test_export.py) run real skopeo; these pin the arguments each DEST
hands the registry client, and how failures of the client are read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import pytest

from bindimg.destinations import (
    Copier,
    LayoutDestination,
    MirrorDestination,
    Plan,
    StorageDestination,
    Wanted,
    destination,
)
from bindimg.errors import ExternalError
from bindimg.flatten import FLATTENED_FROM
from bindimg.platforms import Platform
from bindimg.resolve import Settings
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions, SkopeoError
from bindimg.store import Store
from tests.kit import D1, FakeRegistry

MANIFEST = b'{"schemaVersion": 2}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
ITEM = Wanted("quay.io/org/app", DIGEST, "lock", "bindimg.lock", None)
UNIT_OPTIONS = RegistryOptions(tls_verify=False)


class Recording(FakeRegistry):
    """Answers look-ups with `answer`, local look-ups with `local`, and records every copy
    (its failures taken from `copy_failures`, one per call, until none are left)."""

    def __init__(self, answer: Any = lambda ref: MANIFEST, local: Optional[bytes] = None) -> None:
        super().__init__(answer)
        self.local = local
        self.copies: list[tuple[str, str, dict[str, Any]]] = []
        self.copy_failures: list[SkopeoError] = []

    def copy_image(self, source: str, dest: str, **options: Any) -> None:
        self.copies.append((source, dest, options))
        if self.copy_failures:
            raise self.copy_failures.pop(0)

    def inspect_local_raw(self, transport_ref: str, *, timeout: Optional[float] = None) -> bytes:
        self.asked.append(transport_ref)
        if self.local is None:
            raise SkopeoError("no such image")
        return self.local


def copier(client: Recording, retry: int = 0, slept: Optional[list[float]] = None) -> Copier:
    pauses = [] if slept is None else slept
    return Copier(
        RegistryOptions(cert_dir="/certs"), RegistryOptions(), Settings(retry=retry), client, pauses.append
    )


def test_containers_storage_copies_one_platform_to_name_at_digest() -> None:
    client = Recording()
    dest = destination("containers-storage:[vfs@/g+/r]", copier(client))
    assert isinstance(dest, StorageDestination)
    assert not dest.holds(ITEM)  # skopeo found nothing
    dest.put(ITEM, [Platform.parse("linux/arm64/v8")], "/run/x")
    assert client.copies == [
        (
            f"docker://{ITEM.image}",
            f"containers-storage:[vfs@/g+/r]{ITEM.image}",
            {
                "src_options": RegistryOptions(cert_dir="/certs"),
                "dest_options": RegistryOptions(),
                "reference": "quay.io/org/app",
                "multi_arch": "system",
                "platform": ("linux", "arm64", "v8"),
                "watch": None,  # not on a terminal
            },
        )
    ]
    client.local = MANIFEST
    assert dest.holds(ITEM)
    assert client.asked == [f"containers-storage:[vfs@/g+/r]{ITEM.image}"] * 2


def test_a_units_own_registry_options_override_the_command_lines_for_its_source() -> None:
    client = Recording()
    item = Wanted(ITEM.name, ITEM.digest, "unit", "a.image", 2, options=UNIT_OPTIONS)
    destination("containers-storage:", copier(client)).put(item, [], "/run/x")
    assert client.copies[0][2]["src_options"] == RegistryOptions(cert_dir="/certs", tls_verify=False)


def test_a_transient_copy_failure_is_retried_and_a_lasting_one_says_how_often() -> None:
    client = Recording()
    client.copy_failures = [SkopeoError("connection reset", transient=True)]
    slept: list[float] = []
    copier(client, retry=1, slept=slept).copy(ITEM, "docker://a", "oci:/l:x", multi_arch="all")
    assert (len(client.copies), slept) == (2, [0.5])

    client.copy_failures = [SkopeoError("connection reset", transient=True)] * 3
    with pytest.raises(ExternalError) as failed:
        copier(client, retry=2).copy(ITEM, "docker://a", "oci:/l:x", multi_arch="all")
    assert str(failed.value) == "connection reset (after 3 attempts)"


def test_the_mirror_holds_an_image_only_under_the_same_digest() -> None:
    client = Recording()
    dest = destination("docker://mirror.example:5000/m/", copier(client))
    assert isinstance(dest, MirrorDestination)
    assert dest.holds(ITEM)
    assert client.asked == [f"mirror.example:5000/m/org/app@{DIGEST}"]
    client.answer = lambda ref: b"{}"  # another manifest under that name
    assert not dest.holds(ITEM)

    def missing(ref: str) -> bytes:
        raise SkopeoError("manifest unknown")

    client.answer = missing
    assert not dest.holds(ITEM)
    dest.put(ITEM, [], "/run/x")
    assert client.copies[-1][:2] == (
        f"docker://{ITEM.image}",
        f"docker://mirror.example:5000/m/org/app@{DIGEST}",
    )
    assert client.copies[-1][2]["multi_arch"] == "all"


def test_a_flattened_embedded_image_is_copied_from_the_store_others_from_their_registry(
    tmp_path: Path,
) -> None:
    store = Store(Root(str(tmp_path)))
    item = Wanted(ITEM.name, ITEM.digest, "embedded", None, None, store)
    flattened = json.dumps({"annotations": {FLATTENED_FROM: f"quay.io/org/app@{D1}"}}).encode()
    client = Recording(local=flattened)
    source, multi_arch = copier(client).source_of(item, "/run/x")
    assert (source, multi_arch) == (store.reference("/run/x", item.image), "system")
    client.local = MANIFEST
    assert copier(client).source_of(item, "/run/x") == (f"docker://{item.image}", "all")


def test_an_oci_layout_with_platforms_copies_the_chosen_images_then_the_index_alone(tmp_path: Path) -> None:
    amd64, arm64 = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    index = json.dumps(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": amd64, "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": arm64, "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }
    ).encode()
    item = Wanted(ITEM.name, "sha256:" + hashlib.sha256(index).hexdigest(), "lock", None, None)
    client = Recording(answer=lambda ref: index)
    dest = destination(f"oci:{tmp_path}/layout", copier(client))
    assert isinstance(dest, LayoutDestination)
    with pytest.raises(ExternalError, match="skopeo left no image in the staging layout"):
        dest.put(item, [Platform.parse("linux/arm64")], "/run/x")  # the fake wrote nothing
    assert [(src, options["multi_arch"]) for src, _, options in client.copies] == [
        (f"docker://{ITEM.name}@{arm64}", "system"),
        (f"docker://{item.image}", "index-only"),
    ]
    assert client.asked == [item.image]
    assert list(tmp_path.iterdir()) == []  # the staging layout is gone


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_plan_counts_each_blob_once_less_what_the_layout_holds(tmp_path: Path) -> None:
    shared = {"digest": "sha256:" + "5" * 64, "size": 1000}

    def image(config: str, own: int) -> bytes:
        layers = [shared, {"digest": "sha256:" + str(own) * 64, "size": own * 100}]
        config_blob = {"digest": "sha256:" + config * 64, "size": 10}
        return json.dumps({"config": config_blob, "layers": layers}).encode()

    amd64, arm64 = image("a", 1), image("b", 2)
    index = json.dumps(
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": _sha(amd64), "platform": {"os": "linux", "architecture": "amd64"}},
                {"digest": _sha(arm64), "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        }
    ).encode()
    by_digest = {_sha(raw): raw for raw in (index, amd64, arm64)}
    item = Wanted(ITEM.name, _sha(index), "lock", None, None)
    client = Recording(answer=lambda ref: by_digest[ref.split("@")[1]])
    held = tmp_path / "layout" / "blobs" / "sha256" / ("5" * 64)  # the shared layer
    held.parent.mkdir(parents=True)
    held.write_bytes(b"x")
    dest = destination(f"oci:{tmp_path}/layout", copier(client))
    manifests = len(index) + len(amd64) + len(arm64)
    # index, 2 manifests, 2 configs, 3 layers; the shared layer is there
    assert dest.plan(item, [], "/run/x") == Plan(manifests + 2 * 10 + 100 + 200, 7, 8)
    arm = [Platform.parse("linux/arm64")]
    assert dest.plan(item, arm, "/run/x") == Plan(len(index) + len(arm64) + 10 + 200, 4, 5)
    store = destination("containers-storage:", copier(client))
    assert store.plan(item, arm, "/run/x") == Plan(10 + 1000 + 200, 3, 3)  # no manifest blobs there
    missing = [Platform.parse("linux/s390x")]  # not in the index: the copy says so, not the plan
    assert store.plan(item, missing, "/run/x") == Plan(0, 0, 0)
