"""The only place that runs skopeo: argument lists, never a shell, stderr kept in errors.

Credentials given with `--creds` are written to a private temporary auth file instead of
skopeo's command line, so that they never show in `ps`, in logs or in error messages.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

from bindimg.errors import ExternalError

SKOPEO = "skopeo"

# Failures worth another try: the network or the registry had a bad moment. Anything else
# (unknown manifest, denied, bad name) will fail the same way again.
_TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|i/o timeout|timeout|timed out|"
    r"\bEOF\b|TLS handshake|no route to host|network is unreachable|server misbehaving|"
    r"temporary failure|too many requests|\b429\b|\b50[0234]\b|internal server error|"
    r"bad gateway|service unavailable|gateway timeout",
    re.IGNORECASE,
)
_FATAL_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach a registry; `creds` is a secret and is kept out of repr()."""

    authfile: Optional[str] = None
    creds: Optional[str] = field(default=None, repr=False)
    cert_dir: Optional[str] = None
    tls_verify: Optional[bool] = None

    def merged(self, override: RegistryOptions) -> RegistryOptions:
        """These options with every field that `override` sets taking its place."""
        return RegistryOptions(
            authfile=override.authfile if override.authfile is not None else self.authfile,
            creds=override.creds if override.creds is not None else self.creds,
            cert_dir=override.cert_dir if override.cert_dir is not None else self.cert_dir,
            tls_verify=override.tls_verify if override.tls_verify is not None else self.tls_verify,
        )


class SkopeoError(ExternalError):
    """skopeo failed; `stderr` is what it said, `transient` whether a retry may help."""

    def __init__(self, message: str, *, stderr: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.transient = transient


def available() -> bool:
    return shutil.which(SKOPEO) is not None


def inspect_raw(
    reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
) -> bytes:
    """The exact bytes of the top-level manifest of `docker://reference`."""
    with _auth_args(reference, options) as auth:
        argv = [SKOPEO, "inspect", "--raw", *auth, f"docker://{reference}"]
        return _run(argv, timeout=timeout, secrets=secrets + _secrets(options))


def _run(argv: list[str], *, timeout: float, secrets: tuple[str, ...]) -> bytes:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SkopeoError("skopeo is not installed; install skopeo >= 1.9") from None
    except subprocess.TimeoutExpired:
        raise SkopeoError(f"no answer within {timeout:g} s", transient=True) from None
    if done.returncode != 0:
        stderr = _redact(done.stderr.decode("utf-8", "replace"), secrets)
        raise SkopeoError(_reason(stderr), stderr=stderr, transient=bool(_TRANSIENT.search(stderr)))
    return done.stdout


def _reason(stderr: str) -> str:
    """skopeo's fatal message, on one line."""
    matches = _FATAL_MSG.findall(stderr)
    text = matches[-1].replace('\\"', '"') if matches else stderr.strip()
    return " ".join(text.split()) or "skopeo failed without a message"


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _secrets(options: RegistryOptions) -> tuple[str, ...]:
    if not options.creds:
        return ()
    _, _, password = options.creds.partition(":")
    token = base64.b64encode(options.creds.encode()).decode()
    return tuple(s for s in (options.creds, password, token) if s)


@contextmanager
def _auth_args(reference: str, options: RegistryOptions) -> Iterator[list[str]]:
    args: list[str] = []
    if options.cert_dir is not None:
        args.append(f"--cert-dir={options.cert_dir}")
    if options.tls_verify is not None:
        args.append(f"--tls-verify={'true' if options.tls_verify else 'false'}")
    if options.creds is None:
        if options.authfile is not None:
            args.append(f"--authfile={options.authfile}")
        yield args
        return
    registry = reference.split("/", 1)[0]
    auth = base64.b64encode(options.creds.encode()).decode()
    with tempfile.TemporaryDirectory(prefix="bindimg-auth-") as directory:
        path = os.path.join(directory, "auth.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"auths": {registry: {"auth": auth}}}, handle)
        yield [*args, f"--authfile={path}"]
