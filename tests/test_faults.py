"""Registry faults, injected by a proxy in front of the real registry (tests/faultproxy.py).

What a user sees when the registry or the network misbehaves during `bindimg add` is part of
the contract: exit 3 and ONE line naming the image when the look-up fails for good (after the
retries, for a transient fault), nothing written; exit 0 and the registry's own digest when a
retry gets through. Every case runs on a root with several units (two distinct tags, a
`.container` naming a `.image`, two units sharing a tag) with `--retry 1 --timeout 2`, so each
takes at most a few seconds.

The unit tests at the end pin down the classification in bindimg/skopeo.py that decides what
is retried, including the two bugs these faults showed: a connection reset in the middle of
the response headers ("transport connection broken: malformed MIME header") was not retried,
and the image's own name took part in the decision, so a missing tag `503` or a repository
`org/eof` was retried as if the registry had had a hiccup (and `lint --remote` would have
reported a network failure instead of `digest-gone`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bindimg import resolve, skopeo
from bindimg.resolve import Request, Settings
from bindimg.skopeo import SkopeoError
from tests.faultproxy import (
    PING,
    Action,
    Close,
    Delay,
    FaultProxy,
    Reset,
    Rule,
    fault_proxy,
    server_error,
    unauthorized,
)
from tests.kit import QDIR, STORAGE, FakeRegistry, Snapshot, run_bindimg, snapshot
from tests.registry import PushedImages, Registry

FAST = ("--retry", "1", "--timeout", "2")
HINT = "; check the reference, the registry and its credentials"
RETRIED = " (after 2 attempts)" + HINT
APP_MANIFEST = r"^/v2/test/app/manifests/"


@pytest.fixture
def proxy(registry: Registry, images: PushedImages) -> Iterator[FaultProxy]:
    """The proxy in front of the session registry, once test/app and test/multi are pushed."""
    with fault_proxy(registry.host) as running:
        yield running


@dataclass
class Setup:
    """A root whose units name the images through the proxy, and how it looked before."""

    root: Path
    host: str
    units: list[str]
    before: Snapshot

    @property
    def app(self) -> str:
        return f"{self.host}/test/app:1.0"

    @property
    def multi(self) -> str:
        return f"{self.host}/test/multi:1.0"

    def add(self, *args: str) -> tuple[int, str, str]:
        done = run_bindimg("add", "--root", str(self.root), "--no-tls-verify", *FAST, *args, *self.units)
        return done.code, done.out, done.err


def _setup(tmp_path: Path, host: str, app_tag: str = "1.0") -> Setup:
    qdir = tmp_path / QDIR
    qdir.mkdir(parents=True)
    texts = {
        "a.container": f"[Unit]\nDescription=a\n\n[Container]\nImage={host}/test/app:{app_tag}\n",
        "b.image": f"[Image]\nImage={host}/test/multi:1.0\n",
        "c.container": "[Container]\nImage=b.image\nExec=/bin/true\n",
        "d.container": f"[Container]\r\nImage={host}/test/app:{app_tag}\r\n",  # same tag, CRLF
    }
    for name, text in texts.items():
        (qdir / name).write_bytes(text.encode())
    return Setup(tmp_path, host, [str(qdir / n) for n in texts], snapshot(tmp_path))


@pytest.fixture
def setup(tmp_path: Path, proxy: FaultProxy) -> Setup:
    return _setup(tmp_path, proxy.host)


def assert_failed(setup: Setup, code: int, out: str, err: str, error: str) -> None:
    """Exit 3, only progress lines and then exactly `error` (a regex) on stderr, nothing written."""
    assert (code, out) == (3, ""), err
    *progress, last = err.splitlines()
    assert sorted(progress) == [f"resolving {setup.app}", f"resolving {setup.multi}"]
    assert re.fullmatch(error, last), last
    assert err.endswith("\n") and "\n" not in last
    assert snapshot(setup.root) == setup.before


def _error(setup: Setup, ref: str, reason: str, suffix: str = RETRIED) -> str:
    """The error line as a regex: `reason` is a regex, the rest literal. It names the first
    unit of the image (a.container, whose Image= is on line 5; d.container shares it)."""
    where = f"{setup.units[0]}:5"
    return re.escape(f"bindimg: error: {where}: cannot resolve {ref}: ") + reason + re.escape(suffix)


# --- the look-up fails for good: exit 3, one line, nothing written -------------------------------


def test_manifest_answering_500_is_retried_then_reported(setup: Setup, proxy: FaultProxy) -> None:
    proxy.add(Rule(server_error(), path=APP_MANIFEST))
    code, out, err = setup.add()
    reason = (
        f"reading manifest 1.0 in {setup.host}/test/app: "
        "received unexpected HTTP status: 500 Internal Server Error"
    )
    assert_failed(setup, code, out, err, _error(setup, setup.app, re.escape(reason)))
    assert len(proxy.requests(APP_MANIFEST)) == 2  # one retry, and the two units asked once


def test_reset_in_the_middle_of_the_body_is_retried_then_reported(setup: Setup, proxy: FaultProxy) -> None:
    proxy.add(Rule(Reset(0.75), path=APP_MANIFEST))
    code, out, err = setup.add()
    host = re.escape(setup.host)
    reason = rf"read tcp 127\.0\.0\.1:\d+->{host}: read: connection reset by peer"
    assert_failed(setup, code, out, err, _error(setup, setup.app, reason))
    assert len(proxy.requests(APP_MANIFEST, "Reset")) == 2


def test_reset_in_the_middle_of_the_headers_is_retried_then_reported(setup: Setup, proxy: FaultProxy) -> None:
    """Go reports it as a malformed header; before the fix it was taken for a final answer."""
    proxy.add(Rule(Reset(0.1), path=APP_MANIFEST))
    code, out, err = setup.add()
    url = re.escape(f'Get "http://{setup.host}/v2/test/app/manifests/1.0": ')
    reason = url + r"net/http: HTTP/1\.x transport connection broken: malformed [^\n]*"
    assert_failed(setup, code, out, err, _error(setup, setup.app, reason))
    assert len(proxy.requests(APP_MANIFEST, "Reset")) == 2


def test_connection_closed_without_an_answer_is_retried_then_reported(
    setup: Setup, proxy: FaultProxy
) -> None:
    proxy.add(Rule(Close(), path=APP_MANIFEST))
    code, out, err = setup.add()
    reason = re.escape(f'Get "http://{setup.host}/v2/test/app/manifests/1.0": EOF')
    assert_failed(setup, code, out, err, _error(setup, setup.app, reason))
    assert len(proxy.requests(APP_MANIFEST, "Close")) == 2


def test_answer_slower_than_the_timeout_is_retried_then_reported(setup: Setup, proxy: FaultProxy) -> None:
    proxy.add(Rule(Delay(10), path=APP_MANIFEST))
    code, out, err = setup.add()
    assert_failed(setup, code, out, err, _error(setup, setup.app, re.escape("no answer within 2 s")))
    assert len(proxy.requests(APP_MANIFEST, "Delay")) == 2


def test_refused_connection_names_the_first_image_and_counts_the_others(
    setup: Setup, proxy: FaultProxy
) -> None:
    proxy.refuse()  # nothing listens on the proxy's port any more
    code, out, err = setup.add()
    host = setup.host
    reason = (
        f'pinging container registry {host}: Get "http://{host}/v2/": '
        f"dial tcp {host}: connect: connection refused"
    )
    assert_failed(
        setup, code, out, err, _error(setup, setup.app, re.escape(reason), RETRIED + " (and 1 more)")
    )


def test_registry_ping_answering_500_is_retried_then_reported(setup: Setup, proxy: FaultProxy) -> None:
    proxy.add(Rule(server_error(), path=PING))
    code, out, err = setup.add()
    reason = (
        f"pinging container registry {setup.host}: "
        "invalid status code from registry 500 (Internal Server Error)"
    )
    assert_failed(
        setup, code, out, err, _error(setup, setup.app, re.escape(reason), RETRIED + " (and 1 more)")
    )
    assert len(proxy.requests(PING, "Status")) == 4  # two images, two attempts each


def test_401_with_a_challenge_is_not_retried(setup: Setup, proxy: FaultProxy) -> None:
    """Credentials do not get better by asking again: one attempt, and the hint says what to check."""
    proxy.add(Rule(unauthorized()))
    code, out, err = setup.add()
    reason = re.escape(f"reading manifest 1.0 in {setup.host}/test/app: unauthorized")
    assert_failed(setup, code, out, err, _error(setup, setup.app, reason, HINT + " (and 1 more)"))
    assert len(proxy.requests(APP_MANIFEST)) == 1
    assert len(proxy.requests(r"^/v2/test/multi/manifests/")) == 1


def test_missing_tag_that_looks_like_a_status_code_is_not_retried(tmp_path: Path, proxy: FaultProxy) -> None:
    """`:503` in the reference is no 503 answer (a bug: it was retried, and lint --remote would
    have blamed the network)."""
    setup = _setup(tmp_path, proxy.host, app_tag="503")
    code, out, err = setup.add()
    assert (code, out) == (3, "")
    *progress, last = err.splitlines()
    assert sorted(progress) == [f"resolving {setup.host}/test/app:503", f"resolving {setup.multi}"]
    assert last == (
        f"bindimg: error: {setup.units[0]}:5: {setup.host}/test/app:503: no such tag in the registry "
        f"(reading manifest 503 in "
        f"{setup.host}/test/app: manifest unknown: manifest unknown); check the tag"
    )
    # not retried: bindimg's direct request, then skopeo's, which judges and words the answer
    assert len(proxy.requests(APP_MANIFEST)) == 2
    assert snapshot(setup.root) == setup.before


# --- a retry gets through: exit 0, the registry's own digest -------------------------------------


FIRST_TRY_FAULTS: dict[str, tuple[Action, str]] = {
    "500": (server_error(), APP_MANIFEST),
    "reset-in-body": (Reset(0.75), APP_MANIFEST),
    "reset-in-headers": (Reset(0.1), APP_MANIFEST),
    "closed": (Close(), APP_MANIFEST),
    "slower-than-timeout": (Delay(3), APP_MANIFEST),
    "ping-500": (server_error(), PING),
}


@pytest.mark.parametrize("fault", sorted(FIRST_TRY_FAULTS))
def test_a_transient_fault_on_the_first_try_is_retried_and_pins_the_registry_digest(
    fault: str, setup: Setup, proxy: FaultProxy, images: PushedImages
) -> None:
    action, path = FIRST_TRY_FAULTS[fault]
    proxy.add(Rule(action, path=path, times=1))
    code, out, err = setup.add("--json")
    assert code == 0, err
    assert sorted(err.splitlines()) == [f"resolving {setup.app}", f"resolving {setup.multi}"]
    app_pinned = f"{setup.host}/test/app@{images.app.digest}"
    multi_pinned = f"{setup.host}/test/multi@{images.multi.digest}"
    entries = {Path(e["quadlet"]).name: (e["image"], e["digest"]) for e in json.loads(out)["images"]}
    assert entries == {
        "a.container": (app_pinned, images.app.digest),
        "b.image": (multi_pinned, images.multi.digest),
        "d.container": (app_pinned, images.app.digest),
    }
    qdir = setup.root / QDIR
    assert (qdir / "a.container").read_text() == (
        f"[Unit]\nDescription=a\n\n[Container]\n# bindimg: pinned from {setup.app}\n"
        f"Image={app_pinned}\n{STORAGE}\n"
    )
    assert (qdir / "d.container").read_bytes() == (
        f"[Container]\r\n# bindimg: pinned from {setup.app}\r\nImage={app_pinned}\r\n{STORAGE}\r\n".encode()
    )
    # a manifest: the faulty one, skopeo's retry, the pinned digest fetched by digest (which the
    # single-platform image's config look-up then reads again from memory: one blob request);
    # the ping: the faulty one, skopeo's retry, the one the direct look-ups keep
    assert len(proxy.requests(path)) == 3
    assert len(proxy.requests(r"^/v2/test/app/blobs/sha256:")) == 1


# --- classification (no registry) ---------------------------------------------------------------


def _stderr(message: str) -> str:
    """skopeo 1.9's stderr for a fatal error, escaped as it prints it."""
    escaped = message.replace('"', '\\"')
    return f'time="2026-11-26T07:34:36Z" level=fatal msg="{escaped}"\n'


