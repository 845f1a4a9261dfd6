"""Tests for bindimg.reference: c/image grammar vectors, Quadlet value kinds, canonical pins."""

from __future__ import annotations

import time
from typing import Optional

import pytest

from bindimg.reference import (
    NAME_TOTAL_LENGTH_MAX,
    SHA256_DIGEST_RE,
    Reference,
    ReferenceError,
    ValueKind,
    classify,
    parse,
)

HEX64 = "0123456789abcdef" * 4
D = "sha256:" + HEX64
F64 = "sha256:" + "f" * 64

INVALID = "invalid reference format"
LOWERCASE = "repository name must be lowercase"
TOO_LONG = "repository name must not be more than 255 characters"
EMPTY = "repository name must have at least one component"
DIGEST_FORMAT = "invalid checksum digest format"
DIGEST_LENGTH = "invalid checksum digest length"
DIGEST_UNSUPPORTED = "unsupported digest algorithm"
HEX_NAME = "cannot specify 64-byte hexadecimal strings (that is an image ID)"


def fields(ref: Reference) -> tuple[str, str, Optional[str], Optional[str], bool]:
    return (ref.domain, ref.path, ref.tag, ref.digest, ref.transport)


def reject(value: str) -> ReferenceError:
    with pytest.raises(ReferenceError) as info:
        parse(value)
    return info.value


# --- c/image Parse: valid ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("test_com", ("", "test_com", None, None)),
        ("test.com:tag", ("", "test.com", "tag", None)),
        ("test.com:5000", ("", "test.com", "5000", None)),
        ("test:5000/repo", ("test:5000", "repo", None, None)),
        ("test:5000/repo:tag@" + F64, ("test:5000", "repo", "tag", F64)),
        ("lowercase:Uppercase", ("", "lowercase", "Uppercase", None)),
        (
            "a/" * 127 + "a:tag-puts-this-over-max",
            ("", "a/" * 127 + "a", "tag-puts-this-over-max", None),
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            ("b.gcr.io", "test.example.com/my-app", "test.example.com", None),
        ),
        (
            "xn--7o8h.com/myimage:xn--7o8h.com@sha512:" + "f" * 128,
            ("xn--7o8h.com", "myimage", "xn--7o8h.com", "sha512:" + "f" * 128),
        ),
        ("foo_bar.com:8080", ("", "foo_bar.com", "8080", None)),
        ("foo/foo_bar.com:8080", ("", "foo/foo_bar.com", "8080", None)),
        ("localhost:8080@" + D, ("", "localhost", "8080", D)),
        ("localhost@" + D, ("", "localhost", None, D)),
        ("Asdf.com/foo/bar", ("Asdf.com", "foo/bar", None, None)),
        (
            "registry.io/foo/project--id.module--name.ver---sion--name",
            ("registry.io", "foo/project--id.module--name.ver---sion--name", None, None),
        ),
        ("do__cker/docker", ("", "do__cker/docker", None, None)),
        (
            "example.com/some_separator__underscore/myimage",
            ("example.com", "some_separator__underscore/myimage", None, None),
        ),
    ],
)
def test_parse_valid(value: str, expected: tuple[str, str, Optional[str], Optional[str]]) -> None:
    ref = parse(value)
    assert fields(ref) == (*expected, False)
    assert ref.source == value


def test_longest_short_name_is_exactly_the_limit() -> None:
    name = "a/" * 127 + "a"
    assert len(name) == NAME_TOTAL_LENGTH_MAX
    assert parse(name).path == name


