"""Embedding benchmark: `bindimg add --embed` against a plain `skopeo copy` into a store.

Images (pushed to the test registry container, gzip layers as skopeo writes them):

  base   the local test base image (Debian + python3 + skopeo: one ~300 MB layer)
  app    base + one small layer (shares base's layer)
  data   base + a 40 MB layer of random bytes (an application's own layer: incompressible,
         so that the copy itself takes about a second, as for a real application image)
  slim   base + a layer deleting /usr/share/doc and /usr/share/locale (whiteouts: flattened)

For each image in turn (then `slim` once more), in one run: the plain
`skopeo copy docker://REF containers-storage:[overlay@S/…]REF` into root S, then
`bindimg add --embed --root B` of a unit naming REF into root B; both stores hold the same
layers before each step (except after the flattened `slim`), so the ratio is bindimg's cost
over skopeo's for the same copy, interpreter start-up and tag look-up included (and, in the
next column, with the start-up measured by `bindimg --version` taken out; bindimg's byte code
is compiled first, as pip does for an installed package). `du -sb`
of each store gives the growth. `--build` also times a `podman build` whose RUN step embeds
`base` on the build's own overlayfs. Run it with `./scripts/bench`.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REGISTRY_IMAGE = os.environ.get("BINDIMG_TEST_REGISTRY_IMAGE", "localhost/bindimg-test-registry:latest")
BASE_IMAGE = os.environ.get("BINDIMG_TEST_BASE_IMAGE", "localhost/bindimg-test-base:latest")
BINDIMG = [str(REPO / ".venv/bin/python"), "-m", "bindimg"]
IMAGES = ("base", "app", "data", "slim")
RECIPES = {
    "app": "RUN echo app > /etc/bench-app",
    "data": "RUN head -c 40000000 /dev/urandom > /opt/bench-data",
    "slim": "RUN rm -rf /usr/share/doc /usr/share/locale",
}
LABELS = {"app": "app (small layer)", "data": "data (40 MB layer)"}


def run(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def du(path: Path) -> int:
    return int(run("du", "-sb", str(path)).stdout.split()[0]) if path.exists() else 0


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed: {done.stderr}")
    return time.monotonic() - started


def store_spec(root: Path, runroot: Path) -> str:
    return (
        f"containers-storage:[overlay@{root}/usr/lib/containers/storage+{runroot}:"
        "overlay.mount_program=/bin/true,overlay.skip_mount_home=true]"
    )


def image_sizes(ref: str) -> tuple[int, int]:
    """(compressed, uncompressed) bytes of the image's layers."""
    with tempfile.TemporaryDirectory() as tmp:
        run("skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"dir:{tmp}/c")
        manifest = json.loads(Path(tmp, "c/manifest.json").read_text())
        compressed = sum(layer["size"] for layer in manifest["layers"])
        run("skopeo", "copy", "-q", "--dest-decompress", f"dir:{tmp}/c", f"dir:{tmp}/u")
        manifest = json.loads(Path(tmp, "u/manifest.json").read_text())
        return compressed, sum(layer["size"] for layer in manifest["layers"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--build", action="store_true", help="also time a podman build that embeds `base`")
    args = parser.parse_args()
    compileall.compile_dir(str(REPO / "bindimg"), quiet=1)  # pip compiles an installed package too
    name = f"bindimg-bench-embed-{os.getpid()}"
    run("podman", "run", "-d", "--rm", "--name", name, "-p", "127.0.0.1::5000", REGISTRY_IMAGE)
    built: list[str] = []
    try:
        port = run("podman", "port", name, "5000/tcp").stdout.strip().rsplit(":", 1)[1]
        host = f"127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="bindimg-bench-") as tmp_name:
            tmp = Path(tmp_name)
            push_images(host, tmp, built)
            print("\nimage   layers  compressed   uncompressed")
            for image in IMAGES:
                ref = f"{host}/bench/{image}:1"
                raw = run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
                compressed, plain = image_sizes(ref)
                print(f"{image:6} {len(json.loads(raw)['layers']):6}  {mb(compressed):>11}  {mb(plain):>12}")

            units = tmp / "units"
            units.mkdir()
            for image in IMAGES:
                (units / f"{image}.container").write_text(f"[Container]\nImage={host}/bench/{image}:1\n")
            startup = min(timed([*BINDIMG, "--version"]) for _ in range(3))
            print(f"\nbindimg start-up (`bindimg --version`, best of 3): {startup:.2f} s")
            print("each step: `skopeo copy docker://REF containers-storage:[overlay@S/…]REF`")
            print("into root S, then `bindimg add --embed --root B` into root B (S and B hold the same")
            print("layers before each step), this machine, in this order:")
            print("step                skopeo   bindimg   ratio   without start-up  S growth  B growth")
            plain_root, embed_root = tmp / "skopeo", tmp / "bindimg"
            plain_root.mkdir()
            embed_root.mkdir()
            sizes = {"S": 0, "B": 0}
            for image in (*IMAGES, "slim"):
                ref = f"{host}/bench/{image}:1"
                plain = timed(
                    [
                        "skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                        f"{store_spec(plain_root, tmp / 'run-s')}{ref}",
                    ]
                )  # fmt: skip
                embed = timed(
                    [*BINDIMG, "add", "-q", "--embed", "--root", str(embed_root), "--no-tls-verify",
                     str(units / f"{image}.container")]
                )  # fmt: skip
                grown = {}
                for key, root in (("S", plain_root), ("B", embed_root)):
                    after = du(root / "usr/lib/containers/storage")
                    grown[key], sizes[key] = after - sizes[key], after
                if (plain_root / "done-slim").exists():
                    label = "slim again"
                elif image == "slim":
                    (plain_root / "done-slim").touch()
                    label = "slim (flattened)"
                else:
                    label = LABELS.get(image, image)
                print(
                    f"{label:18} {plain:6.2f}s  {embed:6.2f}s  {embed / plain:5.2f}x  "
                    f"{(embed - startup) / plain:13.2f}x  {mb(grown['S']):>13}  {mb(grown['B']):>13}"
                )
            if args.build:
                time_builds(units, tmp, built)
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)
        for tag in built:
            subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, check=False)


def push_images(host: str, tmp: Path, built: list[str]) -> None:
    started = time.monotonic()
    run(
        "skopeo",
        "copy",
        "-q",
        "--dest-tls-verify=false",
        f"containers-storage:{BASE_IMAGE}",
        f"docker://{host}/bench/base:1",
    )
    for image, step in RECIPES.items():
        tag = f"localhost/bindimg-bench-{image}:{os.getpid()}"
        (tmp / "Containerfile").write_text(f"FROM {BASE_IMAGE}\n{step}\n")
        run("podman", "build", "-q", "--pull=never", "--layers=false", "-t", tag, str(tmp))
        built.append(tag)
        run(
            "skopeo",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            f"containers-storage:{tag}",
            f"docker://{host}/bench/{image}:1",
        )
    print(f"(pushing the images took {time.monotonic() - started:.1f} s)")


def time_builds(units: Path, tmp: Path, built: list[str]) -> None:
    context = tmp / "context"
    context.mkdir()
    run("cp", str(REPO / "dist/bindimg.pyz"), str(context / "bindimg.pyz"))
    run("cp", str(units / "base.container"), str(context / "base.container"))
    for mode in ("logical", "embed"):
        flag = "--embed" if mode == "embed" else ""
        (context / "Containerfile").write_text(
            f"FROM {BASE_IMAGE}\nCOPY bindimg.pyz base.container /src/\n"
            f"RUN python3 /src/bindimg.pyz add -q {flag} --no-tls-verify /src/base.container\n"
        )
        tag = f"localhost/bindimg-bench-build-{mode}:{os.getpid()}"
        started = time.monotonic()
        run(
            "podman",
            "build",
            "-q",
            "--network=host",
            "--pull=never",
            "--layers=false",
            "-t",
            tag,
            str(context),
        )
        seconds = time.monotonic() - started
        built.append(tag)
        size = int(run("podman", "image", "inspect", "--format", "{{.Size}}", tag).stdout)
        print(f"podman build, RUN bindimg add {flag or '(logical)':9}: {seconds:5.1f}s, OS image {mb(size)}")


if __name__ == "__main__":
    sys.exit(main())