@pytest.mark.parametrize(
    ("reference", "message", "transient"),
    [
        (
            "h:5000/test/app:1.0",
            "reading manifest 1.0 in h:5000/test/app: received unexpected HTTP "
            "status: 500 Internal Server Error",
            True,
        ),
        (
            "h:5000/test/app:1.0",
            'Get "http://h:5000/v2/test/app/manifests/1.0": net/http: HTTP/1.x '
            'transport connection broken: malformed MIME header: missing colon: "Conten"',
            True,
        ),
        (
            "h:5000/test/app:1.0",
            'Get "http://h:5000/v2/test/app/manifests/1.0": net/http: HTTP/1.x '
            'transport connection broken: malformed HTTP status code "2"',
            True,
        ),
        ("h:5000/test/app:1.0", "read tcp 127.0.0.1:1->h:5000: read: connection reset by peer", True),
        (
            "docker.io/org/app:1",
            "reading manifest 1 in docker.io/org/app: toomanyrequests: You have reached your pull rate limit",
            True,
        ),
        ("h:5000/test/app:1.0", "reading manifest 1.0 in h:5000/test/app: unauthorized", False),
        (
            "h:5000/test/app:503",
            "reading manifest 503 in h:5000/test/app: manifest unknown: manifest unknown",
            False,
        ),
        (
            "h:5000/org/eof-service:1",
            "reading manifest 1 in h:5000/org/eof-service: manifest unknown: manifest unknown",
            False,
        ),
        (
            "h:5000/org/timeout:1",
            "reading manifest 1 in h:5000/org/timeout: denied: requested access to the resource is denied",
            False,
        ),
        (
            "h:5000/org/app@sha256:" + "5" * 3 + "0" * 61,
            'Get "http://h:5000/v2/org/app/manifests/sha256:' + "5" * 3 + "0" * 61 + '": manifest unknown',
            False,
        ),
        (
            "registry.example:502/org/app:1",
            "reading manifest 1 in registry.example:502/org/app: manifest unknown",
            False,
        ),
        (
            "h:5000/org/timeout:1",
            'Get "http://h:5000/v2/org/timeout/manifests/1": dial tcp: i/o timeout',
            True,
        ),
        (
            "h:5000/org/timeout:1",
            'Get "http://h:5000/v2/org/timeout/manifests/1": x509: certificate signed by unknown authority',
            False,
        ),
    ],
)
def test_transient_is_judged_on_the_fault_not_on_the_image_name(
    reference: str, message: str, transient: bool
) -> None:
    stderr = _stderr(f'Error parsing image name "docker://{reference}": {message}')
    reason = skopeo._reason(stderr)
    assert reason == message  # skopeo's misleading prefix is gone: bindimg names the image itself
    assert skopeo._transient(reason, reference) is transient


