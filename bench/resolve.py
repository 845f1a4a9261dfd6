"""Digest resolution benchmark: `bindimg lock` against a plain loop of `skopeo inspect --raw`.

The test registry container runs behind a TCP proxy that delays every client-to-registry
round trip (the connection and each request) by a fixed time, as a distant registry would.
N distinct tags are pushed, then in one run:

  (a) a plain shell loop of `skopeo inspect --raw` over the N tags,
  (b) `bindimg lock` over N units with the default --jobs (interpreter start-up included),
  (c) one tag resolved by bindimg's resolver, in process (a new registry: ping, connection),
  (d) the N tags resolved by bindimg's resolver as `lock` resolves them (their platforms
      too), in process (no interpreter start-up),
  (e) `bindimg --version`: the interpreter and import start-up alone,
  (f) as (d), with the by-digest check answered from the tag's look-up (no request): what
      the check (each tag's manifest fetched again by its digest before it is pinned, while
      the image's config is read) costs,

and the ratios a/b (the speed-up over the loop, the issue's measure) and a/d are printed,
with the manifest requests per image that (d) and (f) made.
Run it with `./scripts/bench` (it sets up podman as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bindimg.registry import Skopeo  # noqa: E402
from bindimg.resolve import DEFAULT_JOBS, Request, Settings, resolve_each, resolve_one  # noqa: E402
from bindimg.skopeo import RegistryOptions  # noqa: E402
from tests import ociimage  # noqa: E402

REGISTRY_IMAGE = os.environ.get("BINDIMG_TEST_REGISTRY_IMAGE", "localhost/bindimg-test-registry:latest")


class DelayProxy:
    """Forwards 127.0.0.1:port to the registry, delaying the connection and each request;
    with `rate` (bytes/s), the registry's answers share a link that fast, as a distant
    registry's would."""

    def __init__(self, upstream_port: int, delay: float, rate: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.rate = rate
        self._link_free = 0.0  # when the shared link has sent what was queued (loop time)
        self.port = 0
        self.served = 0  # bytes sent from the registry to clients so far
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(self.delay)  # the TCP handshake's round trip
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
            try:
                while data := await reader.read(65536):
                    if delay:
                        await asyncio.sleep(delay)
                    else:  # the registry's answers
                        self.served += len(data)
                        if self.rate:
                            now = self._loop.time()
                            self._link_free = max(now, self._link_free) + len(data) / self.rate
                            await asyncio.sleep(self._link_free - now)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_r, up_w, self.delay), pipe(up_r, client_w, 0.0))


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True).stdout.strip()


def start_registry() -> tuple[str, int]:
    name = f"bindimg-bench-{os.getpid()}"
    podman("run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::5000", REGISTRY_IMAGE)
    port = int(podman("port", name, "5000/tcp").rsplit(":", 1)[1])
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1).close()
            return name, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the registry did not start")


@contextlib.contextmanager
def registry_and_workdir() -> Iterator[tuple[int, Path]]:
    """The test registry container (its port on 127.0.0.1) and a scratch directory, both
    removed at the end."""
    name, port = start_registry()
    try:
        with tempfile.TemporaryDirectory(prefix="bindimg-bench-") as tmp:
            yield port, Path(tmp)
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)


def push(port: int, count: int, work: Path) -> None:
    def one(i: int) -> None:
        layout = work / f"layout-{i}"
        ociimage.write_layout(layout, "t", ociimage.app_image(f"bench-{i}"))
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{layout}:t",
                f"docker://127.0.0.1:{port}/bench/app:t{i}",
            ],
            check=True,
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(count)))


class Counting(Skopeo):
    """The registry bindimg uses, counting its manifest look-ups; with `recheck=False` the
    look-up by digest that follows a tag's is answered from the tag's bytes (no request)."""

    def __init__(self, recheck: bool) -> None:
        super().__init__()
        self.recheck = recheck
        self.requests = 0
        self._answers: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def inspect_raw(
        self, reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
    ) -> bytes:
        name, _, digest = reference.partition("@")
        if digest and not self.recheck:
            with self._lock:
                return self._answers[reference]
        raw = super().inspect_raw(reference, options, timeout=timeout, secrets=secrets)
        with self._lock:
            self.requests += 1
            if not digest:
                self._answers[f"{name.rpartition(':')[0]}@sha256:{hashlib.sha256(raw).hexdigest()}"] = raw
        return raw


def in_process(requests: list[Request], jobs: int, recheck: bool) -> tuple[float, float]:
    """Seconds to resolve `requests` in process, and manifest requests per image."""
    registry = Counting(recheck)
    start = time.perf_counter()
    resolve_each(requests, Settings(jobs=jobs), registry=registry)
    return time.perf_counter() - start, registry.requests / len(requests)


def timed(argv: list[str], **kwargs: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tags", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    args = parser.parse_args()
    with registry_and_workdir() as (port, work):
        push(port, args.tags, work)
        proxy = DelayProxy(port, args.delay_ms / 1000)
        host = f"127.0.0.1:{proxy.port}"
        refs = [f"{host}/bench/app:t{i}" for i in range(args.tags)]
        units = work / "units"
        units.mkdir()
        for i, ref in enumerate(refs):
            (units / f"app{i}.container").write_text(f"[Container]\nImage={ref}\n")
        loop = " ".join(refs)
        a = timed(
            [
                "bash",
                "-c",
                f"for r in {loop}; do skopeo inspect --raw --tls-verify=false "
                "docker://$r >/dev/null || exit 1; done",
            ]
        )
        b = timed(
            [
                sys.executable,
                "-m",
                "bindimg",
                "lock",
                "-q",
                "--no-tls-verify",
                "--jobs",
                str(args.jobs),
                "--lock",
                str(work / "bindimg.lock"),
                str(units),
            ]
        )
        request = Request(f"{host}/bench/app:single", RegistryOptions(tls_verify=False))
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                f"docker://127.0.0.1:{port}/bench/app:t0",
                f"docker://127.0.0.1:{port}/bench/app:single",
            ],
            check=True,
        )
        start = time.perf_counter()
        resolve_one(request, Settings())
        c = time.perf_counter() - start
        requests = [Request(ref, RegistryOptions(tls_verify=False), platforms=True) for ref in refs]
        d, d_requests = in_process(requests, args.jobs, recheck=True)
        f, f_requests = in_process(requests, args.jobs, recheck=False)
        e = timed([sys.executable, "-m", "bindimg", "--version"])
        print(f"tags={args.tags} delay={args.delay_ms:g}ms jobs={args.jobs} cores={os.cpu_count()}")
        print(f"(a) skopeo loop          {a:7.2f} s")
        print(f"(b) bindimg lock         {b:7.2f} s")
        print(f"(c) single resolve       {c:7.2f} s")
        print(f"(d) N tags, in process   {d:7.2f} s  ({d_requests:g} manifest requests per image)")
        print(f"(e) bindimg --version    {e:7.2f} s")
        print(f"(f) (d) without recheck  {f:7.2f} s  ({f_requests:g} manifest requests per image)")
        print(f"a/b = {a / b:.1f}x faster than the loop;  a/d = {a / d:.1f}x without start-up")
        print(f"by-digest check: +{d - f:.2f} s for {args.tags} tags (d/f = {d / f:.2f})")


if __name__ == "__main__":
    main()
