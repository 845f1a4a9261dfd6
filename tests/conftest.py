"""Fixtures for tests against real components: podman, skopeo and a registry container.

Run the tests with ``./scripts/test [pytest args]``: it installs the tools, builds the
local test images, starts podman's Docker-compatible API service and exports DOCKER_HOST,
CONTAINERS_CONF and the testcontainers settings. Without that environment every fixture
that needs it *fails* (never skips) and says so.

Fixtures:

* ``registry`` (session): one registry container shared by all tests. Tests that push to
  it use their own repository (``unique_repo``), never the ``test/...`` repos of ``images``.
* ``fresh_registry`` (function): a registry container of the test's own, e.g. to stop it
  mid-test; removed at teardown if still running.
* ``images`` (session): ``PushedImages`` pushed once into ``registry``: ``app``
  (``test/app:1.0``, one platform, two layers), ``multi`` (``test/multi:1.0``, an index for
  linux/amd64 + linux/arm64), ``whiteout`` (``test/whiteout:1.0``, second layer deletes
  ``/etc/gone``), ``opaque`` (``test/opaque:1.0``, second layer makes
  ``/var/lib/bindimg-test`` opaque).
* ``unique_repo`` (function): a repository name no other test uses.
* ``zipapp`` (session): path of ``dist/bindimg.pyz`` (built by scripts/zipapp when missing
  or older than a source file).
* ``base_image`` (session): the local base image (python3 + skopeo), from
  ``BINDIMG_TEST_BASE_IMAGE``.

Tests using any of these (but ``zipapp``) are marked ``e2e`` automatically.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ociimage
from tests.registry import PushedImages, Registry, remove_stale_containers

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_IMAGE = "localhost/bindimg-test-base:latest"
E2E_FIXTURES = frozenset({"registry", "fresh_registry", "images", "unique_repo", "base_image"})


def require_e2e_env() -> None:
    """Fail (never skip) unless ./scripts/test set up the real components."""
    problems = []
    if not os.environ.get("DOCKER_HOST"):
        problems.append("DOCKER_HOST is not set")
    problems += [f"{tool} is not installed" for tool in ("podman", "skopeo") if not shutil.which(tool)]
    if problems:
        pytest.fail(
            "the e2e test environment is not set up ("
            + "; ".join(problems)
            + "): run the tests with ./scripts/test [pytest args], which installs the tools, "
            "builds the test images and starts the podman API service",
            pytrace=False,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def _e2e_env() -> None:
    require_e2e_env()
    removed = remove_stale_containers()
    if removed:
        print(f"removed test containers left by a killed run: {', '.join(removed)}")


@pytest.fixture(scope="session")
def registry(_e2e_env: None) -> Iterator[Registry]:
    reg = Registry().start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def fresh_registry(_e2e_env: None) -> Iterator[Registry]:
    reg = Registry().start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def images(registry: Registry) -> PushedImages:
    return PushedImages(
        app=registry.push_image(ociimage.app_image("app-1.0"), "test/app", "1.0"),
        multi=registry.push_image(ociimage.multiarch_index("multi-1.0"), "test/multi", "1.0"),
        whiteout=registry.push_image(ociimage.whiteout_image("whiteout-1.0"), "test/whiteout", "1.0"),
        opaque=registry.push_image(ociimage.opaque_image("opaque-1.0"), "test/opaque", "1.0"),
    )


_repo_counter = itertools.count(1)


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60].strip("-")
    return f"t/{name or 'test'}-{next(_repo_counter)}"


def _stale(target: Path, sources: list[Path]) -> bool:
    if not target.exists():
        return True
    built = target.stat().st_mtime
    return any(src.stat().st_mtime > built for src in sources)


@pytest.fixture(scope="session")
def zipapp() -> Path:
    pyz = REPO_ROOT / "dist" / "bindimg.pyz"
    sources = [REPO_ROOT / "scripts" / "zipapp", *sorted((REPO_ROOT / "bindimg").rglob("*.py"))]
    if _stale(pyz, sources):
        proc = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "zipapp")],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not pyz.exists():
            pytest.fail(
                f"scripts/zipapp failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}",
                pytrace=False,
            )
    return pyz


@pytest.fixture(scope="session")
def base_image(_e2e_env: None) -> str:
    name = os.environ.get("BINDIMG_TEST_BASE_IMAGE") or DEFAULT_BASE_IMAGE
    if subprocess.run(["podman", "image", "exists", name], check=False).returncode != 0:
        pytest.fail(
            f"test base image {name} is missing: run ./scripts/test, which builds it",
            pytrace=False,
        )
    return name
