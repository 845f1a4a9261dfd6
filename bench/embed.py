"""Embedding benchmark: what `bindimg add --embed` costs in time and bytes, flattened or not.

Images (pushed to the test registry container, gzip layers as skopeo writes them):

  base   the local test base image (Debian + python3 + skopeo: one ~300 MB layer)
  app    base + one small layer (shares base's layer)
  slim   base + a layer deleting /usr/share/doc and /usr/share/locale (whiteouts: flattened)

Each is embedded with `bindimg add --embed --root ROOT` on this machine (a staging root, as in
the multi-stage flow), the phases timed from bindimg's progress lines; `du -sb` of the store
after each step. Then the same unflattened `slim` is copied into a store with skopeo alone,
to show what flattening costs in bytes. Finally one `podman build` whose RUN step embeds
`base` on the build's own overlayfs (the store is then committed as an image layer).
Run it with `./scripts/bench`.
"""

from __future__ import annotations

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


def run(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def du(path: Path) -> int:
    return int(run("du", "-sb", str(path)).stdout.split()[0]) if path.exists() else 0


def mb(size: float) -> str:
    return f"{size / 1e6:.1f} MB"


def timed_embed(root: Path, unit: Path, *extra: str) -> dict[str, float]:
    """Wall time of `bindimg add --embed`, and of each phase (from its progress lines)."""
    started = time.monotonic()
    marks: list[tuple[float, str]] = []
    proc = subprocess.Popen(
        [*BINDIMG, "add", "--embed", "--root", str(root), "--no-tls-verify", *extra, str(unit)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        marks.append((time.monotonic() - started, line.split(" ", 1)[0]))
    if proc.wait() != 0:
        raise SystemExit(f"bindimg add --embed {unit} failed: {marks}")
    total = time.monotonic() - started
    phases: dict[str, float] = {"total": total}
    ends = [t for t, _ in marks[1:]] + [total]
    for (start, word), end in zip(marks, ends):
        phases[word] = phases.get(word, 0.0) + end - start
    return phases


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
            recipes = {
                "app": "RUN echo app > /etc/bench-app",
                "slim": "RUN rm -rf /usr/share/doc /usr/share/locale",
            }
            started = time.monotonic()
            run(
                "skopeo",
                "copy",
                "-q",
                "--dest-tls-verify=false",
                f"containers-storage:{BASE_IMAGE}",
                f"docker://{host}/bench/base:1",
            )
            for image, step in recipes.items():
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

            print("\nimage   layers  compressed   uncompressed")
            for image in ("base", "app", "slim"):
                ref = f"{host}/bench/{image}:1"
                layers = len(
                    json.loads(
                        run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}").stdout
                    )["layers"]
                )
                compressed, plain = image_sizes(ref)
                print(f"{image:6} {layers:6}  {mb(compressed):>11}  {mb(plain):>12}")

            units = tmp / "units"
            units.mkdir()
            for image in ("base", "app", "slim"):
                (units / f"{image}.container").write_text(f"[Container]\nImage={host}/bench/{image}:1\n")
            print("\nbindimg add --embed --root ROOT (this machine, one root, in this order)")
            print("step              total   fetch  flatten   copy   store after  store growth")
            root = tmp / "root"
            root.mkdir()
            store = root / "usr/lib/containers/storage"
            before = 0
            for image in ("base", "app", "slim"):
                phases = timed_embed(root, units / f"{image}.container")
                after = du(store)
                print(
                    f"{image:14} {phases['total']:7.1f}s {phases.get('fetching', 0):6.1f}s "
                    f"{phases.get('flattening', 0):7.1f}s {phases.get('copying', 0):5.1f}s "
                    f"{mb(after):>12}  {mb(after - before):>11}"
                )
                before = after
            again = timed_embed(root, units / "slim.container")
            print(f"{'slim again':14} {again['total']:7.1f}s  (already in the store: nothing fetched)")

            plain_root = tmp / "unflattened"
            started = time.monotonic()
            run(
                "skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{host}/bench/slim:1",
                f"containers-storage:[overlay@{plain_root}+{tmp}/run:overlay.mount_program=/bin/true,"
                "overlay.skip_mount_home=true]bench/slim",
            )  # fmt: skip
            print(
                f"\nslim unflattened, skopeo alone: {time.monotonic() - started:.1f}s, "
                f"store {mb(du(plain_root))} (base layer + whiteout layer; unusable nested in an image)"
            )

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
                label = flag or "(logical)"
                print(f"podman build, RUN bindimg add {label:9}: {seconds:5.1f}s, OS image {mb(size)}")
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)
        for tag in built:
            subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, check=False)


if __name__ == "__main__":
    sys.exit(main())
