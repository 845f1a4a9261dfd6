"""The only place that runs skopeo: argument lists, never a shell, stderr kept in errors.

Credentials given with `--creds` reach skopeo as an auth file that exists only in memory
(a memfd, named `/proc/self/fd/N` on skopeo's command line): never on its command line, so
they do not show in `ps`, and never on disk, so no kill of bindimg can leave them behind. An
auth file the user names (`--authfile`, a unit's `AuthFile=`, `REGISTRY_AUTH_FILE`) is read
by bindimg, as a regular file of bounded size, and handed over the same way: a FIFO or
/dev/zero in its place is refused instead of making skopeo read without end.

No skopeo outlives bindimg: SIGTERM, SIGHUP and SIGINT kill them (`kill_children`), and a
SIGKILL of bindimg, which nothing in bindimg can catch, makes the kernel kill them (a
parent-death signal set by setpriv; see `_launcher`).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Optional

from bindimg import fsutil
from bindimg.errors import ExternalError, InputError

SKOPEO = "skopeo"
# An auth file holds a few entries; a certificate a few KB.
MAX_AUTH_BYTES = 1024 * 1024
MAX_CERT_BYTES = 1024 * 1024
_CERT_SUFFIXES = (".crt", ".cert", ".key")  # what containers/image reads (pkg/tlsclientconfig)

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
    """skopeo failed; `stderr` is what it said, `transient` whether a retry may help.

    `provisional`: not skopeo's answer but the direct request's (`registry.Skopeo`): the
    next call for the same reference asks skopeo, which has the last word and words it.
    """

    def __init__(
        self, message: str, *, stderr: str = "", transient: bool = False, provisional: bool = False
    ) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.transient = transient
        self.provisional = provisional


def inspect_raw(
    reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
) -> bytes:
    """The exact bytes of the top-level manifest of `docker://reference`."""
    with _auth_args(reference, options) as (auth, fds):
        argv = [SKOPEO, "inspect", "--raw", *auth, f"docker://{reference}"]
        return _run(argv, timeout=timeout, secrets=secrets + _secrets(options), reference=reference, fds=fds)


def inspect_config(reference: str, options: RegistryOptions, *, timeout: float) -> bytes:
    """The image config of `docker://reference` (a single-platform `name@digest`): its
    os/architecture/variant say which platform the image is for."""
    with _auth_args(reference, options) as (auth, fds):
        argv = [SKOPEO, "inspect", "--config", "--raw", *auth, f"docker://{reference}"]
        return _run(argv, timeout=timeout, secrets=_secrets(options), reference=reference, fds=fds)


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
    with _auth_args(reference, options, prefix="--src-") as (auth, fds):
        argv = [SKOPEO, *_platform_args(platform), "copy", "--quiet", "--preserve-digests", *auth]
        argv += [f"docker://{reference}", dest]
        secrets = _secrets(options)
        _run(argv, timeout=timeout, secrets=secrets, reference=reference, fds=fds, watch=watch)


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
    watch: Optional[Callable[[int], None]] = None,
) -> None:
    """`skopeo copy --preserve-digests SOURCE DEST`, any transports, registry options per side.

    `multi_arch` is skopeo's `--multi-arch`: `system` (one image of a list, chosen by
    `platform` or the host), `all` (the list and every image) or `index-only`. A manifest is
    never converted: skopeo fails instead, so the destination holds the digests pinned.
    `reference` (the image's own name) keeps a tag or repository such as `503` from being
    taken for a transient failure. `watch(pid)` is called about every 0.2 s while skopeo runs.
    """
    with ExitStack() as stack:
        auth: list[str] = []
        fds: tuple[int, ...] = ()
        for side, options, ref in (("--src-", src_options, source), ("--dest-", dest_options, dest)):
            if ref.startswith("docker://"):
                side_auth = _auth_args(ref[len("docker://") :], options, prefix=side)
                args, side_fds = stack.enter_context(side_auth)
                auth += args
                fds += side_fds
        argv = [SKOPEO, *_platform_args(platform), "copy", "--quiet", "--preserve-digests"]
        argv += [f"--multi-arch={multi_arch}", *auth, source, dest]
        secrets = _secrets(src_options) + _secrets(dest_options)
        _run(argv, timeout=timeout, secrets=secrets, reference=reference, fds=fds, watch=watch)


def inspect_local_raw(transport_ref: str, *, timeout: Optional[float] = None) -> bytes:
    """The top-level manifest bytes of a local image, e.g. `containers-storage:[…]NAME@DIGEST`;
    a SkopeoError when it is not there."""
    return _run([SKOPEO, "inspect", "--raw", transport_ref], timeout=timeout, secrets=())


def delete_local(reference: str, *, timeout: Optional[float] = None) -> None:
    """`skopeo delete` of a local image, e.g. `containers-storage:[…]name@digest` (its unused
    layers go with it)."""
    _run([SKOPEO, "delete", reference], timeout=timeout, secrets=(), cleanup=True)


def _platform_args(platform: Sequence[str]) -> list[str]:
    names = ("--override-os", "--override-arch", "--override-variant")
    return [f"{flag}={value}" for flag, value in zip(names, platform) if value]


MIN_VERSION = (1, 9)
LOG = logging.getLogger("bindimg")


def version_error(output: str) -> Optional[str]:
    """Why the skopeo that printed `output` for `skopeo --version` cannot be used (None: it can)."""
    found = re.search(r"version (\d+)\.(\d+)(\.\d+)?", output)
    if found is None:
        return f"cannot tell skopeo's version from {output.strip()[:80]!r}; bindimg needs skopeo >= 1.9"
    if (int(found[1]), int(found[2])) < MIN_VERSION:
        return f"skopeo {found[0].split()[1]} found; bindimg needs skopeo >= 1.9"
    return None


class ToolError(ExternalError):
    """skopeo is missing or too old: no call can succeed, whatever the image."""


def check_version() -> None:
    """Refuse an old or missing skopeo once, before its first real call (and, called by
    commands before their first progress line, before any work). Waits for the check
    `check_version_soon` started, or starts it.

    Raises ToolError (exit 3): skopeo missing, not runnable, or older than 1.9."""
    problem = _version_check().result()
    if problem is not None:
        raise ToolError(problem)


def check_version_soon() -> None:
    """Start `check_version`'s `skopeo --version` in the background (once per process): a
    command that will run skopeo calls this first, so that skopeo's start-up overlaps
    bindimg's own (imports, reading the units) instead of following it."""
    _version_check()


_version_lock = threading.Lock()
_version_future: Optional[Future[Optional[str]]] = None


def _version_check() -> Future[Optional[str]]:
    """The one `skopeo --version` check of this process: why skopeo cannot be used, or None."""
    global _version_future
    with _version_lock:
        if _version_future is None:
            _version_future = Future()
            threading.Thread(
                target=_ask_version, args=(_version_future,), name="skopeo-version", daemon=True
            ).start()
        return _version_future


def _ask_version(answer: Future[Optional[str]]) -> None:
    try:
        answer.set_result(_version_problem())
    except BaseException as error:  # a bindimg bug: said by check_version, not lost in a thread
        answer.set_exception(error)


def _version_problem() -> Optional[str]:
    try:
        child = _start([SKOPEO, "--version"], stderr=subprocess.DEVNULL)
    except SkopeoError as error:
        return error.message
    try:
        with child:
            try:
                stdout, _ = child.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                return "skopeo --version did not answer within 60 s; check the skopeo on PATH"
    finally:
        _finished(child)
    return version_error(stdout.decode("utf-8", "replace"))


# A SIGKILLed bindimg (the OOM killer, a build's time-out) cannot kill its skopeo, which would
# go on writing into the store and race with the next run undoing this one: the kernel does,
# by a parent-death signal (prctl PR_SET_PDEATHSIG) that setpriv (util-linux >= 2.33) sets
# before it executes the rest of its command line. Not `preexec_fn`: Python documents it as
# unsafe with threads, and bindimg starts skopeo from thread pools. SIGKILL: skopeo has no
# SIGTERM handler (no cleaner end), and a SIGTERM ignored by bindimg's caller (or by
# interrupt.py while it cleans up) would be ignored by skopeo too.
# A bindimg killed between the fork and setpriv's prctl leaves no parent to signal; the shell
# closes that gap: it reads its parent after the prctl and executes skopeo only if that is
# still bindimg ($0). The signal survives both execs (skopeo is not set-user-ID); a rootless
# skopeo's re-executed child has its own (containers/storage pkg/reexec/command_linux.go).
_PDEATHSIG = ("--pdeathsig", "KILL", "--", "/bin/sh", "-c", '[ "$PPID" = "$0" ] && exec "$@"')
_NOT_INSTALLED = "skopeo is not installed; bindimg needs skopeo >= 1.9 on PATH"


@functools.cache
def _launcher() -> tuple[str, ...]:
    """What goes before bindimg's pid and the skopeo command line: setpriv with SIGKILL as
    the parent-death signal, then the shell's check; () where setpriv is missing or lacks
    `--pdeathsig` (busybox's): skopeo then runs as a plain child, which SIGTERM, SIGHUP and
    SIGINT still kill but which a SIGKILLed bindimg leaves running. Found once, by running
    the launcher with no command (the shell's `exec` of nothing succeeds)."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        launcher = (setpriv, *_PDEATHSIG)
        try:
            argv = [*launcher, str(os.getpid())]
            probe = subprocess.run(argv, capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            LOG.debug("skopeo runs under %s --pdeathsig KILL: it dies with bindimg", setpriv)
            return launcher
    LOG.debug("no setpriv with --pdeathsig: a SIGKILLed bindimg would leave its skopeo running")
    return ()


# Every skopeo running now: a terminated bindimg kills them, none may outlive it.
_children: set[subprocess.Popen[bytes]] = set()
_children_lock = threading.Lock()
_terminating = False


def kill_children() -> None:
    """Kill every running skopeo and start no other but for clean-up (`delete_local`):
    bindimg is being terminated."""
    global _terminating
    with _children_lock:
        _terminating = True
        for child in _children:
            child.kill()


def _start(
    argv: list[str], *, fds: tuple[int, ...] = (), cleanup: bool = False, stderr: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """skopeo started and noted in `_children`. Raises SkopeoError: it cannot be run, or
    bindimg is being terminated (unless it is for clean-up)."""
    with _children_lock:
        if _terminating and not cleanup:
            raise SkopeoError("bindimg is being terminated")
        try:
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, pass_fds=fds)
        except FileNotFoundError:
            raise SkopeoError(_NOT_INSTALLED) from None
        except OSError as error:
            raise SkopeoError(f"cannot run skopeo: {error.strerror}; check the skopeo on PATH") from None
        _children.add(child)
    return child


def _finished(child: subprocess.Popen[bytes]) -> None:
    with _children_lock:
        _children.discard(child)


def _run(
    argv: list[str],
    *,
    timeout: Optional[float],
    secrets: tuple[str, ...],
    reference: str = "",
    fds: tuple[int, ...] = (),
    cleanup: bool = False,
    watch: Optional[Callable[[int], None]] = None,
) -> bytes:
    check_version()
    LOG.debug("%s", " ".join(argv))  # skopeo's command line, without the launcher
    command = argv
    launcher = _launcher()
    if launcher:
        # The shell would say "exec: skopeo: not found"; bindimg says it as without setpriv.
        if shutil.which(argv[0]) is None:
            raise SkopeoError(_NOT_INSTALLED)
        # The signal comes when the *thread* that started skopeo ends: this one, which waits
        # for skopeo (or kills and reaps it) before it returns.
        command = [*launcher, str(os.getpid()), *argv]
    child = _start(command, fds=fds, cleanup=cleanup)
    try:
        with child:
            try:
                stdout, stderr_bytes = _communicate(child, timeout, watch)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                raise SkopeoError(f"no answer within {timeout or 0:g} s", transient=True) from None
            except BaseException:  # interrupted: skopeo must not go on writing on its own
                child.kill()
                raise
    finally:
        _finished(child)
    if child.returncode != 0:
        stderr = _redact(stderr_bytes.decode("utf-8", "replace"), secrets)
        reason = _reason(stderr)
        raise SkopeoError(reason, stderr=stderr, transient=_transient(reason, reference))
    return stdout


def _communicate(
    child: subprocess.Popen[bytes], timeout: Optional[float], watch: Optional[Callable[[int], None]]
) -> tuple[bytes, bytes]:
    """child.communicate, calling `watch(pid)` every 0.2 s while the process runs."""
    if watch is None:
        return child.communicate(timeout=timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return child.communicate(timeout=0.2)
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() > deadline:
                raise
            watch(child.pid)


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
def _auth_args(
    reference: str, options: RegistryOptions, prefix: str = "--"
) -> Iterator[tuple[list[str], tuple[int, ...]]]:
    """Flags for `options` and the descriptors skopeo must inherit for them; `prefix` is
    `--src-` for the source of `skopeo copy`."""
    args: list[str] = []
    if options.cert_dir is not None:
        _check_cert_dir(options.cert_dir)
        args.append(f"{prefix}cert-dir={options.cert_dir}")
    if options.tls_verify is not None:
        args.append(f"{prefix}tls-verify={'true' if options.tls_verify else 'false'}")
    data = _auth_data(reference, options)
    if data is None:
        yield args, ()
        return
    fd = os.memfd_create("bindimg-auth", os.MFD_CLOEXEC)
    try:
        fsutil.write_all(fd, data)
        # skopeo opens the path afresh (offset 0); the memfd dies with the last descriptor.
        yield [*args, f"{prefix}authfile=/proc/self/fd/{fd}"], (fd,)
    finally:
        os.close(fd)


def _auth_data(reference: str, options: RegistryOptions) -> Optional[bytes]:
    """The auth file's bytes for `options`: from `--creds`, else the file named, else None
    (skopeo's own default look-up)."""
    if options.creds is not None:
        registry = reference.split("/", 1)[0]
        auth = base64.b64encode(options.creds.encode()).decode()
        return json.dumps({"auths": {registry: {"auth": auth}}}).encode()
    path = options.authfile if options.authfile is not None else os.environ.get("REGISTRY_AUTH_FILE")
    if not path:
        return None
    return fsutil.read_input(
        path,
        MAX_AUTH_BYTES,
        what="registry auth file",
        missing="no such registry auth file; fix the path or create it with `podman login`",
    )


def _check_cert_dir(path: str) -> None:
    """The certificates skopeo would read from `path` must be regular files of bounded size."""
    try:
        names = sorted(os.listdir(path))
    except OSError as error:
        raise InputError(f"cannot read the certificate directory: {error.strerror}", path=path) from None
    for name in names:
        if name.endswith(_CERT_SUFFIXES):
            fsutil.check_input(os.path.join(path, name), MAX_CERT_BYTES, what="certificate")
