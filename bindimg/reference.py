"""Image references: the containers/image grammar, "fully qualified", and the canonical pin.

bindimg has to agree with podman (which runs the image), skopeo (which resolves digests) and
bootc (which garbage-collects by exact name), so this module reproduces containers/image
``docker/reference`` rather than inventing a looser grammar. It is pure: no I/O.

Semantics, and where they deliberately follow or depart from upstream:

* The grammar is c/image ``ReferenceRegexp`` matched with ``re.fullmatch`` (Python's ``$``
  also matches before a trailing newline), with ASCII classes instead of ``\\w`` (Python's is
  Unicode, RE2's is not) and the separator ``-+`` instead of ``[-]*``: same language, but the
  literal Go form backtracks exponentially in Python.
* ``domain`` follows ``splitDockerDomain``: the first ``/`` component when it contains ``.`` or
  ``:`` or is ``localhost`` (and is a valid host, as c/image also requires), else ``""``: a
  short name, whose registry depends on the host's ``registries.conf``. Short names parse;
  callers decide what to do with them. With a ``docker://`` prefix there is no short-name
  resolution (libimage normalises ``docker://fedora`` straight to ``docker.io/library/fedora``),
  so such a reference gets ``docker.io``.
* The 255-character name limit applies to the *normalised* name (``docker.io/library/...``),
  as ``ParseNormalizedNamed`` does. A short name has no known registry, so its limit applies
  to the name as written (c/image ``Parse``).
* Upper case is allowed in the domain and the tag only; the error says "must be lowercase".
* Digests are checked as go-digest does: sha256, sha384 or sha512, lower-case hex, exact length.
* ``name:tag@digest`` parses with both ``tag`` and ``digest`` set. podman ignores the tag and
  pulls the digest; with ``docker://`` the same string is an error in podman and skopeo.
  Callers flag both cases (finding ``tag-and-digest``); the canonical pin drops the tag.
* IPv6 literal hosts (``[::1]:5000/x``) are invalid: c/image, unlike distribution/reference,
  has no IPv6 support.
* A bare 64-hex string is rejected: podman reads it as an image ID, never as a repository.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "NAME_TOTAL_LENGTH_MAX",
    "REFERENCE_LENGTH_MAX",
    "SHA256_DIGEST_RE",
    "Reference",
    "ReferenceError",
    "ValueKind",
    "classify",
    "parse",
]

SHA256_DIGEST_RE: re.Pattern[str] = re.compile(r"sha256:[0-9a-f]{64}")
"""The only digest form bindimg writes (use ``fullmatch``)."""

NAME_TOTAL_LENGTH_MAX = 255
"""c/image ``NameTotalLengthMax``: domain and path together, without tag or digest."""

REFERENCE_LENGTH_MAX = 1024
"""Longer input is rejected before any regex runs. The longest valid reference is about 530
characters: ``docker://`` + 255 name + ``:`` + 128 tag + ``@sha512:`` + 128 hex."""

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DOCKER_TRANSPORT_PREFIX = "docker://"

KIND_INVALID = "invalid-reference"
KIND_SHORT_NAME = "short-name"

# c/image regexp.go, translated (see the module docstring for the three deliberate changes).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_NAME_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_PATH = rf"{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"((?:{_DOMAIN}/)?{_PATH})(?::({_TAG}))?(?:@({_DIGEST}))?")
_DOMAIN_RE = re.compile(_DOMAIN)
_PATH_RE = re.compile(_PATH)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_QUADLET_IMAGE_ID_RE = re.compile(r"[0-9a-fA-F]{64}")
_DIGEST_ALGORITHM_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*")
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")

# go-digest algorithms that c/image links in, and their hex lengths.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

# c/image alltransports, minus "docker" (a registry reference, like no prefix at all).
_OTHER_TRANSPORTS = frozenset(
    {
        "containers-storage",
        "dir",
        "docker-archive",
        "docker-daemon",
        "oci",
        "oci-archive",
        "ostree",
        "sif",
        "tarball",
    }
)


class ReferenceError(ValueError):
    """An unusable reference; ``str(e)`` is a short reason and ``kind`` the lint finding id.

    Note: this shadows Python's builtin ``ReferenceError`` (weak references) inside modules
    that import it, which is what they want; catch it by this name only after importing it.
    """

    kind: str

    def __init__(self, message: str, kind: str = KIND_INVALID) -> None:
        super().__init__(message)
        self.kind = kind


class ValueKind(enum.Enum):
    """What an ``Image=`` value is, before any grammar check: only REGISTRY values are pinned."""

    EMPTY = "empty"
    UNIT_REFERENCE = "unit-reference"
    SPECIFIER = "specifier"
    IMAGE_ID = "image-id"
    TRANSPORT = "transport"
    REGISTRY = "registry"


def classify(value: str) -> ValueKind:
    """Sort an ``Image=`` value the way Quadlet and podman will treat it at runtime.

    Order matters: systemd expands specifiers before anything else sees the value, and Quadlet's
    ``.image``/``.build`` test is a bare suffix check, so ``quay.io/x/my.image`` is a unit
    reference to Quadlet however much it looks like an image. Image IDs follow Quadlet's
    ``isImageID`` (any ``sha256:`` prefix, or exactly 64 hex digits).
    """
    if not value:
        return ValueKind.EMPTY
    if "%" in value or "$" in value:
        return ValueKind.SPECIFIER
    if value.endswith((".image", ".build")):
        return ValueKind.UNIT_REFERENCE
    if value.startswith("sha256:") or _QUADLET_IMAGE_ID_RE.fullmatch(value):
        return ValueKind.IMAGE_ID
    prefix, colon, _ = value.partition(":")
    if colon and prefix in _OTHER_TRANSPORTS:
        return ValueKind.TRANSPORT
    return ValueKind.REGISTRY


