"""Manifest look-ups over HTTP, without a skopeo process per reference.

`skopeo inspect --raw` costs a process start and, in each process, a new connection, a
ping of `/v2/` (for `--tls-verify=false`, HTTPS first, then plain HTTP) and a token before
the one request that matters. Here the ping and the token are done once per registry and
repository, and each worker thread keeps its connection open, so a look-up is one request.
Only `registry.Skopeo` uses it, as the first try of its `inspect_raw`: callers see a
`Registry`, never this module.

This path is taken only where its answer is certainly skopeo's: anonymous access (no
`--creds`, no credentials for the registry in any auth file skopeo reads, no credential
helper), no `--cert-dir` or certs.d directory for the host, no registries.conf entry that
could redirect or block it (`[[registry]]`, v1 `[registries.*]` tables) and no HTTP proxy
in the environment. Everything else, and every answer but a manifest (an error, a challenge
it cannot answer, an oversized body), is left to skopeo, which also words the errors:
`Unsupported` means "ask skopeo", `Transient` is a failure worth a retry.

The requests are containers/image's (docker/docker_client.go): the ping's scheme fallback,
the Bearer token request (`service`, `scope=repository:NAME:pull`), and the Accept list of
`manifest.DefaultRequestedManifestMIMETypes`, so the registry serves the same bytes; a
config is the blob the image manifest names (`GET /v2/NAME/blobs/DIGEST`, what `skopeo
inspect --config --raw` prints), checked against its digest; a blob redirected elsewhere
(307 to blob storage) is left to skopeo.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import select
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from bindimg import fsutil
from bindimg.skopeo import RegistryOptions

if TYPE_CHECKING:  # imported where used: they cost start-up time for commands that never look up
    import http.client
    import ssl

# containers/image manifest.DefaultRequestedManifestMIMETypes, in its order.
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
MAX_MANIFEST = 4 << 20  # containers/image's limit for a manifest body
_MAX_CONFIG = 1 << 20  # an auth file or registries.conf holds a few entries
_DOCKER_HUB = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class Unsupported(Exception):
    """Not this path's case (or not a manifest answer): skopeo is to be asked."""


class Transient(Exception):
    """The network or the registry failed in a way a retry may mend."""


@dataclass(frozen=True)
class _Endpoint:
    scheme: str
    host: str  # host[:port] to connect to
    realm: Optional[str]  # Bearer token service, when the ping asked for one
    service: Optional[str]