def test_an_earlier_warning_line_does_not_make_a_failure_transient() -> None:
    stderr = 'time="x" level=warning msg="retrying after timeout"\n' + _stderr(
        "reading manifest 1 in h/org/app: manifest unknown"
    )
    assert skopeo._reason(stderr) == "reading manifest 1 in h/org/app: manifest unknown"
    assert skopeo._transient(skopeo._reason(stderr), "h/org/app:1") is False


def test_resolve_retries_only_transient_failures_with_exponential_back_off() -> None:
    failures = [SkopeoError("connection reset by peer", transient=True)] * 3

    def inspect_raw(reference: str) -> bytes:
        if failures:
            raise failures.pop(0)
        return b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}'

    registry = FakeRegistry(inspect_raw)
    calls = registry.asked
    slept: list[float] = []
    request = Request("h/org/app:1")
    result = resolve.resolve_one(request, Settings(retry=3, timeout=2), slept.append, registry)
    # four attempts for the tag, then one fetch by the digest it gave
    assert (len(calls), slept) == (5, [0.5, 1.0, 2.0])
    assert calls[-1] == f"h/org/app@{result.digest}"
    assert result.media_type == "application/vnd.oci.image.manifest.v1+json"

    failures[:] = [SkopeoError("unauthorized", transient=False)]
    calls.clear()
    slept.clear()
    with pytest.raises(resolve.ResolveError) as failed:
        resolve.resolve_one(request, Settings(retry=3, timeout=2), slept.append, registry)
    assert (len(calls), slept) == (1, [])
    assert failed.value.message == f"cannot resolve h/org/app:1: unauthorized{HINT}"
    assert failed.value.transient is False


@pytest.mark.parametrize(
    ("message", "missing"),
    [
        ("reading manifest 1 in h:5000/org/app: manifest unknown", True),
        ("reading manifest 1 in h:5000/org/app: StatusCode: 404, 404 page not found", True),
        # a port or digest holding the digits 404 is no 404; credentials refused are no missing tag
        ("reading manifest 1 in 127.0.0.1:34045/org/app: unauthorized: authentication required", False),
        ("pinging container registry 127.0.0.1:40412: connection refused", False),
        ("reading manifest 1 in h/org/app: requested access to the resource is denied", False),
    ],
)
def test_only_a_registry_without_the_tag_is_called_no_such_tag(message: str, missing: bool) -> None:
    def inspect_raw(reference: str) -> bytes:
        raise SkopeoError(message, transient=False)

    with pytest.raises(resolve.ResolveError) as failed:
        resolve.resolve_one(
            Request("h/org/app:1"), Settings(retry=0, timeout=2), lambda _: None, FakeRegistry(inspect_raw)
        )
    expected = (
        f"h/org/app:1: no such tag in the registry ({message}); check the tag"
        if missing
        else f"cannot resolve h/org/app:1: {message}{HINT}"
    )
    assert failed.value.message == expected
