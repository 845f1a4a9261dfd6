"""The only place that runs skopeo: argument lists, never a shell, stderr kept in errors.

Credentials given with `--creds` are written to a private temporary auth file instead of
skopeo's command line, so that they never show in `ps`, in logs or in error messages.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Optional

from bindimg.errors import ExternalError

SKOPEO = "skopeo"

# Failures worth another try: the network or the registry had a bad moment. Anything else
# (unknown manifest, denied, bad name) will fail the same way again.
# "transport connection broken" is Go's net/http wrapping a connection that died while the
# answer was read (e.g. a reset in the middle of the headers: "malformed MIME header").
_TRANSIENT = re.compile(
    r"connection refused|connection reset|broken pipe|i/o timeout|timeout|timed out|"
    r"\bEOF\b|TLS handshake|no route to host|network is unreachable|server misbehaving|"
    r"temporary failure|too many requests|toomanyrequests|\b429\b|\b50[0234]\b|"
    r"internal server error|bad gateway|service unavailable|gateway timeout|"
    r"transport connection broken|server closed idle connection",
    re.IGNORECASE,
)
_FATAL_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')
# skopeo 1.9 puts this before any failure to open the image, a network one included; bindimg's
# own message already names the image, and "parsing" would send the user to the wrong place.
_NOISE_PREFIX = re.compile(r'^(?:Error parsing image name "[^"]*": |(?:Error: )?initializing source \S+: )')


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


def inspect_raw(
    reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
) -> bytes:
    """The exact bytes of the top-level manifest of `docker://reference`."""
    with _auth_args(reference, options) as auth:
        argv = [SKOPEO, "inspect", "--raw", *auth, f"docker://{reference}"]
        return _run(argv, timeout=timeout, secrets=secrets + _secrets(options), reference=reference)


def inspect_config(reference: str, options: RegistryOptions, *, timeout: float) -> bytes:
    """The image config of `docker://reference` (a single-platform `name@digest`): its
    os/architecture/variant say which platform the image is for."""
    with _auth_args(reference, options) as auth:
        argv = [SKOPEO, "inspect", "--config", "--raw", *auth, f"docker://{reference}"]
        return _run(argv, timeout=timeout, secrets=_secrets(options), reference=reference)


def copy_from_registry(
    reference: str,
    dest: str,
    options: RegistryOptions,
    *,
    platform: Sequence[str] = (),
    timeout: Optional[float] = None,
    watch: Optional[Callable[[int], None]] = None,
) -> None:
    """`skopeo copy --preserve-digests docker://reference DEST`: one image (never `--all`;
    `platform` = (os, arch[, variant]) picks it from an index), blobs verified by digest.

    `watch(pid)` is called about every 0.2 s while skopeo runs (to show its progress).
    """
    with _auth_args(reference, options, prefix="--src-") as auth:
        argv = [SKOPEO, *_platform_args(platform), "copy", "--quiet", "--preserve-digests", *auth]
        argv += [f"docker://{reference}", dest]
        _run(argv, timeout=timeout, secrets=_secrets(options), reference=reference, watch=watch)


def copy_local(
    source: str,
    dest: str,
    *,
    platform: Sequence[str] = (),
    decompress: bool = False,
    preserve_digests: bool = False,
    timeout: Optional[float] = None,
) -> None:
    """`skopeo copy` between local transports (`dir:`, `oci:`, `containers-storage:`).

    `platform` is (os, arch[, variant]): which image of a list to take. `preserve_digests`
    makes skopeo fail rather than store a manifest whose digest differs from the source's.
    """
    argv = [SKOPEO, *_platform_args(platform), "copy", "--quiet"]
    if decompress:
        argv.append("--dest-decompress")
    if preserve_digests:
        argv.append("--preserve-digests")
    _run([*argv, source, dest], timeout=timeout, secrets=())


def copy_image(
    source: str,
    dest: str,
    *,
    src_options: RegistryOptions = RegistryOptions(),
    dest_options: RegistryOptions = RegistryOptions(),
    reference: str = "",
    multi_arch: str = "system",
    platform: Sequence[str] = (),
    timeout: Optional[float] = None,
) -> None:
    """`skopeo copy --preserve-digests SOURCE DEST`, any transports, registry options per side.

    `multi_arch` is skopeo's `--multi-arch`: `system` (one image of a list, chosen by
    `platform` or the host), `all` (the list and every image) or `index-only`. A manifest is
    never converted: skopeo fails instead, so the destination holds the digests pinned.
    `reference` (the image's own name) keeps a tag or repository such as `503` from being
    taken for a transient failure.
    """
    with ExitStack() as stack:
        auth: list[str] = []
        for side, options, ref in (("--src-", src_options, source), ("--dest-", dest_options, dest)):
            if ref.startswith("docker://"):
                auth += stack.enter_context(_auth_args(ref[len("docker://") :], options, prefix=side))
        argv = [SKOPEO, *_platform_args(platform), "copy", "--quiet", "--preserve-digests"]
        argv += [f"--multi-arch={multi_arch}", *auth, source, dest]
        secrets = _secrets(src_options) + _secrets(dest_options)
        _run(argv, timeout=timeout, secrets=secrets, reference=reference)


def inspect_local_raw(transport_ref: str, *, timeout: Optional[float] = None) -> bytes:
    """The top-level manifest bytes of a local image, e.g. `containers-storage:[…]NAME@DIGEST`;
    a SkopeoError when it is not there."""
    return _run([SKOPEO, "inspect", "--raw", transport_ref], timeout=timeout, secrets=())


def delete_local(reference: str, *, timeout: Optional[float] = None) -> None:
    """`skopeo delete` of a local image, e.g. `containers-storage:[…]name@digest` (its unused
    layers go with it)."""
    _run([SKOPEO, "delete", reference], timeout=timeout, secrets=())


def _platform_args(platform: Sequence[str]) -> list[str]:
    names = ("--override-os", "--override-arch", "--override-variant")
    return [f"{flag}={value}" for flag, value in zip(names, platform) if value]


def _run(
    argv: list[str],
    *,
    timeout: Optional[float],
    secrets: tuple[str, ...],
    reference: str = "",
    watch: Optional[Callable[[int], None]] = None,
) -> bytes:
    try:
        if watch is None:
            done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
            returncode, stdout, stderr_bytes = done.returncode, done.stdout, done.stderr
        else:
            returncode, stdout, stderr_bytes = _watched(argv, timeout, watch)
    except FileNotFoundError:
        raise SkopeoError("skopeo is not installed; install skopeo >= 1.9") from None
    except OSError as error:
        raise SkopeoError(f"cannot run skopeo: {error.strerror}; check the skopeo on PATH") from None
    except subprocess.TimeoutExpired:
        raise SkopeoError(f"no answer within {timeout or 0:g} s", transient=True) from None
    if returncode != 0:
        stderr = _redact(stderr_bytes.decode("utf-8", "replace"), secrets)
        reason = _reason(stderr)
        raise SkopeoError(reason, stderr=stderr, transient=_transient(reason, reference))
    return stdout


def _watched(
    argv: list[str], timeout: Optional[float], watch: Callable[[int], None]
) -> tuple[int, bytes, bytes]:
    """subprocess.run, calling `watch(pid)` every 0.2 s while the process runs."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=0.2)
                return process.returncode, stdout, stderr
            except subprocess.TimeoutExpired:
                if deadline is not None and time.monotonic() > deadline:
                    process.kill()
                    process.communicate()
                    raise
                watch(process.pid)


def _reason(stderr: str) -> str:
    """skopeo's fatal message, on one line."""
    matches = _FATAL_MSG.findall(stderr)
    text = matches[-1].replace('\\"', '"') if matches else stderr.strip()
    text = _NOISE_PREFIX.sub("", " ".join(text.split()))
    return text or "skopeo failed without a message"


def _transient(reason: str, reference: str) -> bool:
    """Whether the failure is the network's or the registry's, judged on skopeo's fatal message
    with the image's own name masked: otherwise a missing tag `503` or a repository `org/eof`
    would look like a hiccup, be retried, and `lint --remote` would not call the digest gone.
    (Earlier warning lines are left out for the same reason.)"""
    if reference:
        name, tag = reference, ""
        if "@" in reference:
            name, _, tag = reference.partition("@")
        elif ":" in reference.rpartition("/")[2]:
            name, _, tag = reference.rpartition(":")
        host, _, path = name.partition("/")
        for part in (f"docker://{reference}", reference, name, host, f"/v2/{path}/"):
            reason = reason.replace(part, "/…/" if part.startswith("/") else "…")
        if tag:
            reason = re.sub(rf"(manifest |manifests/){re.escape(tag)}(?![\w.-])", r"\1…", reason)
    return bool(_TRANSIENT.search(reason))


# An Authorization header value that a registry or an auth proxy repeats in its error message.
# With an auth file bindimg never reads the token, so it cannot be among the known secrets.
# (A token has a digit, `+/=` or a lower-upper case change: "Basic authentication" stays.)
_AUTH_VALUE = re.compile(r"\b((?i:basic|bearer))(\s+)(?=[\w+/=.~-]*(?:[0-9+/=]|[a-z][A-Z]))[\w+/=.~-]{8,}")


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _AUTH_VALUE.sub(r"\1\2***", text)


def _secrets(options: RegistryOptions) -> tuple[str, ...]:
    if not options.creds:
        return ()
    _, _, password = options.creds.partition(":")
    token = base64.b64encode(options.creds.encode()).decode()
    return tuple(s for s in (options.creds, password, token) if s)


@contextmanager
def _auth_args(reference: str, options: RegistryOptions, prefix: str = "--") -> Iterator[list[str]]:
    """Flags for `options`; `prefix` is `--src-` for the source of `skopeo copy`."""
    args: list[str] = []
    if options.cert_dir is not None:
        args.append(f"{prefix}cert-dir={options.cert_dir}")
    if options.tls_verify is not None:
        args.append(f"{prefix}tls-verify={'true' if options.tls_verify else 'false'}")
    if options.creds is None:
        if options.authfile is not None:
            args.append(f"{prefix}authfile={options.authfile}")
        yield args
        return
    registry = reference.split("/", 1)[0]
    auth = base64.b64encode(options.creds.encode()).decode()
    with tempfile.TemporaryDirectory(prefix="bindimg-auth-") as directory:
        path = os.path.join(directory, "auth.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"auths": {registry: {"auth": auth}}}, handle)
        yield [*args, f"{prefix}authfile={path}"]