# --- c/image Parse: invalid -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", EMPTY),
        (":justtag", INVALID),
        ("@" + F64, INVALID),
        ("repo@sha256:" + "f" * 34, DIGEST_LENGTH),
        ("validname@invaliddigest:" + "f" * 64, DIGEST_UNSUPPORTED),
        ("Uppercase:tag", LOWERCASE),
        ("test:5000/Uppercase/lowercase:tag", LOWERCASE),
        ("a/" * 128 + "a:tag", TOO_LONG),
        ("aa/asdf$$^/aa", INVALID),
        ("a^a", INVALID),
        ("a//a/a", INVALID),
        ("a/a/a/a/", INVALID),
        ("a-/a/a/a", INVALID),
        ("foo/-bar", INVALID),
        ("_foo/bar", INVALID),
        ("____/____", INVALID),
        ("example.com/__underscore/myimage", INVALID),
        ("example.com/..dots/myimage", INVALID),
        ("docker./docker", INVALID),
        ("do__cker:8080/docker", INVALID),
        ("foo_bar.com:8080/app", INVALID),
        ("bad_hostname.com:8080/myapp:tag", INVALID),
        ("registry.com:8080/myapp@sha256:badbadbadbad", INVALID),
        ("registry.com:8080/myapp:invalid~tag", INVALID),
        ("localhost:http/name@" + D, INVALID),
        ("registry.com:8080/myapp@2bad", INVALID),
        ("Foo/FarB", LOWERCASE),
        ("foo@sha256:" + "F" * 64, DIGEST_FORMAT),
        ("Upper@SHA256:" + "f" * 64, LOWERCASE),
        ("quay.io/x@SHA256:" + "f" * 64, DIGEST_FORMAT),
        ("quay.io/x@md5:" + "f" * 32, DIGEST_UNSUPPORTED),
        ("[::1]:5000/x", INVALID),
        ("[fe80::1]/x:1", INVALID),
    ],
)
def test_parse_invalid(value: str, message: str) -> None:
    error = reject(value)
    assert str(error) == message
    assert error.kind == "invalid-reference"
    assert isinstance(error, ValueError)


# --- Python translation traps ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "quay.io/x:v1\n",  # `$` would match before the newline
        "quay.io/x\n",
        "quay.io/x@" + D + "\n",
        "\nquay.io/x",
        " quay.io/x",
        "quay.io/x:vé",  # Python's \w is Unicode
        "quay.io/x:v\u0661",  # Arabic-Indic digit one: \d/\w in Python, not in RE2
        "quay.io/\u212aube",  # Kelvin sign lower-cases to ASCII "k"
    ],
)
def test_python_translation_traps(value: str) -> None:
    assert str(reject(value)) == INVALID


@pytest.mark.parametrize(
    ("digest", "message"),
    [
        ("sha256:" + HEX64.upper(), DIGEST_FORMAT),
        ("sha256:" + "a" * 63, DIGEST_LENGTH),
        ("sha256:" + "a" * 65, DIGEST_LENGTH),
        ("sha384:" + "a" * 64, DIGEST_LENGTH),
        ("sha512:" + "a" * 64, DIGEST_LENGTH),
        ("sha256:" + "a" * 31, INVALID),  # below the grammar's 32-hex minimum
        ("sha256+b64:" + "a" * 64, DIGEST_UNSUPPORTED),
    ],
)
def test_digest_rejections(digest: str, message: str) -> None:
    assert str(reject("quay.io/x@" + digest)) == message


@pytest.mark.parametrize(
    "digest", ["sha256:" + "a" * 64, "sha384:" + "b" * 96, "sha512:" + "c" * 128]
)
def test_digest_algorithms_accepted(digest: str) -> None:
    assert parse("quay.io/x@" + digest).digest == digest


def test_tag_length_limit() -> None:
    assert parse("quay.io/x:" + "t" * 128).tag == "t" * 128
    assert str(reject("quay.io/x:" + "t" * 129)) == INVALID
    assert str(reject("quay.io/x:.t")) == INVALID
    assert str(reject("quay.io/x:-t")) == INVALID
    assert parse("quay.io/x:_t.-T").tag == "_t.-T"


# --- ParseNormalizedNamed -> canonical --------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("docker.io/debian", "docker.io/library/debian"),
        ("index.docker.io/debian", "docker.io/library/debian"),
        ("docker.io/library/debian", "docker.io/library/debian"),
        ("index.docker.io/docker/docker", "docker.io/docker/docker"),
        ("docker.io/docker/docker", "docker.io/docker/docker"),
        ("127.0.0.1:5000/debian", "127.0.0.1:5000/debian"),
        ("127.0.0.1:5000/library/debian", "127.0.0.1:5000/library/debian"),
        ("docker.io/" + "1a3f" * 16, "docker.io/library/" + "1a3f" * 16),
        ("docker.io/library/foo/bar", "docker.io/library/foo/bar"),
        ("localhost/x", "localhost/x"),
        ("localhost:5000/x", "localhost:5000/x"),
        ("quay.io/org/app:1.2", "quay.io/org/app"),
        ("Asdf.com/foo/bar", "Asdf.com/foo/bar"),
        # docker:// never does short-name resolution: libimage goes straight to docker.io.
        ("docker://debian", "docker.io/library/debian"),
        ("docker://docker/docker", "docker.io/docker/docker"),
        ("docker://library/foo/bar", "docker.io/library/foo/bar"),
        (
            "docker://thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        ),
    ],
)
def test_canonical_name(value: str, canonical: str) -> None:
    ref = parse(value)
    assert ref.fully_qualified
    assert ref.canonical_name == canonical


