"""Build Containerfile.test with podman and read files out of the built image."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 600


def build_context(tmp: Path, zipapp: Path, units: dict[str, str]) -> Path:
    """A build context: the zipapp and `quadlets/` with the given unit files."""
    context = tmp / "context"
    (context / "quadlets").mkdir(parents=True)
    shutil.copy(zipapp, context / "bindimg.pyz")
    for name, text in units.items():
        (context / "quadlets" / name).write_text(text)
    return context


def build(context: Path, base_image: str, *build_args: str, containerfile: str = "Containerfile.test") -> str:
    """`podman build` Containerfile.test (or `containerfile`); returns the image name (the
    caller removes it). `--layers=false`: no intermediate images (of stages too) are kept."""
    tag = f"localhost/bindimg-e2e:{uuid.uuid4().hex[:12]}"
    args = [f"--build-arg=BASE_IMAGE={base_image}", *(f"--build-arg={a}" for a in build_args)]
    done = subprocess.run(
        [
            "podman",
            "build",
            "--network=host",
            "--pull=never",
            "--no-cache",
            "--layers=false",
            "-q",
            *args,
            "-f",
            str(REPO_ROOT / containerfile),
            "-t",
            tag,
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"podman build failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return tag


def remove(image: str) -> None:
    subprocess.run(["podman", "rmi", "-f", image], capture_output=True, check=False)


def read_tree(image: str, *paths: str) -> dict[str, tarfile.TarInfo | bytes]:
    """Files (bytes) and symlinks (TarInfo) under `paths` in the image, keyed by path."""
    done = subprocess.run(
        ["podman", "run", "--rm", "--network=none", image, "tar", "-C", "/", "-cf", "-", *paths],
        capture_output=True,
        timeout=120,
        check=True,
    )
    found: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        for member in archive.getmembers():
            if member.issym():
                found[member.name] = member
            elif member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                found[member.name] = extracted.read()
    return found


def extract(image: str, dest: Path, *paths: str) -> None:
    """Copy `paths` (relative to /) out of `image`, xattrs and owners kept."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = ["tar", "--xattrs", "--xattrs-include=*", "-C", "/", "-cf", "-", *paths]
    make = subprocess.Popen(["podman", "run", "--rm", "--network=none", image, *tar], stdout=subprocess.PIPE)
    try:
        subprocess.run(
            ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C", str(dest)],
            stdin=make.stdout,
            check=True,
            timeout=BUILD_TIMEOUT,
        )
    finally:
        assert make.stdout is not None
        make.stdout.close()
        assert make.wait(timeout=BUILD_TIMEOUT) == 0
