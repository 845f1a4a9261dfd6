"""Unit tests of the delivery-chain modules: platforms offered and missing, the lock's
`platforms`, the kube YAML reader, UKI detection (each module alone, no registry)."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bindimg import lockfile
from bindimg.composefs import find_uki
from bindimg.errors import ExternalError, InputError
from bindimg.kube import KubeYamlError, kube_images
from bindimg.platforms import Platform, missing, offered, problem
from bindimg.resolve import Request, ResolveError, Settings, digest_of, resolve_one
from bindimg.rootfs import Root
from tests.kit import FakeRegistry

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DIGEST = "sha256:" + "a" * 64


def entry(os_: str, arch: str, variant: str = "") -> dict[str, object]:
    platform = {"os": os_, "architecture": arch, **({"variant": variant} if variant else {})}
    return {"mediaType": MANIFEST, "digest": DIGEST, "size": 1, "platform": platform}


def test_offered_lists_an_index_without_attestations_sorted_once() -> None:
    top = {
        "manifests": [
            entry("linux", "arm64", "v8"),
            entry("linux", "amd64"),
            entry("unknown", "unknown"),  # a buildx attestation manifest
            entry("linux", "amd64"),
            {"digest": DIGEST},  # no platform
        ]
    }
    assert offered(top) == ("linux/amd64", "linux/arm64/v8")


def test_offered_of_a_single_manifest_comes_from_its_config() -> None:
    assert offered({"config": {}}, {"os": "linux", "architecture": "s390x"}) == ("linux/s390x",)
    assert offered({"config": {}}, {"architecture": "amd64"}) == ()  # no os: no platform


@pytest.mark.parametrize(
    ("target", "offers", "absent"),
    [
        ("linux/arm64", ("linux/amd64", "linux/arm64/v8"), False),
        ("linux/arm64/v8", ("linux/arm64",), False),  # v8 is arm64's default variant
        ("linux/arm/v7", ("linux/arm/v6",), True),
        ("linux/arm", ("linux/arm/v6",), False),  # no variant asked: any
        ("linux/amd64", (), True),
        ("windows/amd64", ("linux/amd64",), True),
    ],
)
def test_missing_follows_the_oci_variant_rules(target: str, offers: tuple[str, ...], absent: bool) -> None:
    wanted = Platform.parse(target)
    assert missing([wanted], offers) == ([wanted] if absent else [])


def test_problem_names_image_platform_and_what_to_do() -> None:
    targets = Platform.parse_all(["linux/amd64", "linux/arm64", "linux/amd64"])
    assert targets == (Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert problem("q.io/a:1", targets, ("linux/amd64", "linux/arm64"), INDEX) is None
    single = problem("q.io/a@" + DIGEST, targets, ("linux/amd64",), MANIFEST)
    assert single is not None
    assert single.startswith(f"q.io/a@{DIGEST} has no linux/arm64 image (a single-platform manifest: ")
    assert "multi-platform index" in single
    index = problem("q.io/a:1", targets[1:], ("linux/amd64", "linux/s390x"), INDEX)
    assert index is not None and "(it has linux/amd64, linux/s390x)" in index


def _registry(config: bytes) -> FakeRegistry:
    index = json.dumps({"mediaType": INDEX, "manifests": [entry("linux", "arm64", "v8")]}).encode()
    single = json.dumps({"mediaType": MANIFEST, "config": {"digest": DIGEST}}).encode()
    answers = {"q.io/o/multi:1": index, "q.io/o/single:1": single}
    # each tag's manifest is fetched again by its digest before it is trusted (resolve_one)
    answers.update({f"{ref.split(':')[0]}@{digest_of(raw)}": raw for ref, raw in list(answers.items())})
    return FakeRegistry(lambda ref: config if ref.startswith("config of ") else answers[ref])


def test_resolve_learns_platforms_from_an_index_or_one_config_look_up() -> None:
    fake = _registry(b'{"os": "linux", "architecture": "amd64"}')
    settings = Settings(retry=0)
    index = resolve_one(Request("q.io/o/multi:1", platforms=True), settings, registry=fake)
    assert (index.media_type, index.platforms) == (INDEX, ("linux/arm64/v8",))
    single = resolve_one(Request("q.io/o/single:1", platforms=True), settings, registry=fake)
    assert (single.media_type, single.platforms) == (MANIFEST, ("linux/amd64",))
    assert fake.asked == [
        "q.io/o/multi:1",
        f"q.io/o/multi@{index.digest}",
        "q.io/o/single:1",
        f"q.io/o/single@{single.digest}",
        f"config of q.io/o/single@{single.digest}",
    ]
    assert resolve_one(Request("q.io/o/single:1"), settings, registry=fake).platforms is None
    assert len(fake.asked) == 7  # not asked for: no config look-up


def test_the_config_is_read_while_the_by_digest_check_runs() -> None:
    """With `beside`, a single-platform image costs two round trips: its config is asked
    before its by-digest check has answered (the check waits for it here: one after the
    other, it would wait in vain)."""
    config_asked = threading.Event()
    plain = _registry(b'{"os": "linux", "architecture": "amd64"}')

    def answer(reference: str) -> bytes:
        if reference.startswith("config of "):
            config_asked.set()
        elif "@" in reference:
            assert config_asked.wait(10), "the by-digest check was made before the config was asked"
        return plain.answer(reference)

    with ThreadPoolExecutor(1) as beside:
        request = Request("q.io/o/single:1", platforms=True)
        single = resolve_one(request, Settings(retry=0), registry=FakeRegistry(answer), beside=beside)
    assert (single.media_type, single.platforms) == (MANIFEST, ("linux/amd64",))


def test_a_tag_not_served_by_digest_is_the_failure_told_when_its_config_fails_too() -> None:
    tag = json.dumps({"mediaType": MANIFEST, "config": {"digest": DIGEST}}).encode()
    answers = {"q.io/o/single:1": tag, f"q.io/o/single@{digest_of(tag)}": tag + b" "}
    fake = FakeRegistry(lambda ref: b"<html>" if ref.startswith("config of ") else answers[ref])
    request = Request("q.io/o/single:1", platforms=True)
    with ThreadPoolExecutor(1) as beside, pytest.raises(ResolveError) as caught:
        resolve_one(request, Settings(retry=0), registry=fake, beside=beside)
    assert caught.value.message == (
        f"cannot resolve q.io/o/single:1: the tag's manifest {digest_of(tag)} is not served by digest; "
        "check the registry or the proxy in front of it"
    )
    assert sorted(fake.asked) == sorted(
        ["q.io/o/single:1", f"q.io/o/single@{digest_of(tag)}", f"config of q.io/o/single@{digest_of(tag)}"]
    )


def test_a_config_that_is_not_json_is_a_registry_failure() -> None:
    with pytest.raises(ExternalError) as caught:
        resolve_one(Request("q.io/o/single:1", platforms=True), Settings(), registry=_registry(b"<html>"))
    assert caught.value.exit_code == 3 and "image config that is not JSON" in caught.value.message


def test_lock_keeps_platforms_and_loads_locks_without_them(tmp_path: Path) -> None:
    path = str(tmp_path / "bindimg.lock")
    entries = {
        "quay.io/o/a:1": lockfile.LockEntry(
            DIGEST, INDEX, ("q/a.container",), ("linux/amd64", "linux/arm64/v8")
        ),
        "quay.io/o/b:1": lockfile.LockEntry(DIGEST, MANIFEST, ("q/b.container",)),
    }
    Path(path).write_text(lockfile.dumps(entries), encoding="utf-8")
    text = Path(path).read_text()
    assert 'used-by = ["q/a.container"]\nplatforms = ["linux/amd64", "linux/arm64/v8"]\n' in text
    assert text.count("platforms") == 1
    assert lockfile.load(path) == entries


@pytest.mark.parametrize("value", ['"linux/amd64"', '["linux"]', "[1]"])
def test_lock_refuses_bad_platforms_naming_the_entry(tmp_path: Path, value: str) -> None:
    path = tmp_path / "bindimg.lock"
    path.write_text(f'version = 1\n\n[images."quay.io/o/a:1"]\ndigest = "{DIGEST}"\nplatforms = {value}\n')
    with pytest.raises(InputError) as caught:
        lockfile.load(str(path))
    assert caught.value.line == 3 and "platforms" in caught.value.message


KUBE = """\
apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      initContainers: &init
      - name: init
        image: quay.io/o/init:1
      containers:
      - name: web
        image: "quay.io/o/web:2"
      - name: noimage
      again: *init
