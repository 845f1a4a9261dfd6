"""The test harness itself works: deterministic OCI layouts, registry, skopeo, podman."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests import ociimage
from tests.registry import PushedImages, Registry, SkopeoError


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_names(blob: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        return tar.getnames()


# --- OCI layouts (no container needed) -------------------------------------------------


def test_layouts_are_byte_for_byte_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        layout = tmp_path / name
        ociimage.write_layout(layout, "app", ociimage.app_image("same"))
        ociimage.write_layout(layout, "multi", ociimage.multiarch_index("same"))

    def files(layout: Path) -> dict[Path, bytes]:
        return {p.relative_to(layout): p.read_bytes() for p in layout.rglob("*") if p.is_file()}

    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert ociimage.app_image("same").digest == ociimage.app_image("same").digest
    assert ociimage.app_image("same").digest != ociimage.app_image("other").digest


def test_layer_tar_entries_are_sorted_root_owned_and_dated_zero() -> None:
    img = ociimage.opaque_image("x")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(img.layers[1].data))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert "var/lib/bindimg-test/.wh..wh..opq" in names
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 0 for m in members)
    assert img.diff_ids[1] == sha256(gzip.decompress(img.layers[1].data))


def test_apply_layers_resolves_whiteouts_and_opaque_dirs() -> None:
    assert "etc/gone" not in ociimage.whiteout_image("m").files()
    assert ociimage.whiteout_image("m").files()["etc/kept"] == "m\n"
    files = ociimage.opaque_image("m").files()
    assert "var/lib/bindimg-test/old" not in files
    assert files["var/lib/bindimg-test/new"] == "m\n"


# --- registry + skopeo ----------------------------------------------------------------


@pytest.mark.e2e
def test_single_arch_digest_is_sha256_of_raw_manifest(registry: Registry, images: PushedImages) -> None:
    app = images.app
    raw = registry.raw_manifest(app.repo, app.tag)
    assert app.digest == sha256(raw)
    assert registry.inspect(app.repo, app.tag)["Digest"] == app.digest
    # skopeo pushed the layout's manifest bytes unchanged: the digest is known in advance
    assert app.digest == app.content.digest
    doc = json.loads(raw)
    assert doc["mediaType"] == ociimage.OCI_MANIFEST
    assert len(doc["layers"]) == 2
    assert registry.raw_manifest(app.repo, app.digest) == raw
    assert app.ref == f"{registry.host}/test/app:1.0"


@pytest.mark.e2e
def test_multiarch_index_keeps_both_platforms(registry: Registry, images: PushedImages) -> None:
    multi = images.multi
    raw = registry.raw_manifest(multi.repo, multi.tag)
    assert multi.digest == sha256(raw) == multi.content.digest
    assert registry.inspect(multi.repo, multi.tag)["Digest"] == multi.digest
    doc = json.loads(raw)
    assert doc["mediaType"] == ociimage.OCI_INDEX
    assert len(doc["manifests"]) == 2
    platforms = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in doc["manifests"])
    assert platforms == ["linux/amd64", "linux/arm64"]
    child_digests = {m["digest"] for m in doc["manifests"]}
    assert len(child_digests) == 2
    for child in child_digests:
        assert registry.digest(multi.repo, child) == child


@pytest.mark.e2e
def test_whiteout_and_opaque_markers_reach_the_registry(registry: Registry, images: PushedImages) -> None:
    manifest = json.loads(registry.raw_manifest(images.whiteout.repo, images.whiteout.tag))
    names = layer_names(registry.blob(images.whiteout.repo, manifest["layers"][1]["digest"]))
    assert "etc/.wh.gone" in names
    assert "etc/gone" in layer_names(registry.blob(images.whiteout.repo, manifest["layers"][0]["digest"]))

    manifest = json.loads(registry.raw_manifest(images.opaque.repo, images.opaque.tag))
    names = layer_names(registry.blob(images.opaque.repo, manifest["layers"][1]["digest"]))
    assert "var/lib/bindimg-test/.wh..wh..opq" in names


@pytest.mark.e2e
def test_pushing_to_a_tag_moves_it(registry: Registry, unique_repo: str) -> None:
    first = registry.push(ociimage.app_image("one"), unique_repo, "1.0")
    second = registry.move_tag(ociimage.app_image("two"), unique_repo, "1.0")
    assert first != second
    assert registry.digest(unique_repo, "1.0") == second
    assert registry.digest(unique_repo, first) == first  # the old image stays by digest
    registry.delete(unique_repo, first)
    with pytest.raises(SkopeoError):
        registry.raw_manifest(unique_repo, first)
    assert registry.tags(unique_repo) == ["1.0"]


@pytest.mark.e2e
def test_fresh_registry_is_separate_and_can_be_stopped(
    fresh_registry: Registry, registry: Registry, images: PushedImages
) -> None:
    assert fresh_registry.host != registry.host
    with pytest.raises(SkopeoError):
        fresh_registry.raw_manifest(images.app.repo, images.app.tag)  # not in this one
    pushed = fresh_registry.push_image(ociimage.app_image("fresh"), "test/fresh", "1.0")
    assert fresh_registry.digest("test/fresh", "1.0") == pushed.digest

    fresh_registry.stop()
    assert not fresh_registry.running
    with pytest.raises(SkopeoError) as failure:
        fresh_registry.raw_manifest("test/fresh", "1.0")
    assert failure.value.returncode != 0
    # the shared registry is unaffected
    assert registry.digest(images.app.repo, images.app.tag) == images.app.digest


# --- zipapp + podman ------------------------------------------------------------------


@pytest.mark.e2e
def test_zipapp_runs_in_base_image(zipapp: Path, base_image: str) -> None:
    proc = subprocess.run(
        [
            "podman", "run", "--rm", "--network=none",
            "-v", f"{zipapp.parent}:/d:ro",
            base_image, "python3", f"/d/{zipapp.name}", "--help",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Usage" in proc.stdout
