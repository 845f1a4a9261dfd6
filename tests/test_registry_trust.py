"""Do not trust the registry blindly, and bad answers are exit 3 with one line, not a crash.

A registry (or a proxy in front of it) that serves, for a tag, manifest bytes whose digest it
does not have made `add` pin a digest nobody can pull, with exit 0. bindimg now fetches each
digest it is about to pin by that digest (one more request per image; bench/resolve.py says
what it costs) and refuses one the registry does not serve. A manifest nested 100,000 levels
deep crashed the JSON parser (exit 70).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faultkit import refused
from tests.faultproxy import FaultProxy, Rule, Status, fault_proxy
from tests.kit import QDIR, run_bindimg, snapshot
from tests.registry import PushedImages, Registry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TAG_PATH = r"^/v2/test/app/manifests/1\.0$"


@pytest.fixture
def proxy(registry: Registry, images: PushedImages) -> Iterator[FaultProxy]:
    with fault_proxy(registry.host) as running:
        yield running


def serve(proxy: FaultProxy, body: bytes) -> None:
    """For the tag test/app:1.0 (GET and HEAD), these bytes instead of the registry's."""
    headers = (("Content-Type", OCI_MANIFEST),)
    proxy.set_rules(Rule(Status(200, "OK", headers, body), path=TAG_PATH))


def _root(tmp_path: Path, proxy: FaultProxy) -> tuple[Path, list[str]]:
    root = tmp_path / "root"
    (root / QDIR).mkdir(parents=True)
    (root / QDIR / "app.container").write_text(f"[Container]\nImage={proxy.host}/test/app:1.0\n")
    (root / QDIR / "multi.container").write_text(f"[Container]\nImage={proxy.host}/test/multi:1.0\n")
    return root, [str(root / QDIR / "app.container"), str(root / QDIR / "multi.container")]


def _altered(registry: Registry) -> list[tuple[str, bytes]]:
    """Manifest bytes the registry has no digest for: the same JSON in other bytes, and a
    manifest naming layers of another image."""
    raw = registry.raw_manifest("test/app", "1.0")
    document = json.loads(raw)
    other = json.loads(registry.raw_manifest("test/multi", "1.0"))
    swapped = {**document, "annotations": {"org.example": "served, not stored"}}
    return [
        ("trailing-newline", raw + b"\n"),
        ("re-indented", json.dumps(document, indent=1).encode()),
        ("annotated", json.dumps(swapped).encode()),
        ("another-image", json.dumps(other).encode()),
    ]


def test_a_digest_the_registry_does_not_serve_is_never_pinned(
    tmp_path: Path, registry: Registry, proxy: FaultProxy
) -> None:
    for name, body in _altered(registry):
        serve(proxy, body)
        root, units = _root(tmp_path / name, proxy)
        before = snapshot(root)
        for args in (["add", "--root", str(root)], ["lock", "--lock", str(tmp_path / name / "bindimg.lock")]):
            run = run_bindimg(*args, "-q", "--no-tls-verify", "--retry", "0", *units)
            refused(run, 3, f"{units[0]}:2: cannot resolve {proxy.host}/test/app:1.0", "not served by digest")
            assert snapshot(root) == before, name
        assert not (tmp_path / name / "bindimg.lock").exists()


def test_a_manifest_nested_too_deep_is_exit_3(tmp_path: Path, proxy: FaultProxy) -> None:
    depth = 100_000
    serve(proxy, b'{"schemaVersion":2,"x":' + b"[" * depth + b"]" * depth + b"}")
    root, units = _root(tmp_path, proxy)
    before = snapshot(root)
    run = run_bindimg("add", "-q", "--no-tls-verify", "--retry", "0", "--root", str(root), *units)
    named = f"{units[0]}:2: {proxy.host}/test/app:1.0"
    refused(run, 3, named, "the registry returned a manifest that is not JSON")
    assert snapshot(root) == before
