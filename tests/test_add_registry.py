"""`bindimg add` against a real registry (skopeo, the distribution registry in a container)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests import ociimage
from tests.kit import BOUND, QDIR, STORAGE, image_lines, run_bindimg, snapshot
from tests.registry import PushedImages, Registry


def unit(root: Path, name: str, text: str) -> Path:
    path = root / QDIR / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def add(root: Path, *args: str) -> tuple[int, str, str]:
    done = run_bindimg("add", "--root", str(root), "--no-tls-verify", *args)
    return done.code, done.out, done.err


def test_pins_single_arch_tag_to_manifest_digest(tmp_path: Path, images: PushedImages) -> None:
    app = images.app
    path = unit(
        tmp_path,
        "app.container",
        f"[Unit]\nDescription=app\n\n[Container]\nImage={app.ref}\nExec=/bin/true\n",
    )
    code, out, err = add(tmp_path, str(path))
    assert code == 0, err
    pinned = f"{app.host}/{app.repo}@{app.digest}"
    assert path.read_text() == (
        f"[Unit]\nDescription=app\n\n[Container]\n# bindimg: pinned from {app.ref}\n"
        f"Image={pinned}\n{STORAGE}\nExec=/bin/true\n"
    )
    assert image_lines(out) == [f"changed {path} {pinned}"]
    assert err == f"resolving {app.ref}\n"
    assert os.readlink(tmp_path / BOUND / "app.container") == "/usr/share/containers/systemd/app.container"

    before = snapshot(tmp_path)
    code, out, _ = add(tmp_path, "--json", str(path))
    assert code == 0
    assert json.loads(out)["images"] == [
        {
            "quadlet": str(path),
            "source": pinned,
            "image": pinned,
            "digest": app.digest,
            "type": "logical",
            "changed": False,
        }
    ]
    assert snapshot(tmp_path) == before  # bytes, link targets, modes and mtimes


def test_pins_the_index_digest_of_a_multi_arch_tag(
    tmp_path: Path, images: PushedImages, registry: Registry
) -> None:
    multi = images.multi
    index = json.loads(registry.raw_manifest(multi.repo, multi.tag))
    children = {m["digest"] for m in index["manifests"]}
    # The unit's own TLSVerify=false is what lets this look-up reach the plain-HTTP registry.
    path = unit(tmp_path, "multi.image", f"[Image]\nImage={multi.ref}\nTLSVerify=false\n")
    done = run_bindimg("add", "--root", str(tmp_path), "--json", str(path))
    assert done.code == 0, done.err
    (entry,) = json.loads(done.out)["images"]
    assert entry["digest"] == multi.digest
    assert entry["digest"] not in children
    assert path.read_text() == (
        f"[Image]\n# bindimg: pinned from {multi.ref}\nImage={multi.host}/{multi.repo}@{multi.digest}\n"
        "TLSVerify=false\n"
    )


def test_tls_verification_is_on_by_default(tmp_path: Path, images: PushedImages) -> None:
    path = unit(tmp_path, "app.image", f"[Image]\nImage={images.app.ref}\n")
    before = snapshot(tmp_path)
    done = run_bindimg("add", "--root", str(tmp_path), "--retry", "0", str(path))
    assert done.code == 3
    last = done.err.splitlines()[-1]
    assert last.startswith(f"bindimg: error: {path}:2: cannot resolve {images.app.ref}: ")
    assert last.endswith(  # the registry speaks plain HTTP: the hint names the option
        "http: server gave HTTP response to HTTPS client; the registry speaks plain HTTP: "
        "pass --tls-verify=false (or mark it insecure in registries.conf)"
    )
    assert snapshot(tmp_path) == before


def _three_units(root: Path, images: PushedImages, third: str) -> list[str]:
    return [
        str(unit(root, "a.container", f"[Container]\nImage={images.app.ref}\n")),
        str(unit(root, "b.image", f"[Image]\nImage={images.multi.ref}\n")),
        str(unit(root, "c.container", f"[Container]\nImage={third}\n")),
    ]


def test_one_unknown_tag_of_three_changes_nothing(tmp_path: Path, images: PushedImages) -> None:
    missing = f"{images.app.host}/{images.app.repo}:no-such-tag"
    paths = _three_units(tmp_path, images, missing)
    before = snapshot(tmp_path)
    code, out, err = add(tmp_path, *paths)
    assert code == 3
    assert out == ""
    last = err.splitlines()[-1]
    assert last.startswith(f"bindimg: error: {paths[2]}:2: {missing}: no such tag in the registry (")
    assert last.endswith("manifest unknown: manifest unknown); check the tag")
    assert snapshot(tmp_path) == before


def test_malformed_reference_of_three_exits_2_before_any_lookup(tmp_path: Path, images: PushedImages) -> None:
    paths = _three_units(tmp_path, images, f"{images.app.host}/Test/App:1.0")
    before = snapshot(tmp_path)
    code, out, err = add(tmp_path, *paths)
    assert (code, out) == (2, "")
    assert err == (
        f"bindimg: error: {paths[2]}:2: Image={images.app.host}/Test/App:1.0 is not a valid image "
        "reference: repository name must be lowercase\n"
    )
    assert snapshot(tmp_path) == before


def test_registry_stopped_exits_3_after_retries_and_changes_nothing(
    tmp_path: Path, images: PushedImages, fresh_registry: Registry
) -> None:
    pushed = fresh_registry.push_image(ociimage.app_image("stopped"), "test/app", "1.0")
    paths = _three_units(tmp_path, images, pushed.ref)
    fresh_registry.stop()
    before = snapshot(tmp_path)
    started = time.monotonic()
    code, out, err = add(tmp_path, "--retry", "2", *paths)
    elapsed = time.monotonic() - started
    assert (code, out) == (3, "")
    last = err.splitlines()[-1]
    assert last.startswith(f"bindimg: error: {paths[2]}:2: cannot resolve {pushed.ref}: ")
    assert "connection refused" in last and "(after 3 attempts)" in last
    assert elapsed >= 0.5 + 1.0  # the two back-offs really happened
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("template", "needle"),
    [
        ("Image={ref} # the app\n", "bootc reads"),
        ('Image="{ref}"\n', "bootc reads"),
        ("Image={head}\\\n  {tail}\n", "bootc cannot read"),
    ],
)
def test_parser_disagreements_are_refused_before_any_lookup(
    tmp_path: Path, images: PushedImages, template: str, needle: str
) -> None:
    ref = images.app.ref
    text = "[Container]\n" + template.format(ref=ref, head=ref[:10], tail=ref[10:])
    path = unit(tmp_path, "app.container", text)
    before = snapshot(tmp_path)
    code, out, err = add(tmp_path, str(path))
    assert (code, out) == (2, "")
    assert needle in err and len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_dropin_override_is_refused_before_any_lookup(tmp_path: Path, images: PushedImages) -> None:
    path = unit(tmp_path, "app.container", f"[Container]\nImage={images.app.ref}\n")
    dropin = unit(tmp_path, "container.d/50-image.conf", f"[Container]\nImage={images.multi.ref}\n")
    before = snapshot(tmp_path)
    code, _, err = add(tmp_path, str(path))
    assert code == 2
    assert err.startswith(f"bindimg: error: {dropin}:2: Image= is set by this drop-in")
    assert snapshot(tmp_path) == before


def test_same_tag_in_two_units_is_resolved_once(tmp_path: Path, images: PushedImages) -> None:
    a = unit(tmp_path, "a.container", f"[Container]\nImage={images.app.ref}\n")
    b = unit(tmp_path, "b.container", f"[Container]\nImage={images.app.ref}\n")
    code, out, err = add(tmp_path, str(a), str(b))
    assert code == 0
    assert err == f"resolving {images.app.ref}\n"
    assert len(image_lines(out)) == 2