---
apiVersion: v1
kind: ConfigMap
data:
  image: quay.io/o/not-a-container:1
"""


def test_kube_images_are_those_of_containers_and_init_containers_with_lines() -> None:
    assert kube_images(KUBE.encode(), "k.yaml") == [("quay.io/o/web:2", 11), ("quay.io/o/init:1", 8)]


@pytest.mark.parametrize(
    ("data", "shift"),
    [
        (b"\xef\xbb\xbf" + KUBE.encode(), 0),  # UTF-8 with a byte-order mark
        (KUBE.encode("utf-16"), 0),  # UTF-16 with its byte-order mark, as go-yaml reads it
        (b"---\n~\n---\n" + KUBE.encode() + b"---\n", 3),  # empty and null documents: podman skips them
    ],
)
def test_kube_yaml_podman_reads_is_read_alike(data: bytes, shift: int) -> None:
    assert kube_images(data, "k.yaml") == [("quay.io/o/web:2", 11 + shift), ("quay.io/o/init:1", 8 + shift)]


@pytest.mark.parametrize(
    ("data", "line", "says"),
    [
        (b"spec:\n  containers: [\n", 3, "not YAML: expected the node content"),
        (b"kind: Pod\nmetadata: {}\nkind: Pod\n", 3, 'not YAML: found duplicate key "kind"'),
        (b"kind: Pod\nspec: *nowhere\n", 2, "not YAML: found undefined alias 'nowhere'"),
        (b"# a comment\n\njust text\n", 3, "a YAML document that is a single value, not a Kubernetes object"),
        (b"kind: Pod\n---\n- kind: Pod\n", 3, "a YAML document that is a list, not a Kubernetes object"),
        (b"kind: Pod\nname: caf\xe9\n", 2, "not UTF-8 text (byte 19)"),
    ],
)
def test_kube_yaml_podman_cannot_read_names_file_line_and_why(data: bytes, line: int, says: str) -> None:
    with pytest.raises(KubeYamlError) as caught:
        kube_images(data, "k.yaml")
    assert (caught.value.path, caught.value.line, caught.value.podman_fails) == ("k.yaml", line, True)
    assert caught.value.message.startswith(says)


def test_kube_yaml_nested_too_deep_for_the_parser_is_only_bindimg_s_problem() -> None:
    with pytest.raises(KubeYamlError) as caught:
        kube_images(b"a: " + b"[" * 400 + b"]" * 400 + b"\n", "k.yaml")
    assert (caught.value.line, caught.value.podman_fails) == (None, False)
    assert caught.value.message == "nested too deep for bindimg's YAML parser"


def test_uki_is_found_as_bootc_finds_it(tmp_path: Path) -> None:
    linux = tmp_path / "boot/EFI/Linux"
    assert find_uki(Root(str(tmp_path))) is None
    linux.mkdir(parents=True)
    for name in ("x.addon.efi", ".efi", "readme.txt", "b.EFI"):
        (linux / name).write_bytes(b"")
    assert find_uki(Root(str(tmp_path))) is None
    (linux / "z.efi").write_bytes(b"")
    (linux / "fedora.efi").write_bytes(b"")
    assert find_uki(Root(str(tmp_path))) == "/boot/EFI/Linux/fedora.efi"


def test_uki_lookup_stays_inside_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "host/EFI/Linux"
    outside.mkdir(parents=True)
    (outside / "host.efi").write_bytes(b"")
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    os.symlink(str(tmp_path / "host/EFI"), root / "boot/EFI")  # absolute: means /host/EFI inside the root
    assert find_uki(Root(str(root))) is None
