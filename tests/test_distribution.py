"""Direct manifest look-ups (bindimg/distribution.py): where they stand in for skopeo, and
that they give skopeo's bytes with one ping per registry and one request per tag."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bindimg.distribution import Lookups, Unsupported
from bindimg.resolve import Request, Settings, digest_of, resolve_each
from bindimg.skopeo import RegistryOptions
from tests.faultproxy import PING, fault_proxy
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
