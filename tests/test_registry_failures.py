"""Every kind of registry failure a new user meets, through add, lock, lint --remote and export.

Against the real registry (tests/registry.py), a proxy that refuses the credentials, a closed
port, and the plain-HTTP registry asked without `--tls-verify=false`. Only a registry that
answers "no such manifest" says anything about the image (`digest-gone` for lint --remote);
TLS, credentials and the network are exit 3. Each error is one line that names the unit's
FILE:LINE first (the first unit, when several share the image), nothing changed on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bindimg.lookupfailure import hint, says_missing
from tests.faultproxy import RequireBasicAuth, Rule, closed_port_host, fault_proxy
from tests.kit import run_bindimg, snapshot, write
from tests.registry import PushedImages, Registry

NO_TLS = ("--no-tls-verify",)
FAST = ("--retry", "0", "--timeout", "10")
GONE = "sha256:" + "1" * 64
DEFAULT_HINT = "check the reference, the registry and its credentials"
HTTP_HINT = "the registry speaks plain HTTP: pass --tls-verify=false (or mark it insecure in registries.conf)"


@dataclass(frozen=True)
class Kind:
    """One kind of failure: the tag and the digest reference a unit names, the options that
    reach the registry, and skopeo's reason for each (what the user reads after the colon)."""

    tag: str
    digest: str
    options: tuple[str, ...]
    tag_reason: str
    digest_reason: str
    hint: str = DEFAULT_HINT
    missing: bool = False


@pytest.fixture(scope="module")
def kinds(registry: Registry, images: PushedImages) -> Iterator[dict[str, Kind]]:
    h, app = registry.host, images.app.digest
    down = closed_port_host()
    with fault_proxy(h) as proxy:
        proxy.add(Rule(RequireBasicAuth("user", "right")))
        p = proxy.host

        def unknown(repo: str, ref: str) -> str:
            return f"reading manifest {ref} in {repo}: manifest unknown: manifest unknown"

        def ping(host: str, scheme: str, what: str) -> str:
            return f'pinging container registry {host}: Get "{scheme}://{host}/v2/": {what}'

        yield {
            "unknown repository": Kind(
                f"{h}/test/nope:1.0", f"{h}/test/nope@{app}", NO_TLS,
                unknown(f"{h}/test/nope", "1.0"), unknown(f"{h}/test/nope", app), missing=True,
            ),
            "unknown tag": Kind(
                f"{h}/test/app:1.O", f"{h}/test/app@{GONE}", NO_TLS,
                unknown(f"{h}/test/app", "1.O"), unknown(f"{h}/test/app", GONE), missing=True,
            ),
            "refused credentials": Kind(
                f"{p}/test/app:1.0", f"{p}/test/app@{app}", (*NO_TLS, "--creds", "user:wrong"),
                f"reading manifest 1.0 in {p}/test/app: unauthorized",
                f"reading manifest {app} in {p}/test/app: unauthorized",
            ),
            "plain HTTP": Kind(
                f"{h}/test/app:1.0", f"{h}/test/app@{app}", (),
                ping(h, "https", "http: server gave HTTP response to HTTPS client"),
                ping(h, "https", "http: server gave HTTP response to HTTPS client"),
                HTTP_HINT,
            ),
            "connection refused": Kind(
                f"{down}/test/app:1.0", f"{down}/test/app@{app}", NO_TLS,
                ping(down, "http", f"dial tcp {down}: connect: connection refused"),
                ping(down, "http", f"dial tcp {down}: connect: connection refused"),
            ),
        }  # fmt: skip


KINDS = ("unknown repository", "unknown tag", "refused credentials", "plain HTTP", "connection refused")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def units(top: Path, image: str) -> None:
    """Two units share `image`: a failure names the first by name."""
    write(top, "q/a.container", f"[Unit]\nDescription=a\n\n[Container]\nImage={image}\n")
    write(top, "q/b.container", f"[Container]\nImage={image}\n")


def failed(top: Path, *args: str) -> tuple[int, str, str]:
    """Run bindimg; its exit code, stdout and last stderr line; nothing under `top` changed."""
    before = snapshot(top)
    done = run_bindimg(*args, cwd=top)
    assert snapshot(top) == before
    lines = done.err.splitlines()
    assert lines, done
    return done.code, done.out, lines[-1]


def resolve_line(kind: Kind, where: str) -> str:
    if kind.missing:
        return (
            f"bindimg: error: {where}: {kind.tag}: no such tag in the registry ({kind.tag_reason}); "
            "check the tag"
        )
    return f"bindimg: error: {where}: cannot resolve {kind.tag}: {kind.tag_reason}; {kind.hint}"


@pytest.mark.parametrize("command", [("add", "--root", "root"), ("lock", "--lock", "images.lock")])
@pytest.mark.parametrize("name", KINDS)
def test_add_and_lock(here: Path, kinds: dict[str, Kind], name: str, command: tuple[str, ...]) -> None:
    kind = kinds[name]
    units(here, kind.tag)
    (here / "root").mkdir()
    code, out, last = failed(here, *command, *kind.options, *FAST, "q")
    assert (code, out, last) == (3, "", resolve_line(kind, f"{here}/q/a.container:5"))


