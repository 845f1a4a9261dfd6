"""Direct manifest look-ups (bindimg/distribution.py): where they stand in for skopeo, that
they give skopeo's bytes with one ping per registry and one request per tag, and how a failed
direct request leaves the last word to skopeo (registry.Skopeo, resolve.retrying)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bindimg.distribution import Lookups, Unsupported
from bindimg.registry import Skopeo
from bindimg.resolve import Request, Settings, digest_of, resolve_each, retrying
from bindimg.skopeo import RegistryOptions, SkopeoError
from tests.faultproxy import PING, Rule, fault_proxy, server_error
from tests.registry import Registry

ANON = RegistryOptions(tls_verify=False)


def lookups(tmp_path: Path, **env: str) -> Lookups:
    """Look-ups that see `env` (HOME in tmp_path: no auth file of this machine's user)."""
    return Lookups({"HOME": str(tmp_path), **env})


def test_anonymous_access_is_eligible(tmp_path: Path) -> None:
    assert lookups(tmp_path).eligible("quay.io", ANON)


@pytest.mark.parametrize(
    "options",
    [RegistryOptions(creds="u:p"), RegistryOptions(cert_dir="/etc/pki/x")],
)
def test_credentials_and_certificates_are_skopeos(tmp_path: Path, options: RegistryOptions) -> None:
    assert not lookups(tmp_path).eligible("quay.io", options)


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_is_skopeos(tmp_path: Path, variable: str) -> None:
    assert not lookups(tmp_path, **{variable: "http://proxy:3128"}).eligible("quay.io", ANON)


@pytest.mark.parametrize(
    ("where", "document", "eligible"),
    [
        ("authfile", {"auths": {"quay.io": {"auth": "dTpw"}}}, False),
        ("authfile", {"auths": {"quay.io/org": {"auth": "dTpw"}}}, False),
        ("authfile", {"auths": {"ghcr.io": {"auth": "dTpw"}}}, True),
        ("docker", {"credsStore": "desktop"}, False),
        ("docker", {"credHelpers": {"ghcr.io": "gh"}}, False),
        ("registry-auth-file", {"auths": {"quay.io": {"auth": "dTpw"}}}, False),
    ],
)
def test_an_auth_file_naming_the_registry_or_a_helper_is_skopeos(
    tmp_path: Path, where: str, document: dict[str, object], eligible: bool
) -> None:
    path = tmp_path / ("auth.json" if where != "docker" else ".docker/config.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(document))
    env = {"REGISTRY_AUTH_FILE": str(path)} if where == "registry-auth-file" else {}
    options = RegistryOptions(authfile=str(path)) if where == "authfile" else ANON
    assert lookups(tmp_path, **env).eligible("quay.io", options) is eligible


@pytest.mark.parametrize(
    ("conf", "eligible"),
    [
        ('unqualified-search-registries = ["quay.io"]\n[aliases]\n"app" = "quay.io/o/app"\n', True),
        ('[[registry]]\nprefix = "quay.io"\nlocation = "mirror.example/quay"\n', False),
        ("[registries.insecure]\nregistries = []\n", False),
    ],
)
def test_registries_conf_that_may_redirect_is_skopeos(tmp_path: Path, conf: str, eligible: bool) -> None:
    (tmp_path / "registries.conf").write_text(conf)
    found = lookups(tmp_path, CONTAINERS_REGISTRIES_CONF=str(tmp_path / "registries.conf"))
    assert found.eligible("quay.io", ANON) is eligible


@pytest.mark.e2e
def test_skopeos_bytes_with_one_ping_and_two_requests_per_tag(registry: Registry, unique_repo: str) -> None:
    from tests import ociimage

    tags = [f"t{i}" for i in range(12)]
    for tag in tags:
        registry.push_image(ociimage.app_image(f"{unique_repo}-{tag}"), unique_repo, tag)
    with fault_proxy(registry.host) as proxy:
        refs = [f"{proxy.host}/{unique_repo}:{tag}" for tag in tags]
        found = resolve_each([Request(ref, ANON) for ref in refs], Settings(jobs=4))
        assert len(proxy.requests(PING)) == 1
        digests = [found[Request(ref, ANON)].digest for ref in refs]  # type: ignore[union-attr]
        # each tag, then the digest it gave, fetched by digest before it is pinned
        assert sorted(s.path for s in proxy.requests(r"/manifests/")) == sorted(
            [f"/v2/{unique_repo}/manifests/{tag}" for tag in tags]
            + [f"/v2/{unique_repo}/manifests/{digest}" for digest in digests]
        )
        for ref in refs[:2]:
            raw = subprocess.run(
                ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                capture_output=True,
                check=True,
            ).stdout
            assert found[Request(ref, ANON)].digest == digest_of(raw)  # type: ignore[union-attr]
        with pytest.raises(Unsupported):  # an unknown tag: skopeo is to judge and word it
            Lookups().manifest(f"{proxy.host}/{unique_repo}:nope", ANON, 10)


# --- the fast path inside registry.Skopeo: a failure of it is never the last word ----------------


def _failure(error: SkopeoError, tries: str) -> Exception:
    return RuntimeError(f"{error.message}{tries}")


@pytest.mark.parametrize(("retry", "slept"), [(0, []), (2, [0.5])])
def test_a_provisional_failure_counts_as_an_attempt_only_when_a_retry_is_left(
    retry: int, slept: list[float]
) -> None:
    answers: list[object] = [SkopeoError("timed out", transient=True, provisional=True), b"{}"]
    waits: list[float] = []

    def call() -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, bytes)
        return answer

    assert retrying(Settings(retry=retry), call, _failure, waits.append) == b"{}"
    assert (answers, waits) == ([], slept)


def test_a_provisional_failure_again_is_final() -> None:
    """A registry that answers provisionally twice in a row (a bug) does not loop."""
    calls: list[int] = []

    def call() -> bytes:
        calls.append(1)
        raise SkopeoError("timed out", transient=True, provisional=True)

    with pytest.raises(RuntimeError, match=r"^timed out$"):
        retrying(Settings(retry=0), call, _failure, lambda _: None)
    assert len(calls) == 2


@pytest.mark.e2e
def test_with_no_retry_left_skopeo_answers_after_a_failed_direct_request(
    registry: Registry, unique_repo: str
) -> None:
    from tests import ociimage

    pushed = registry.push_image(ociimage.app_image(f"{unique_repo}-r0"), unique_repo, "t")
    with fault_proxy(registry.host) as proxy:
        proxy.add(Rule(server_error(), path=r"/manifests/t$", times=1))
        ref = f"{proxy.host}/{unique_repo}:t"
        found = resolve_each([Request(ref, ANON)], Settings(retry=0))
        assert found[Request(ref, ANON)].digest == pushed.digest  # type: ignore[union-attr]
        # the direct request's 500, then skopeo's attempt (no back-off, no retry counted)
        assert [s.outcome for s in proxy.requests(r"/manifests/t$")] == ["Status", "pass"]


@pytest.mark.e2e
@pytest.mark.parametrize("looked_up", ["c", "digest"])
def test_an_image_config_is_one_blob_request_after_the_look_up(
    registry: Registry, unique_repo: str, looked_up: str
) -> None:
    """What `lock` asks to learn a single-platform image's platform: skopeo's bytes, and no
    manifest request beyond the tag's look-up (its bytes are the manifest of their digest)
    or the look-up by digest."""
    from tests import ociimage

    pushed = registry.push_image(ociimage.app_image(f"{unique_repo}-cfg"), unique_repo, "c")
    with fault_proxy(registry.host) as proxy:
        pinned = f"{proxy.host}/{unique_repo}@{pushed.digest}"
        asked = f"{proxy.host}/{unique_repo}:c" if looked_up == "c" else pinned
        client = Skopeo()
        config_digest = json.loads(client.inspect_raw(asked, ANON, timeout=10))["config"]["digest"]
        config = client.inspect_config(pinned, ANON, timeout=10)
        assert [s.path for s in proxy.requests(r"/manifests/|/blobs/")] == [
            f"/v2/{unique_repo}/manifests/{'c' if looked_up == 'c' else pushed.digest}",
            f"/v2/{unique_repo}/blobs/{config_digest}",
        ]
        assert config == subprocess.run(
            ["skopeo", "inspect", "--config", "--raw", "--tls-verify=false", f"docker://{pinned}"],
            capture_output=True,
            check=True,
        ).stdout


@pytest.mark.e2e
def test_a_manifest_asked_by_digest_is_asked_once_per_run(registry: Registry, unique_repo: str) -> None:
    """`add --embed` reads the manifest the tag's look-up already fetched by digest (and
    checked): no third manifest request before the copy."""
    from bindimg import fetch
    from bindimg.platforms import Platform
    from tests import ociimage

    registry.push_image(ociimage.app_image(f"{unique_repo}-once"), unique_repo, "once")
    with fault_proxy(registry.host) as proxy:
        client = Skopeo()
        request = Request(f"{proxy.host}/{unique_repo}:once", ANON)
        resolved = resolve_each([request], Settings(), registry=client)[request]
        assert not isinstance(resolved, Exception)
        described = fetch.describe(
            f"{proxy.host}/{unique_repo}", resolved.digest, ANON, Platform.host(), Settings(), client
        )
        assert described.instance == resolved.digest
        assert [s.path for s in proxy.requests(r"/manifests/")] == [
            f"/v2/{unique_repo}/manifests/once",
            f"/v2/{unique_repo}/manifests/{resolved.digest}",
        ]
