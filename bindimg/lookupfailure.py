"""What a failed registry request means, and what to tell the user about it.

Only a registry that answers "no such manifest" (for a tag, a digest or a repository) says
anything about the image: `lint --remote` reports `digest-gone` for that answer alone. Any
other failure (TLS, refused credentials, connection, time-out) says nothing about the image
and is an ExternalError (exit 3), with a hint for the usual causes.
"""

from __future__ import annotations

import re

# What registries (distribution, quay, ghcr) answer for a tag or digest they do not have.
# Whole words only: a port (127.0.0.1:34045) or a digest may hold the digits 404.
MANIFEST_UNKNOWN = re.compile(r"manifest unknown|\bnot found\b|\b404\b", re.IGNORECASE)
# Refused credentials (some registries answer so for a repository they do not have, too).
AUTH_REFUSED = re.compile(r"unauthorized|authentication required|denied", re.IGNORECASE)
# A plain-HTTP registry asked over HTTPS (Go's net/http and crypto/tls wording, as skopeo
# prints it), or a certificate that is not trusted.
PLAIN_HTTP = re.compile(
    r"server gave HTTP response to HTTPS client|first record does not look like a TLS handshake",
    re.IGNORECASE,
)
UNTRUSTED_CERT = re.compile(r"x509: |tls: failed to verify certificate", re.IGNORECASE)
DEFAULT_HINT = "check the reference, the registry and its credentials"


def says_missing(message: str) -> bool:
    """Whether skopeo's one-line `message` is the registry answering it has no such manifest
    (refused credentials excepted: some registries answer 404 with `denied`)."""
    return bool(MANIFEST_UNKNOWN.search(message)) and not AUTH_REFUSED.search(message)


def hint(message: str, flag: str = "--tls-verify", default: str = DEFAULT_HINT) -> str:
    """What to check after a failure worded `message`: for a TLS mismatch, `FLAG=false`
    (the option that reaches the registry that failed), else `default`."""
    if PLAIN_HTTP.search(message):
        return f"the registry speaks plain HTTP: pass {flag}=false (or mark it insecure in registries.conf)"
    if UNTRUSTED_CERT.search(message):
        cert_dir = flag.replace("tls-verify", "cert-dir")
        return f"its TLS certificate is not trusted: pass its CA with {cert_dir} DIR, or {flag}=false"
    return default
