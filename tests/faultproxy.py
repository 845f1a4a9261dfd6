"""An HTTP proxy on 127.0.0.1 that forwards to the test registry and injects faults on request.

Why a proxy and not a fake registry: the bytes that do get through are the real registry's,
so a look-up that succeeds after a fault must pin exactly the digest the registry serves, and
a failure can only come from the fault the test asked for.

skopeo talks to the proxy as to any registry (``--tls-verify=false``). It first tries HTTPS;
the proxy closes a connection that starts with a TLS handshake, and skopeo falls back to plain
HTTP, as it does against the registry container itself.

A ``Rule`` matches requests by path (a regular expression searched in the path) and method;
its matching requests are counted, and the fault applies to the ones numbered
``skip + 1 … skip + times`` (``times=None``: all the rest). The others, and requests no rule
matches, pass through. ``FaultProxy.seen`` records every request and what was done with it.

    with FaultProxy(registry.host) as proxy:
        proxy.add(Rule(server_error(), path=MANIFEST, times=1))
        ...  # use proxy.host in image references

Faults: ``Status`` (any answer, e.g. ``server_error()``, ``unauthorized()``), ``Reset`` (part of
the real answer, then a TCP RST), ``Delay`` (the real answer, late), ``Close`` (no answer, a
clean FIN), ``RequireBasicAuth`` (401 unless the request carries the given credentials),
``EchoUnauthorized`` (401 whose error message repeats the request's Authorization header, as a
careless registry or auth proxy might: what a client prints of it must be redacted).
``refuse()`` closes the listening socket: new connections are refused.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional, Union

MANIFEST = r"^/v2/.+/manifests/"  # path pattern of manifest requests
PING = r"^/v2/$"
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"})
TLS_HANDSHAKE = 0x16


@dataclass(frozen=True)
class Status:
    """Answer with this status instead of forwarding."""

    code: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Reset:
    """Forward, send the first `fraction` of the answer's bytes, then reset the connection."""

    fraction: float = 0.5


@dataclass(frozen=True)
class Delay:
    """Forward, but answer only after `seconds`."""

    seconds: float


@dataclass(frozen=True)
class Close:
    """Close the connection without answering (the client reads EOF)."""


