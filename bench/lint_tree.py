"""`bindimg lint --root` wall time on a large image root, interpreter start-up included.

Generates, in a temporary directory, an image root with 1,000 Quadlet units spread over the
rootful search directories (700 `.container`, 250 `.image`, 50 `.volume` with Driver=image;
some in subdirectories), drop-ins (one per tenth unit plus a top-level `container.d`), a
bound-images.d of 200 links, every unit pinned and bound the way `bindimg add` leaves it, and
20 `.kube` units, each with a Pod YAML of an init container and two containers. It
then runs `python -m bindimg lint --root DIR -q` as a subprocess N times and prints the best
and the median wall and CPU time. Target: under 1 s on the 2-core CI machine.

    .venv/bin/python bench/lint_tree.py [--units 1000] [--links 200] [--kube 20] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QDIRS = ("usr/share/containers/systemd", "etc/containers/systemd")
BOUND = "usr/lib/bootc/bound-images.d"
STORAGE = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/bootc/storage"


def digest(n: int) -> str:
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def unit_text(kind: str, n: int) -> str:
    image = f"quay.io/bench/app{n}@{digest(n)}"
    provenance = f"# bindimg: pinned from quay.io/bench/app{n}:1.{n}\n"
    if kind == "container":
        return (
            f"[Unit]\nDescription=bench {n}\n\n[Container]\n{provenance}Image={image}\n{STORAGE}\n"
            f"Environment=N={n}\nPublishPort={8000 + n}:80\n\n[Install]\nWantedBy=multi-user.target\n"
        )
    if kind == "image":
        return f"[Image]\n{provenance}Image={image}\n"
    return f"[Volume]\nDriver=image\nImage={image}\n"


def kube_yaml(k: int) -> str:
    images = [f"quay.io/bench/app{n}@{digest(n)}" for n in (k, k + 1, k + 2)]
    return (
        f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod{k}\n  labels:\n    app: bench\nspec:\n"
        f"  initContainers:\n  - name: init\n    image: {images[0]}\n"
        f"  containers:\n  - name: web\n    image: {images[1]}\n    ports:\n    - containerPort: 80\n"
        f"  - name: side\n    image: {images[2]}\n    env:\n    - name: N\n      value: \"{k}\"\n"
    )


def build_kube(root: Path, count: int) -> None:
    for k in range(count):
        (root / QDIRS[0] / f"pod{k}.kube").write_text(f"[Kube]\nYaml=pod{k}.yaml\n")
        (root / QDIRS[0] / f"pod{k}.yaml").write_text(kube_yaml(k))


def build(root: Path, units: int, links: int) -> tuple[int, int]:
    """The tree; returns (units written, drop-ins written)."""
    kinds = ["container"] * 70 + ["image"] * 25 + ["volume"] * 5
    dropins = 0
    bound = 0
    for n in range(units):
        kind = kinds[n % len(kinds)]
        top = QDIRS[1] if n % 20 == 0 else QDIRS[0]
        sub = f"group{n % 8}/" if n % 3 == 0 else ""
        name = f"app{n}.{kind}"
        path = root / top / sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(unit_text(kind, n))
        if n % 10 == 0:
            dropin = root / top / sub / f"{name}.d" / "10-env.conf"
            dropin.parent.mkdir(parents=True, exist_ok=True)
            section = {"container": "Container", "image": "Image", "volume": "Volume"}[kind]
            dropin.write_text(f"[{section}]\nLabel=bench={n}\n")
            dropins += 1
        if bound < links and kind in ("container", "image") and top == QDIRS[0]:
            link = root / BOUND / name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(f"/{top}/{sub}{name}", link)
            bound += 1
    common = root / QDIRS[0] / "container.d" / "50-common.conf"
    common.parent.mkdir(parents=True, exist_ok=True)
    common.write_text("[Service]\nRestart=always\n")
    return units, dropins + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--links", type=int, default=200)
    parser.add_argument("--kube", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bindimg-bench-") as tmp:
        root = Path(tmp) / "root"
        units, dropins = build(root, args.units, args.links)
        build_kube(root, args.kube)
        command = [sys.executable, "-m", "bindimg", "lint", "--root", str(root), "-q"]
        times: list[float] = []
        cpus: list[float] = []  # the child's user + system time: steadier on a shared machine
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode != 0:
                sys.exit(f"lint exited {done.returncode}:\n{done.stdout}{done.stderr}")
        links = len(os.listdir(root / BOUND))
        print(
            f"bindimg lint --root: {units} units, {args.kube} .kube, {dropins} drop-ins, {links} links: "
            f"best of {args.runs} = {min(times):.3f} s, median {statistics.median(times):.3f} s, "
            f"median CPU {statistics.median(cpus):.3f} s "
            f"(runs: {', '.join(f'{t:.3f}' for t in times)}; load average {os.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