@pytest.mark.parametrize("name", KINDS)
def test_lint_remote(here: Path, kinds: dict[str, Kind], name: str) -> None:
    kind = kinds[name]
    units(here, kind.digest)
    code, out, last = failed(here, "lint", "--remote", *kind.options, *FAST, "q")
    if kind.missing:
        finding = (
            "error: digest-gone: the pinned digest no longer resolves: "
            f"{kind.digest}: no such digest in the registry ({kind.digest_reason}); check the digest"
        )
        assert (code, out) == (1, f"q/a.container:5: {finding}\nq/b.container:2: {finding}\n")
        assert last == "bindimg: 2 errors, 0 warnings"
    else:
        assert (code, out) == (3, "")
        assert last == (
            f"bindimg: error: q/a.container:5: cannot resolve {kind.digest}: "
            f"{kind.digest_reason}; {kind.hint}"
        )


@pytest.mark.parametrize("name", KINDS)
def test_export(here: Path, kinds: dict[str, Kind], name: str) -> None:
    kind = kinds[name]
    units(here, kind.digest)
    code, out, last = failed(here, "export", "--to", "oci:out", *kind.options, *FAST, "q")
    advice = f"; {kind.hint}" if kind.hint != DEFAULT_HINT else ""
    reason = f"{kind.digest}: {kind.digest_reason}{advice}"
    assert (code, out) == (3, f"failed {reason}\n")
    assert last == (
        f"bindimg: error: q/a.container:5: 1 of 1 images not exported to oci:out: {reason}; "
        "exported: none; already there: none"
    )


def test_export_to_a_plain_http_mirror_names_the_dest_option(
    here: Path, registry: Registry, images: PushedImages
) -> None:
    """The source is reached (--tls-verify=false), the mirror is asked over HTTPS."""
    units(here, images.app.by_digest)
    to = f"docker://{registry.host}/mirror"
    code, out, last = failed(here, "export", "--to", to, *NO_TLS, *FAST, "q")
    h = registry.host
    reason = (
        f"cannot reach the mirror for {h}/mirror/test/app@{images.app.digest}: "
        f"pinging container registry {h}: "
        f'Get "https://{h}/v2/": http: server gave HTTP response to HTTPS client; '
        "the registry speaks plain HTTP: pass --dest-tls-verify=false "
        "(or mark it insecure in registries.conf)"
    )
    assert (code, out) == (3, f"failed {images.app.by_digest}: {reason}\n")
    assert last == (
        f"bindimg: error: q/a.container:5: 1 of 1 images not exported to {to}: {images.app.by_digest}: "
        f"{reason}; exported: none; already there: none"
    )


# --- the classification, as a unit ------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "missing"),
    [
        ("reading manifest 1.0 in h/o/a: manifest unknown: manifest unknown", True),
        ("reading manifest 1.0 in h/o/a: not found", True),
        ("reading manifest 1.0 in h/o/a: denied: requested access to the resource is denied", False),
        ("reading manifest 1.0 in h/o/a: unauthorized: 404 repository", False),
        (
            'pinging container registry h: Get "https://h/v2/": '
            "http: server gave HTTP response to HTTPS client",
            False,
        ),
        ("pinging container registry 127.0.0.1:40404: connect: connection refused", False),
    ],
)
def test_only_no_such_manifest_says_missing(message: str, missing: bool) -> None:
    assert says_missing(message) is missing


def test_hint_names_the_option_of_the_side_that_failed() -> None:
    http = 'Get "https://h/v2/": http: server gave HTTP response to HTTPS client'
    assert hint(http) == HTTP_HINT
    assert hint(http, "--dest-tls-verify").startswith(
        "the registry speaks plain HTTP: pass --dest-tls-verify=false"
    )
    cert = (
        'Get "https://h/v2/": tls: failed to verify certificate: '
        "x509: certificate signed by unknown authority"
    )
    assert (
        hint(cert)
        == "its TLS certificate is not trusted: pass its CA with --cert-dir DIR, or --tls-verify=false"
    )
    assert hint("reading manifest 1.0 in h/o/a: unauthorized") == DEFAULT_HINT


@pytest.mark.parametrize("name", ["unknown tag", "plain HTTP"])
def test_add_embed_of_a_pinned_image(here: Path, kinds: dict[str, Kind], name: str) -> None:
    """Embedding fetches the pinned image's manifests: its failure names the unit as well."""
    kind = kinds[name]
    units(here, kind.digest)
    (here / "root").mkdir()
    code, out, last = failed(here, "add", "--embed", "--root", "root", *kind.options, *FAST, "q")
    advice = kind.hint if kind.hint != DEFAULT_HINT else "check the registry and its credentials"
    assert (code, out) == (3, "")
    assert last == (
        f"bindimg: error: {here}/q/a.container:5: cannot fetch {kind.digest}: {kind.digest_reason}; {advice}"
    )