@dataclass(frozen=True)
class RequireBasicAuth:
    """Forward only requests carrying these Basic credentials; 401 with a challenge otherwise."""

    user: str
    password: str
    realm: str = "bindimg-test"

    @property
    def header(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


@dataclass(frozen=True)
class EchoUnauthorized:
    """401 with a Basic challenge, the request's Authorization header quoted in the message."""

    realm: str = "bindimg-test"


Action = Union[Status, Reset, Delay, Close, RequireBasicAuth, EchoUnauthorized]


def registry_error(code: int, reason: str, error_code: str, message: str, *extra: tuple[str, str]) -> Status:
    """An answer shaped like the distribution registry's own errors (JSON `errors` list)."""
    body = json.dumps({"errors": [{"code": error_code, "message": message, "detail": None}]}).encode()
    return Status(code, reason, (("Content-Type", "application/json"), *extra), body)


def server_error() -> Status:
    return registry_error(500, "Internal Server Error", "UNKNOWN", "unknown error")


def unauthorized(realm: str = "bindimg-test", message: str = "authentication required") -> Status:
    challenge = ("WWW-Authenticate", f'Basic realm="{realm}"')
    return registry_error(401, "Unauthorized", "UNAUTHORIZED", message, challenge)


@dataclass
class Rule:
    """Apply `action` to the matching requests numbered skip+1 … skip+times (None: all)."""

    action: Action
    path: str = ""
    method: Optional[str] = None
    skip: int = 0
    times: Optional[int] = None
    matched: int = 0  # how many requests matched so far

    def take(self, method: str, path: str) -> bool:
        """Count a matching request; whether the fault applies to it (caller holds the lock)."""
        if (self.method is not None and method != self.method) or not re.search(self.path, path):
            return False
        self.matched += 1
        return self.skip < self.matched and (self.times is None or self.matched <= self.skip + self.times)


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and what it did: `pass` or the fault's class name."""

    method: str
    path: str
    authorization: Optional[str]
    outcome: str


@dataclass
class _Request:
    method: str
    path: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> Optional[str]:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


class _Connection:
    """Reads HTTP/1.1 requests off one client socket (keep-alive: several per connection)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read_request(self) -> Optional[_Request]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, path, version = lines[0].split(" ", 2)
        request = _Request(method, path, version)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            request.headers.append((name.strip(), value.strip()))
        length = int(request.header("Content-Length") or 0)
        while len(self.buffer) < length:
            if not self._fill():
                return None
        request.body, self.buffer = self.buffer[:length], self.buffer[length:]
        return request


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            first = sock.recv(1, socket.MSG_PEEK)
            if not first or first[0] == TLS_HANDSHAKE:
                return  # HTTPS attempt: closing makes skopeo fall back to HTTP
            connection = _Connection(sock)
            while True:
                request = connection.read_request()
                if request is None or not self.server.proxy.serve(sock, request):
                    return
        except (OSError, ValueError):
            return  # the client went away (e.g. killed after its time-out), or sent no HTTP


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.proxy = proxy


class FaultProxy:
    """A fault-injecting HTTP proxy in front of `upstream` (``host:port`` of the registry)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._host: Optional[str] = None

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._server = _Server(self)
        port = self._server.server_address[1]
        self._host = f"127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)
        self._thread.start()
        return self

    def refuse(self) -> None:
        """Stop listening: from now on a connection to `host` is refused."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def stop(self) -> None:
        self._stopping.set()  # ends pending delays at once
        self.refuse()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``, the registry part of image references; known after stop()."""
        if self._host is None:
            raise RuntimeError("proxy not started")
        return self._host

    # --- configuration and record ---------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def set_rules(self, *rules: Rule) -> None:
        """Replace every rule (e.g. a registry that starts refusing the credentials it took)."""
        with self._lock:
            self.rules[:] = rules

    def requests(self, path: str = "", outcome: Optional[str] = None) -> list[Seen]:
        """The requests seen whose path matches `path` (and with that outcome, if given)."""
        with self._lock:
            return [
                s for s in self.seen if re.search(path, s.path) and (outcome is None or s.outcome == outcome)
            ]

    # --- serving --------------------------------------------------------------------------

    def _decide(self, request: _Request) -> Optional[Action]:
        with self._lock:
            action = next((r.action for r in self.rules if r.take(request.method, request.path)), None)
            if isinstance(action, RequireBasicAuth) and request.header("Authorization") == action.header:
                action = None
            self.seen.append(
                Seen(
                    request.method,
                    request.path,
                    request.header("Authorization"),
                    "pass" if action is None else type(action).__name__,
                )
            )
            return action

    def serve(self, sock: socket.socket, request: _Request) -> bool:
        """Answer one request; whether the connection stays open for the next one."""
        action = self._decide(request)
        keep = (request.header("Connection") or "").lower() != "close"
        if isinstance(action, Close):
            return False
        if isinstance(action, RequireBasicAuth):
            action = unauthorized(action.realm)
        elif isinstance(action, EchoUnauthorized):
            got = request.header("Authorization") or "no Authorization header"
            action = unauthorized(action.realm, f"authentication required, got {got}")
        if isinstance(action, Status):
            body = b"" if request.method == "HEAD" else action.body
            sock.sendall(_response(action.code, action.reason, list(action.headers), body, len(action.body)))
            return keep
        if isinstance(action, Delay) and self._stopping.wait(action.seconds):
            return False
        code, reason, headers, body, length = self._forward(request)
        data = _response(code, reason, headers, body, length)
        if isinstance(action, Reset):
            sock.sendall(data[: max(1, int(len(data) * action.fraction))])
            self._stopping.wait(0.1)  # let the client read the start, then pull the rug
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return False
        sock.sendall(data)
        return keep

    def _forward(self, request: _Request) -> tuple[int, str, list[tuple[str, str]], bytes, int]:
        upstream = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            # putheader, not a dict: skopeo sends several Accept headers, and all must arrive
            upstream.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
            upstream.putheader("Host", self.upstream)
            for name, value in request.headers:
                if name.lower() not in HOP_BY_HOP | {"host"}:
                    upstream.putheader(name, value)
            if request.body:
                upstream.putheader("Content-Length", str(len(request.body)))
            upstream.endheaders(request.body or None)
            response = upstream.getresponse()
            body = response.read()
            length = int(response.getheader("Content-Length") or len(body))
            kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            return response.status, response.reason, kept, body, length
        finally:
            upstream.close()


def _response(code: int, reason: str, headers: list[tuple[str, str]], body: bytes, length: int) -> bytes:
    lines = [f"HTTP/1.1 {code} {reason}", *(f"{k}: {v}" for k, v in headers), f"Content-Length: {length}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def closed_port_host() -> str:
    """``127.0.0.1:<port>`` where nothing listens (bound, then closed): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream).start()
    try:
        yield proxy
    finally:
        proxy.stop()