@dataclass(frozen=True)
class Reference:
    """A parsed registry reference; build it with :func:`parse`."""

    source: str
    domain: str
    path: str
    tag: Optional[str]
    digest: Optional[str]
    transport: bool

    @property
    def fully_qualified(self) -> bool:
        """True when the registry is explicit, so the host's registries.conf cannot change it."""
        return self.domain != ""

    @property
    def canonical_name(self) -> str:
        """``domain/path`` as podman stores it; bootc's GC compares this string exactly."""
        if not self.domain:
            raise ReferenceError(_short_name_reason(self.path), KIND_SHORT_NAME)
        return _canonical_name(self.domain, self.path)

    @property
    def tag_reference(self) -> str:
        """``name:tag`` with the implicit ``latest``: the lock key and the skopeo lookup."""
        return f"{self.canonical_name}:{self.tag or 'latest'}"

    @property
    def is_canonical_pin(self) -> bool:
        """True when the source is already exactly what :meth:`pinned` would write."""
        if not self.domain or self.transport or self.tag is not None or self.digest is None:
            return False
        if SHA256_DIGEST_RE.fullmatch(self.digest) is None:
            return False
        return self.source == f"{self.canonical_name}@{self.digest}"

    def pinned(self, digest: str) -> str:
        """The canonical pinned form (SPEC invariant 2): no tag, no transport, sha256 only."""
        if SHA256_DIGEST_RE.fullmatch(digest) is None:
            raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
        return f"{self.canonical_name}@{digest}"


def parse(value: str) -> Reference:
    """Parse a registry reference, optionally ``docker://``-prefixed; raise ReferenceError.

    Classify first: this accepts only what :func:`classify` calls REGISTRY (``oci:foo`` would
    parse here as the short name ``oci`` with tag ``foo``).
    """
    if len(value) > REFERENCE_LENGTH_MAX:
        # Checked first so that no regex ever sees megabytes of adversarial input.
        raise ReferenceError(f"reference is too long ({len(value)} characters)")
    transport = value.startswith(DOCKER_TRANSPORT_PREFIX)
    text = value[len(DOCKER_TRANSPORT_PREFIX) :] if transport else value
    if not text:
        raise ReferenceError("repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise ReferenceError("cannot specify 64-byte hexadecimal strings (that is an image ID)")

    match = _REFERENCE_RE.fullmatch(text)
    if match is None:
        raise _mismatch_error(_REFERENCE_RE, text)
    name, tag, digest = match.group(1, 2, 3)

    domain, path = _split_domain(name, transport)
    if _PATH_RE.fullmatch(path) is None:
        # e.g. "Foo/bar": the regex took "Foo" as a host, splitDockerDomain does not.
        raise _mismatch_error(_PATH_RE, path)
    normalised = _canonical_name(domain, path) if domain else path
    if len(normalised) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest is not None:
        _check_digest(digest)
    return Reference(
        source=value, domain=domain, path=path, tag=tag, digest=digest, transport=transport
    )


def _looks_like_domain(component: str) -> bool:
    """splitDockerDomain's test (and Quadlet's isUnambiguousName's)."""
    return "." in component or ":" in component or component == "localhost"


def _split_domain(name: str, transport: bool) -> tuple[str, str]:
    """Split ``name`` into (domain, path); ``""`` means a short name."""
    first, slash, rest = name.partition("/")
    if slash and _looks_like_domain(first):
        if _DOMAIN_RE.fullmatch(first):
            return first, rest
        # "foo_bar.com/x": not a valid host, so c/image reads the whole name as a path.
        return "", name
    if transport:
        return DEFAULT_DOMAIN, name
    return "", name


def _canonical_name(domain: str, path: str) -> str:
    """normalize.go: fold index.docker.io into docker.io and add ``library/`` there."""
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    return f"{domain}/{path}"


def _short_name_reason(path: str) -> str:
    first, slash, _ = path.partition("/")
    if slash and _looks_like_domain(first):
        return f"{first!r} is not a valid registry host name, so this is a short name"
    return "not a fully qualified image name: it has no registry domain"


def _mismatch_error(pattern: re.Pattern[str], text: str) -> ReferenceError:
    """c/image's order: if the lower-cased text would match, the problem is upper case.

    Lower-casing is ASCII-only (``isascii`` first), so a non-ASCII character is reported as a
    format error rather than a case error.
    """
    if text.isascii() and pattern.fullmatch(text.lower()) is not None:
        return ReferenceError("repository name must be lowercase")
    return ReferenceError("invalid reference format")


def _check_digest(digest: str) -> None:
    """go-digest ``Parse``, reached only after the reference regex matched the digest."""
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        if _DIGEST_ALGORITHM_RE.fullmatch(algorithm) is None:
            raise ReferenceError("invalid checksum digest format")
        raise ReferenceError("unsupported digest algorithm")
    if len(encoded) != length:
        raise ReferenceError("invalid checksum digest length")
    if _LOWER_HEX_RE.fullmatch(encoded) is None:
        raise ReferenceError("invalid checksum digest format")
