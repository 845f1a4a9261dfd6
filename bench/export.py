"""Export benchmark: `bindimg export` against a plain loop of `skopeo copy`, in one run.

N distinct images (three layers each, one of them 1 MiB of incompressible bytes) are pushed
to the test registry, which is then reached through the delaying proxy of bench/resolve.py
(every round trip delayed, as a distant registry would). A lock file names them all. Then:

  (a) a shell loop of `skopeo copy --all --preserve-digests docker://NAME@DIGEST oci:DIR:NAME@DIGEST`,
  (b) `bindimg export --lock LOCK --to oci:DIR2` with the default --jobs,
  (c) (b) again: DEST holds everything, nothing is copied,
  (d) `bindimg export --lock LOCK --to containers-storage:[overlay@…]` (private store),
  (e) a second lock of N siblings (each image's layers plus one small layer of its own)
      exported to DIR2, which already holds every shared layer,
  (f) (b) again after DIR2's index.json lost its entries (blobs kept, as a run killed
      between moving blobs and writing the index leaves it): every blob is already there,

and a/b is printed. (e) and (f) measure what DEST's blobs save: only missing blobs are
fetched. Run it with `./scripts/bench` (it sets up podman as the tests do).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from resolve import DelayProxy, registry_and_workdir, timed  # noqa: E402

from bindimg.resolve import DEFAULT_JOBS  # noqa: E402
from tests import ociimage  # noqa: E402
from tests.registry import skopeo  # noqa: E402

LAYER_BYTES = 1 << 20


def noise(seed: str, size: int) -> bytes:
    """`size` incompressible bytes, the same for the same seed."""
    out = bytearray()
    block = hashlib.sha512(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha512(block).digest()
        out += block
    return bytes(out[:size])


def push(port: int, count: int, work: Path, kind: str = "e") -> list[str]:
    """Push `count` images; their NAME@DIGEST as the registry serves them. Kind `s`: the
    siblings of the `e` images, one small layer added on top of the same layers."""

    def one(i: int) -> str:
        layout = work / f"layout-{kind}{i}"
        layers = [*ociimage.app_layers(f"bench-{i}"), {"data/noise": noise(f"bench-{i}", LAYER_BYTES)}]
        if kind == "s":
            layers.append({"etc/sibling": f"{i}\n"})
        ociimage.write_layout(layout, "t", ociimage.image(layers))
        skopeo(
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{layout}:t",
            f"docker://127.0.0.1:{port}/bench/{kind}{i}:1",
        )
        shutil.rmtree(layout)
        digest = (
            "sha256:"
            + hashlib.sha256(
                skopeo("inspect", "--raw", "--tls-verify=false", f"docker://127.0.0.1:{port}/bench/{kind}{i}:1")
            ).hexdigest()
        )
        return f"bench/{kind}{i}@{digest}"

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def write_lock(path: Path, refs: list[str]) -> Path:
    entries = "".join(f'[images."{ref.split("@")[0]}:1"]\ndigest = "{ref.split("@")[1]}"\n' for ref in refs)
    path.write_text(f"version = 1\n{entries}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--mbit", type=float, default=0.0, help="the registry's bandwidth (0: unlimited)")
    args = parser.parse_args()
    with registry_and_workdir() as (port, work):
        paths = push(port, args.images, work)
        siblings = push(port, args.images, work, "s")
        proxy = DelayProxy(port, args.delay_ms / 1000, args.mbit * 1e6 / 8)
        refs = [f"127.0.0.1:{proxy.port}/{path}" for path in paths]
        lock = write_lock(work / "bindimg.lock", refs)
        sibling_lock = write_lock(work / "siblings.lock", [f"127.0.0.1:{proxy.port}/{p}" for p in siblings])
        loop = " ".join(refs)
        served: dict[str, float] = {}

        def measured(step: str, argv: list[str]) -> float:
            before = proxy.served
            seconds = timed(argv)
            served[step] = (proxy.served - before) / 1e6
            return seconds

        a = timed(
            [
                "bash",
                "-c",
                f"for r in {loop}; do skopeo copy --quiet --all --preserve-digests "
                f'--src-tls-verify=false "docker://$r" "oci:{work}/loop:$r" || exit 1; done',
            ]
        )
        export = [sys.executable, "-m", "bindimg", "export", "-q", "--no-tls-verify", "--lock", str(lock)]
        b = measured("b", [*export, "--to", f"oci:{work}/export"])
        c = measured("c", [*export, "--to", f"oci:{work}/export"])
        store = f"containers-storage:[overlay@{work}/store+{work}/run:overlay.skip_mount_home=true]"
        d = measured("d", [*export, "--to", store])
        e = measured("e", [*export[:-1], str(sibling_lock), "--to", f"oci:{work}/export"])
        index = work / "export" / "index.json"
        index.write_text('{"schemaVersion": 2, "manifests": []}')
        f = measured("f", [*export, "--to", f"oci:{work}/export"])
        print(
            f"images={args.images} delay={args.delay_ms:g}ms mbit={args.mbit:g} jobs={DEFAULT_JOBS} "
            f"cores={os.cpu_count()}"
        )
        print(f"(a) skopeo copy loop to oci:        {a:7.2f} s")
        print(f"(b) bindimg export to oci:          {b:7.2f} s  {served['b']:6.1f} MB from the registry")
        print(f"(c) bindimg export again (no copy)  {c:7.2f} s  {served['c']:6.1f} MB")
        print(f"(d) bindimg export to c-storage     {d:7.2f} s  {served['d']:6.1f} MB")
        print(f"(e) siblings to the same oci:       {e:7.2f} s  {served['e']:6.1f} MB")
        print(f"(f) again after index.json emptied  {f:7.2f} s  {served['f']:6.1f} MB")
        print(f"a/b = {a / b:.1f}x faster than the loop")


if __name__ == "__main__":
    main()