def test_docker_io_tag_and_digest_both_kept() -> None:
    ref = parse("docker.io/busybox:latest@" + D)
    assert (ref.canonical_name, ref.tag, ref.digest) == ("docker.io/library/busybox", "latest", D)


@pytest.mark.parametrize(
    "value",
    [
        "debian",
        "docker/docker",
        "library/foo/bar",
        "busybox:latest@" + D,
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "fedora",
        "fedora:latest",
        "localhost",
        "localhost:5000",  # no slash: name "localhost", tag "5000"
        "quay.io",
    ],
)
def test_short_names_parse_but_have_no_canonical_name(value: str) -> None:
    ref = parse(value)
    assert ref.domain == ""
    assert not ref.fully_qualified
    assert not ref.is_canonical_pin
    with pytest.raises(ReferenceError) as info:
        _ = ref.canonical_name
    assert info.value.kind == "short-name"
    assert str(info.value) == "not a fully qualified image name: it has no registry domain"
    with pytest.raises(ReferenceError):
        _ = ref.tag_reference
    with pytest.raises(ReferenceError):
        ref.pinned(D)


def test_host_like_but_invalid_domain_is_a_short_name() -> None:
    # c/image: "_" is not allowed in a host name, so the whole name is a repository path.
    for value in ("foo_bar.com/x", "docker://foo_bar.com/x"):
        ref = parse(value)
        assert (ref.domain, ref.path) == ("", "foo_bar.com/x")
        with pytest.raises(ReferenceError) as info:
            _ = ref.canonical_name
        assert info.value.kind == "short-name"
        assert str(info.value) == (
            "'foo_bar.com' is not a valid registry host name, so this is a short name"
        )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://github.com/docker/docker", INVALID),
        ("docker/Docker", LOWERCASE),
        ("-docker", INVALID),
        ("-docker.io/docker/docker", INVALID),
        ("docker///docker", INVALID),
        ("docker.io/docker/Docker", LOWERCASE),
        (HEX64, HEX_NAME),
        ("docker://" + HEX64, HEX_NAME),
        ("docker-/docker", INVALID),
        ("dock..er/docker", INVALID),
        ("dock_.er/docker", INVALID),
        ("docker/", INVALID),
        ("a" * 256 + "/a", TOO_LONG),
        ("Uppercase/lowercase:tag", LOWERCASE),
        ("Foo/bar", LOWERCASE),  # c/image Parse takes "Foo" as a host; normalisation does not
        ("LOCALHOST/x", LOWERCASE),
        ("docker://", EMPTY),
        ("docker://Fedora", LOWERCASE),
    ],
)
def test_parse_normalized_invalid(value: str, message: str) -> None:
    assert str(reject(value)) == message


def test_name_limit_applies_to_the_normalised_name() -> None:
    assert len("quay.io/" + "a" * 247) == 255
    assert parse("quay.io/" + "a" * 247).canonical_name == "quay.io/" + "a" * 247
    assert str(reject("quay.io/" + "a" * 248)) == TOO_LONG
    # 255 as written, 263 once "library/" is added.
    assert str(reject("docker.io/" + "a" * 245)) == TOO_LONG
    assert str(reject("docker://" + "a" * 246)) == TOO_LONG
    # 261 as written, 255 once index.docker.io is folded.
    long_legacy = "index.docker.io/library/" + "a" * 237
    assert parse(long_legacy).canonical_name == "docker.io/library/" + "a" * 237
    # The limit does not count the tag or the digest.
    assert parse("quay.io/" + "a" * 247 + ":" + "t" * 128 + "@" + D).tag == "t" * 128


# --- libimage tag+digest ----------------------------------------------------------------------


def test_tag_and_digest_parse_with_both_set() -> None:
    ref = parse("fedora:latest@" + D)
    assert fields(ref) == ("", "fedora", "latest", D, False)


@pytest.mark.parametrize(
    ("value", "pin"),
    [
        ("quay.io/repo/fedora:tag@" + D, "quay.io/repo/fedora@" + D),
        ("localhost:5000/fedora:v1.2.3.4.5@" + D, "localhost:5000/fedora@" + D),
    ],
)
def test_tag_and_digest_pin_drops_the_tag(value: str, pin: str) -> None:
    ref = parse(value)
    assert ref.tag is not None
    assert ref.digest == D
    assert not ref.is_canonical_pin
    assert ref.pinned(ref.digest) == pin
    assert parse(pin).is_canonical_pin


