"""Python 3.9 (Debian 11's 3.9.2, the oldest bindimg supports): the zipapp and the unit tests.

RHEL 9 / CentOS Stream 9 bootc images ship Python 3.9 as python3, so the zipapp must run
there. These tests run in a local Debian 11 image built by ./scripts/test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.kit import D1, STORAGE

REPO_ROOT = Path(__file__).resolve().parent.parent
NO_REGISTRY_TESTS = [
    "tests/test_reference.py",
    "tests/test_quadlet.py",
    "tests/test_bootcini.py",
    "tests/test_add_offline.py",
    "tests/test_flatten.py",
    "tests/test_lint_rules.py",
    "tests/test_list.py",
    "tests/test_hostile.py",
    "tests/test_delivery_units.py",
]


@pytest.fixture(scope="module")
def py39_image(base_image: str) -> str:
    name = os.environ.get("BINDIMG_TEST_PY39_IMAGE") or "localhost/bindimg-test-py39:latest"
    if subprocess.run(["podman", "image", "exists", name], check=False).returncode != 0:
        pytest.fail(f"{name} is missing: run ./scripts/test, which builds it", pytrace=False)
    return name


def run39(
    image: str, *argv: str, mounts: dict[Path, str], workdir: str = "/", env: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    volumes = [arg for host, inner in mounts.items() for arg in ("-v", f"{host}:{inner}")]
    return subprocess.run(
        [
            "podman",
            "run",
            "--rm",
            "--network=none",
            "-w",
            workdir,
            *volumes,
            *(f"--env={e}" for e in env),
            image,
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_zipapp_runs_on_python_3_9(py39_image: str, zipapp: Path, tmp_path: Path) -> None:
    unit = tmp_path / "root/usr/share/containers/systemd/app.container"
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Container]\nImage=docker.io/x/y:1@{D1}\n")
    mounts = {zipapp.parent: "/d:ro", tmp_path: "/w"}
    inner = "/w/root/usr/share/containers/systemd/app.container"

    version = run39(py39_image, "python3", "/d/bindimg.pyz", "--version", mounts=mounts)
    assert (version.returncode, version.stdout.startswith("bindimg ")) == (0, True), version.stderr

    dry = run39(
        py39_image, "python3", "/d/bindimg.pyz", "add", "--root", "/w/root", "--dry-run", inner, mounts=mounts
    )
    assert dry.returncode == 0, dry.stderr
    assert f"+Image=docker.io/x/y@{D1}\n" in dry.stdout
    assert unit.read_text() == f"[Container]\nImage=docker.io/x/y:1@{D1}\n"

    done = run39(py39_image, "python3", "/d/bindimg.pyz", "add", "--root", "/w/root", inner, mounts=mounts)
    assert done.returncode == 0, done.stderr
    assert unit.read_text() == (
        f"[Container]\n# bindimg: pinned from docker.io/x/y:1@{D1}\nImage=docker.io/x/y@{D1}\n{STORAGE}\n"
    )
    link = tmp_path / "root/usr/lib/bootc/bound-images.d/app.container"
    assert os.readlink(link) == "/usr/share/containers/systemd/app.container"


def test_unit_tests_pass_on_python_3_9(py39_image: str, zipapp: Path) -> None:
    # The zipapp's dependency set is resolved for Python 3.9: the same one serves the tests.
    (deps,) = (REPO_ROOT / ".cache" / "zipapp-deps").glob("*/site")
    done = run39(
        py39_image,
        "python3",
        "-m",
        "pytest",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-q",
        *NO_REGISTRY_TESTS,
        mounts={REPO_ROOT: "/src:ro", deps: "/deps:ro"},
        workdir="/src",
        env=("PYTHONPATH=/deps:/src", "PYTHONDONTWRITEBYTECODE=1"),
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1]