class Lookups:
    """Manifest look-ups that share pings, tokens and (per thread) connections."""

    def __init__(self, environ: Optional[dict[str, str]] = None) -> None:
        self._environ = dict(os.environ if environ is None else environ)
        self._lock = threading.Lock()
        self._endpoints: dict[tuple[str, bool], _Endpoint] = {}
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._eligible: dict[tuple[str, RegistryOptions], bool] = {}
        self._local = threading.local()
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self._pinging: dict[tuple[str, bool], threading.Lock] = {}

    def manifest(self, reference: str, options: RegistryOptions, timeout: float) -> bytes:
        """The exact bytes of the top-level manifest of `reference` (HOST/PATH:TAG or @DIGEST).

        Raises Unsupported (ask skopeo) or Transient (retry)."""
        registry, _, rest = reference.partition("/")
        if "@" in rest:
            path, _, ref = rest.partition("@")
        else:
            path, _, ref = rest.rpartition(":")
        body = self._fetch(registry, path, f"manifests/{ref}", options, timeout)
        if "@" in rest and not _matches(body, ref):
            raise Unsupported("a manifest that is not the digest asked for")  # skopeo words it
        return body

    def config(self, reference: str, manifest: bytes, options: RegistryOptions, timeout: float) -> bytes:
        """The config blob of the image manifest `manifest` of `reference` (HOST/PATH@DIGEST),
        as `skopeo inspect --config --raw` prints it, checked against its digest.

        Raises Unsupported (ask skopeo: an index, a schema 1 manifest, a redirected blob …) or
        Transient (retry)."""
        registry, _, rest = reference.partition("/")
        try:
            document = fsutil.load_json(manifest)
        except ValueError:
            raise Unsupported("a manifest that is not JSON") from None
        config = document.get("config") if isinstance(document, dict) else None
        digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(digest, str) or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise Unsupported("not an image manifest with a config")
        body = self._fetch(registry, rest.partition("@")[0], f"blobs/{digest}", options, timeout, accept=None)
        if not _matches(body, digest):
            raise Unsupported("a config blob that is not the digest asked for")
        return body

    def _fetch(
        self,
        registry: str,
        path: str,
        what: str,
        options: RegistryOptions,
        timeout: float,
        accept: Optional[str] = ACCEPT,
    ) -> bytes:
        """The body of a 200 answer to GET /v2/PATH/WHAT (`manifests/REF` or `blobs/DIGEST`)."""
        if not path or what.endswith("/") or not self.eligible(registry, options):
            raise Unsupported(f"{registry}/{path}")
        verify = options.tls_verify is not False
        endpoint = self._endpoint(registry, verify, timeout)
        headers = {"Accept": accept} if accept else {}
        if endpoint.realm is not None:
            headers["Authorization"] = f"Bearer {self._token(endpoint, path, verify, timeout)}"
        target = f"/v2/{path}/{what}"
        status, _, body = self._get(endpoint.scheme, endpoint.host, target, headers, verify, timeout)
        if status != 200:
            raise _failed(status, "manifest" if what.startswith("manifests/") else "blob")
        return body

    def close(self) -> None:
        """Close this thread's connections."""
        for connection in getattr(self._local, "connections", {}).values():
            connection.close()
        self._local.connections = {}

    # --- when this path is skopeo's path ------------------------------------------------------

    def eligible(self, registry: str, options: RegistryOptions) -> bool:
        key = (registry, options)
        with self._lock:
            known = self._eligible.get(key)
        if known is None:
            known = self._judge(registry, options)
            with self._lock:
                self._eligible[key] = known
        return known

    def _judge(self, registry: str, options: RegistryOptions) -> bool:
        env = self._environ
        if options.creds is not None or options.cert_dir is not None:
            return False
        if any(env.get(name) for name in _PROXY_VARIABLES):
            return False
        home = env.get("HOME", "")
        config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
        host = registry.split(":")[0] if registry.count(":") == 1 else registry
        for base in (
            "/etc/containers/certs.d",
            "/etc/docker/certs.d",
            os.path.join(config, "containers/certs.d"),
        ):
            if os.path.exists(os.path.join(base, registry)) or os.path.exists(os.path.join(base, host)):
                return False
        auth_files = [
            options.authfile,
            env.get("REGISTRY_AUTH_FILE"),
            os.path.join(env["XDG_RUNTIME_DIR"], "containers/auth.json")
            if env.get("XDG_RUNTIME_DIR")
            else None,
            os.path.join(config, "containers/auth.json"),
            os.path.join(env.get("DOCKER_CONFIG") or os.path.join(home, ".docker"), "config.json"),
            os.path.join(home, ".dockercfg"),
        ]
        for path in auth_files:
            text = _read(path) if path else None
            if text is not None and (
                registry in text or host in text or re.search(r'"(credsStore|credHelpers)"', text)
            ):
                return False
        confs = (
            [env["CONTAINERS_REGISTRIES_CONF"]]
            if env.get("CONTAINERS_REGISTRIES_CONF")
            else [
                "/etc/containers/registries.conf",
                os.path.join(config, "containers/registries.conf"),
            ]
        )
        for directory in (
            "/etc/containers/registries.conf.d",
            os.path.join(config, "containers/registries.conf.d"),
        ):
            confs.extend(sorted(glob.glob(os.path.join(directory, "*.conf"))))
        for path in confs:
            text = _read(path) or ""
            if re.search(r"^\s*\[\[?\s*registr(y|ies)\b", text, re.MULTILINE):
                return False
        return True

    # --- ping and token -----------------------------------------------------------------------

    def _endpoint(self, registry: str, verify: bool, timeout: float) -> _Endpoint:
        """The registry's scheme and token service: pinged by one thread at a time (the others
        wait for its answer), kept once it worked."""
        key = (registry, verify)
        with self._lock:
            pinging = self._pinging.setdefault(key, threading.Lock())
        with pinging:
            with self._lock:
                found = self._endpoints.get(key)
            if found is None:
                found = self._ping(registry, verify, timeout)
                with self._lock:
                    self._endpoints[key] = found
            return found

    def _ping(self, registry: str, verify: bool, timeout: float) -> _Endpoint:
        host = _DOCKER_HUB.get(registry, registry)
        try:
            status, headers, _ = self._get("https", host, "/v2/", {}, verify, timeout)
            scheme = "https"
        except (Transient, Unsupported):
            if verify:
                raise
            status, headers, _ = self._get("http", host, "/v2/", {}, verify, timeout)
            scheme = "http"
        if status in _RETRYABLE:
            raise _failed(status, "ping")
        realm = service = None
        if status == 401:
            kind, _, params = (headers.get("www-authenticate") or "").partition(" ")
            values = dict(_CHALLENGE.findall(params))
            if kind.lower() != "bearer" or not values.get("realm"):
                raise Unsupported("the registry asks for credentials")
            realm, service = values["realm"], values.get("service")
        elif status != 200:
            raise Unsupported(f"ping: HTTP {status}")
        return _Endpoint(scheme, host, realm, service)

    def _token(self, endpoint: _Endpoint, path: str, verify: bool, timeout: float) -> str:
        assert endpoint.realm is not None
        scope = f"repository:{path}:pull"
        key = (endpoint.realm, endpoint.service or "", scope)
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        realm = urllib.parse.urlsplit(endpoint.realm)
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise Unsupported("a token realm that is no URL")
        query = urllib.parse.urlencode(
            {"service": endpoint.service, "scope": scope} if endpoint.service else {"scope": scope}
        )
        target = f"{realm.path or '/'}?{realm.query + '&' if realm.query else ''}{query}"
        status, _, body = self._get(realm.scheme, realm.netloc, target, {}, verify, timeout)
        if status != 200:
            raise _failed(status, "token")
        try:
            document = fsutil.load_json(body)
            if not isinstance(document, dict):
                raise TypeError
            token = document.get("token") or document.get("access_token")
            lifetime = float(document.get("expires_in") or 60)
        except (ValueError, TypeError):
            raise Unsupported("a token answer that is not JSON") from None
        if not isinstance(token, str) or not token:
            raise Unsupported("a token answer without a token")
        with self._lock:  # 10 s early, as a token may expire while in flight
            self._tokens[key] = (token, time.monotonic() + max(lifetime - 10, 1))
        return token

    # --- HTTP ---------------------------------------------------------------------------------

    def _get(
        self, scheme: str, host: str, target: str, headers: dict[str, str], verify: bool, timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """One GET on this thread's connection to (scheme, host): status, headers (lower-case
        names), body; a network failure is Transient."""
        import http.client
        import ssl

        connection = self._connection(scheme, host, verify, timeout)
        try:
            connection.request("GET", target, headers={**headers, "User-Agent": "bindimg"})
            response = connection.getresponse()
            length = response.getheader("Content-Length")
            if length is not None and length.isdigit() and int(length) > MAX_MANIFEST:
                raise Unsupported("an answer larger than any manifest")
            body = response.read(MAX_MANIFEST + 1)
            if len(body) > MAX_MANIFEST:
                raise Unsupported("an answer larger than any manifest")
            if response.will_close:
                self._drop(scheme, host)
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        except ssl.SSLError as error:
            self._drop(scheme, host)
            raise Unsupported(f"TLS: {error}") from None  # skopeo words a TLS failure
        except (OSError, http.client.HTTPException) as error:
            self._drop(scheme, host)
            raise Transient(str(error) or type(error).__name__) from None
        except Unsupported:
            self._drop(scheme, host)
            raise

    def _connection(self, scheme: str, host: str, verify: bool, timeout: float) -> http.client.HTTPConnection:
        import http.client

        connections: dict[tuple[str, str], http.client.HTTPConnection] = (
            getattr(self._local, "connections", None) or {}
        )
        self._local.connections = connections
        connection = connections.get((scheme, host))
        if connection is not None and _closed_by_peer(connection):
            self._drop(scheme, host)
            connection = None
        if connection is None:
            if scheme == "https":
                connection = http.client.HTTPSConnection(host, timeout=timeout, context=self._context(verify))
            else:
                connection = http.client.HTTPConnection(host, timeout=timeout)
            connections[(scheme, host)] = connection
        connection.timeout = timeout
        return connection

    def _context(self, verify: bool) -> ssl.SSLContext:
        """One TLS context per verification mode (loading the CA bundle is costly)."""
        import ssl

        with self._lock:
            context = self._contexts.get(verify)
            if context is None:
                if verify:
                    context = ssl.create_default_context()
                else:  # no CA bundle to load: nothing is verified
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                self._contexts[verify] = context
            return context

    def _drop(self, scheme: str, host: str) -> None:
        connection = getattr(self._local, "connections", {}).pop((scheme, host), None)
        if connection is not None:
            connection.close()


def _matches(body: bytes, digest: str) -> bool:
    """Whether `body` has `digest` (ALGORITHM:HEX); an algorithm hashlib lacks never matches."""
    algorithm, _, expected = digest.partition(":")
    try:
        return hashlib.new(algorithm, body).hexdigest() == expected
    except ValueError:
        return False


def _failed(status: int, what: str) -> Exception:
    """A non-200 answer: worth a retry, or skopeo's to judge and word."""
    return (Transient if status in _RETRYABLE else Unsupported)(f"{what}: HTTP {status}")


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the server (readable at EOF): a
    request sent on it would fail without the registry having seen it."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _read(path: str) -> Optional[str]:
    """A configuration file's text; None when there is none to read. Unsupported for a FIFO,
    a device or a file over 1 MiB: opening or reading it could block or never end, and skopeo's
    path refuses it (an auth file) or says what is wrong."""
    try:
        return fsutil.read_regular(path, _MAX_CONFIG).decode("utf-8", "replace")
    except (fsutil.NotRegularFileError, fsutil.FileTooLargeError) as error:
        raise Unsupported(str(error)) from None
    except OSError:
        return None