def test_docker_transport_tag_and_digest_parses_for_the_caller_to_flag() -> None:
    # podman and skopeo refuse this; parse reports it and the caller raises the finding.
    ref = parse("docker://quay.io/fedora:latest@" + D)
    assert fields(ref) == ("quay.io", "fedora", "latest", D, True)


def test_digest_alone_is_invalid() -> None:
    assert str(reject("@" + D)) == INVALID
    assert str(reject("docker://@" + D)) == INVALID


# --- classify ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("", ValueKind.EMPTY),
        ("foo.image", ValueKind.UNIT_REFERENCE),
        ("foo.build", ValueKind.UNIT_REFERENCE),
        ("quay.io/x/my.image", ValueKind.UNIT_REFERENCE),
        ("repo:v1.build", ValueKind.UNIT_REFERENCE),
        ("sha256:" + HEX64, ValueKind.IMAGE_ID),
        (HEX64, ValueKind.IMAGE_ID),
        (HEX64.upper(), ValueKind.IMAGE_ID),  # Quadlet's isImageID accepts any hex digit
        ("sha256:abc", ValueKind.IMAGE_ID),  # Quadlet and libimage: any sha256: prefix
        ("docker://quay.io/x:1", ValueKind.REGISTRY),
        ("docker:latest", ValueKind.REGISTRY),  # libimage: image "docker", tag "latest"
        ("quay.io/x:1", ValueKind.REGISTRY),
        ("fedora", ValueKind.REGISTRY),
        ("docker.io/" + HEX64, ValueKind.REGISTRY),
        ("docker-archive:/x.tar", ValueKind.TRANSPORT),
        ("oci-archive:/x.tar", ValueKind.TRANSPORT),
        ("oci:/srv/layout:app", ValueKind.TRANSPORT),
        ("oci:latest", ValueKind.TRANSPORT),  # libimage tries transports first
        ("dir:/x", ValueKind.TRANSPORT),
        ("containers-storage:quay.io/x:1", ValueKind.TRANSPORT),
        ("docker-daemon:quay.io/x:1", ValueKind.TRANSPORT),
        ("sif:/x.sif", ValueKind.TRANSPORT),
        ("app:%i", ValueKind.SPECIFIER),
        ("${REG}/app", ValueKind.SPECIFIER),
        ("$REG/app", ValueKind.SPECIFIER),
        ("quay.io/app:100%%", ValueKind.SPECIFIER),
        ("%i.image", ValueKind.SPECIFIER),  # specifiers expand before Quadlet looks
        ("sha256:%i", ValueKind.SPECIFIER),
    ],
)
def test_classify(value: str, kind: ValueKind) -> None:
    assert classify(value) is kind


def test_docker_transport_is_a_registry_reference() -> None:
    ref = parse("docker://quay.io/x:1")
    assert fields(ref) == ("quay.io", "x", "1", None, True)
    assert ref.tag_reference == "quay.io/x:1"
    assert ref.pinned(D) == "quay.io/x@" + D


# --- canonical forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "tag_reference"),
    [
        ("index.docker.io/debian", "docker.io/library/debian:latest"),
        ("docker.io/alpine:3", "docker.io/library/alpine:3"),
        ("docker.io/library/alpine:3", "docker.io/library/alpine:3"),
        ("127.0.0.1:5000/app", "127.0.0.1:5000/app:latest"),
        ("localhost/x", "localhost/x:latest"),
        ("quay.io/x@" + D, "quay.io/x:latest"),
        ("quay.io/x:1@" + D, "quay.io/x:1"),
    ],
)
def test_tag_reference(value: str, tag_reference: str) -> None:
    assert parse(value).tag_reference == tag_reference


def test_domain_is_kept_as_written() -> None:
    ref = parse("127.0.0.1:5000/app")
    expected = ("127.0.0.1:5000", "app", "127.0.0.1:5000/app")
    assert (ref.domain, ref.path, ref.canonical_name) == expected
    ref = parse("localhost/x")
    assert (ref.domain, ref.path, ref.canonical_name) == ("localhost", "x", "localhost/x")
    ref = parse("docker.io/alpine:3")
    assert (ref.domain, ref.path) == ("docker.io", "alpine")
    ref = parse("index.docker.io/debian")
    assert (ref.domain, ref.path) == ("index.docker.io", "debian")


@pytest.mark.parametrize(
    ("value", "pin"),
    [
        ("docker.io/alpine:3", "docker.io/library/alpine@" + D),
        ("index.docker.io/library/alpine", "docker.io/library/alpine@" + D),
        ("docker://quay.io/x:1", "quay.io/x@" + D),
        ("quay.io/x@sha512:" + "f" * 128, "quay.io/x@" + D),
        ("localhost:5000/a/b/c:v2", "localhost:5000/a/b/c@" + D),
    ],
)
def test_pinned(value: str, pin: str) -> None:
    assert parse(value).pinned(D) == pin


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + HEX64.upper(),
        "sha256:" + "a" * 63,
        "sha512:" + "a" * 128,
        HEX64,
        "sha256:" + HEX64 + "\n",
        "",
    ],
)
def test_pinned_rejects_non_sha256_digest(digest: str) -> None:
    with pytest.raises(ValueError) as info:
        parse("quay.io/x:1").pinned(digest)
    assert not isinstance(info.value, ReferenceError)


@pytest.mark.parametrize(
    "value",
    [
        "quay.io/x/app@" + D,
        "docker.io/library/alpine@" + D,
        "docker.io/docker/docker@" + D,
        "localhost:5000/x@" + D,
        "localhost/x@" + D,
        "Asdf.com/foo/bar@" + D,
    ],
)
def test_is_canonical_pin_true(value: str) -> None:
    ref = parse(value)
    assert ref.is_canonical_pin
    assert ref.pinned(D) == value


@pytest.mark.parametrize(
    "value",
    [
        "docker.io/alpine@" + D,  # missing library/
        "index.docker.io/library/alpine@" + D,  # legacy domain
        "quay.io/x:1@" + D,  # tag and digest
        "docker://quay.io/x@" + D,  # transport prefix
        "quay.io/x@sha512:" + "f" * 128,  # not sha256
        "quay.io/x:1",  # no digest
        "quay.io/x",
        "alpine@" + D,  # short name: False, not an exception
    ],
)
def test_is_canonical_pin_false(value: str) -> None:
    assert not parse(value).is_canonical_pin


def test_sha256_digest_re() -> None:
    assert SHA256_DIGEST_RE.fullmatch(D)
    assert not SHA256_DIGEST_RE.fullmatch(D.upper())
    assert not SHA256_DIGEST_RE.fullmatch(D[:-1])
    assert not SHA256_DIGEST_RE.fullmatch(D + "\n")


def test_reference_error_kind_defaults_to_invalid_reference() -> None:
    error = ReferenceError("x")
    assert (str(error), error.kind) == ("x", "invalid-reference")
    assert ReferenceError("y", "short-name").kind == "short-name"


def test_reference_is_frozen_and_comparable() -> None:
    ref = parse("quay.io/x:1")
    assert ref == Reference("quay.io/x:1", "quay.io", "x", "1", None, False)
    with pytest.raises(AttributeError):
        ref.tag = "2"  # type: ignore[misc]


# --- ReDoS guard ------------------------------------------------------------------------------

ADVERSARIAL = [
    "a" * 22 + "!",
    "a" * 30 + "!",
    "a" * 1000 + "!",
    "a-" * 500 + "!",
    "a." * 500 + "!",
    "a_" * 500 + "!",
    "a__" * 300 + "!",
    "a/" * 500 + "!",
    "a:" * 500,
    "a.a-" * 250 + "!",
    "a" * 500 + ":" + "b" * 500,
    "a@sha256:" + "f" * 1000,
    "A" * 1000 + "!",
    "a" * 1024,
    # Beyond the length guard:
    "a" * 5000 + "!",
    "a-" * 5000 + "!",
    "a/" * 1000,
    "a" * 50000 + "!",
    "a-" * 20000,
    "docker://" + "a" * 1_000_000,
]


@pytest.mark.parametrize("value", ADVERSARIAL, ids=lambda v: f"{v[:12]!r}x{len(v)}")
def test_adversarial_input_is_rejected_fast(value: str) -> None:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        with pytest.raises(ReferenceError):
            parse(value)
        classify(value)
        best = min(best, time.perf_counter() - start)
    assert best < 0.05


def test_overlong_input_message_does_not_echo_the_input() -> None:
    error = reject("a" * 5000)
    assert str(error) == "reference is too long (5000 characters)"
