"""A real distribution registry in a container (testcontainers) plus skopeo helpers.

The container runs through the Docker-compatible API named by ``DOCKER_HOST`` (podman's
service, started by ``./scripts/test``). The registry speaks plain HTTP on 127.0.0.1, so
every skopeo call here passes ``--tls-verify=false`` / ``--dest-tls-verify=false``.

Containers are labelled ``bindimg.test.owner=<pid>/<start time>`` of the process whose
life bounds them (``BINDIMG_TEST_OWNER`` from ``./scripts/test``, else this pytest), so a
later run can remove the ones a killed run left behind (``remove_stale_containers``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from tests.ociimage import Image, Index, write_layout

DEFAULT_REGISTRY_IMAGE = "localhost/bindimg-test-registry:latest"
REGISTRY_PORT = 5000
OWNER_LABEL = "bindimg.test.owner"
SKOPEO_TIMEOUT = 300.0

PathLike = Union[str, "os.PathLike[str]"]


class SkopeoError(RuntimeError):
    """A skopeo command failed; ``returncode`` and ``stderr`` say how."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.args_list = args
        self.returncode = returncode
        self.stderr = stderr


def skopeo(*args: str, timeout: float = SKOPEO_TIMEOUT) -> bytes:
    """Run ``skopeo ARGS``; return stdout, raise ``SkopeoError`` on a non-zero exit."""
    cmd = ["skopeo", *args]
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise SkopeoError(cmd, proc.returncode, proc.stderr.decode(errors="replace"))
    return proc.stdout


def _process_identity(pid: int) -> Optional[str]:
    """``pid/starttime`` of a live process (start time tells a reused pid apart), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return f"{pid}/{fields[19]}"  # field 22 of stat: starttime


def owner_identity() -> str:
    """The owner label for containers started now."""
    return os.environ.get("BINDIMG_TEST_OWNER") or _process_identity(os.getpid()) or "unknown"


def owner_alive(owner: str) -> bool:
    pid, _, _ = owner.partition("/")
    return pid.isdigit() and _process_identity(int(pid)) == owner


def remove_stale_containers() -> list[str]:
    """Remove test containers whose owning process is gone; return their names."""
    import docker  # type: ignore[import-untyped]  # the docker SDK comes with testcontainers

    client = docker.from_env()
    removed = []
    try:
        for container in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
            owner = container.labels.get(OWNER_LABEL, "")
            if not owner_alive(owner):
                container.remove(force=True, v=True)
                removed.append(container.name)
    finally:
        client.close()
    return removed


@dataclass(frozen=True)
class PushedImage:
    """An image pushed to a registry, with the digest the registry serves for it."""

    host: str
    repo: str
    tag: str
    digest: str  # sha256 of the raw manifest bytes the registry returns for repo:tag
    content: Union[Image, Index]  # what was pushed (its .digest is the locally built one)

    @property
    def ref(self) -> str:
        """``HOST/repo:tag``."""
        return f"{self.host}/{self.repo}:{self.tag}"

    @property
    def by_digest(self) -> str:
        """``HOST/repo@sha256:…``."""
        return f"{self.host}/{self.repo}@{self.digest}"

    @property
    def pinned(self) -> str:
        """``HOST/repo:tag@sha256:…``: the tag kept for readers, the digest in force."""
        return f"{self.ref}@{self.digest}"


@dataclass(frozen=True)
class PushedImages:
    """What the ``images`` fixture pushed into the shared registry."""

    app: PushedImage  # test/app:1.0, linux/amd64, 2 layers
    multi: PushedImage  # test/multi:1.0, index of linux/amd64 + linux/arm64
    whiteout: PushedImage  # test/whiteout:1.0, layer 2 deletes /etc/gone
    opaque: PushedImage  # test/opaque:1.0, layer 2 makes /var/lib/bindimg-test opaque


def _ref(host: str, repo: str, ref: str) -> str:
    sep = "@" if ref.startswith("sha256:") else ":"
    return f"{host}/{repo}{sep}{ref}"


class Registry:
    """A registry container: ``start()``, ``host``, push and inspect helpers, ``stop()``."""

    def __init__(self, image: Optional[str] = None, *, startup_timeout: float = 60.0) -> None:
        self.image = image or os.environ.get("BINDIMG_TEST_REGISTRY_IMAGE") or DEFAULT_REGISTRY_IMAGE
        self.startup_timeout = startup_timeout
        self._container: Any = None
        self._host: Optional[str] = None

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> Registry:
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(self.image).with_exposed_ports(REGISTRY_PORT)
        container.with_kwargs(labels={OWNER_LABEL: owner_identity()})
        self._container = container
        try:
            container.start()
            ip = container.get_container_host_ip()
            port = container.get_exposed_port(REGISTRY_PORT)
            self._host = f"{ip}:{port}"
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        url = f"http://{self.host}/v2/"
        deadline = time.monotonic() + self.startup_timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last = exc
            time.sleep(0.1)
        logs = ""
        try:
            out, err = self._container.get_logs()
            logs = (out + err).decode(errors="replace")[-2000:]
        except Exception as exc:  # the logs only decorate the error
            logs = f"(no logs: {exc})"
        raise RuntimeError(
            f"registry {self.image} did not answer GET {url} with 200 within "
            f"{self.startup_timeout:.0f}s (last: {last}); container logs:\n{logs}"
        )

    def stop(self) -> None:
        """Remove the container (idempotent); its content is gone with it."""
        container, self._container = self._container, None
        if container is not None:
            container.stop()

    @property
    def running(self) -> bool:
        return self._container is not None

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ----------------------------------------------------------------

    @property
    def host(self) -> str:
        """``127.0.0.1:<mapped port>``: the registry part of image references.

        It stays known after ``stop()``, so a test can show that the address fails.
        """
        if self._host is None:
            raise RuntimeError("registry not started")
        return self._host

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repo: str, ref: str) -> str:
        """``HOST/repo:tag`` or, for a ``sha256:`` ref, ``HOST/repo@sha256:…``."""
        return _ref(self.host, repo, ref)

    # --- push ---------------------------------------------------------------------

    def push_layout(self, layout_dir: PathLike, layout_tag: str, repo: str, tag: str) -> str:
        """Copy ``oci:layout_dir:layout_tag`` (all platforms) to ``repo:tag``.

        Pushing to a tag that exists moves it. Returns the pushed manifest's digest as the
        registry serves it (sha256 of ``raw_manifest``).
        """
        skopeo(
            "copy",
            "--all",
            "--quiet",
            "--dest-tls-verify=false",
            f"oci:{os.fspath(layout_dir)}:{layout_tag}",
            f"docker://{self.ref(repo, tag)}",
        )
        return self.digest(repo, tag)

    def push(self, content: Union[Image, Index], repo: str, tag: str) -> str:
        """Write ``content`` to a temporary OCI layout and push it; return the digest."""
        tmp = tempfile.mkdtemp(prefix="bindimg-layout-")
        try:
            write_layout(tmp, "push", content)
            return self.push_layout(tmp, "push", repo, tag)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    move_tag = push  # a tag moves by pushing another image to it

    def push_image(self, content: Union[Image, Index], repo: str, tag: str) -> PushedImage:
        """``push`` returning a ``PushedImage`` (reference, digest, content)."""
        digest = self.push(content, repo, tag)
        return PushedImage(self.host, repo, tag, digest, content)

    # --- inspect / delete ---------------------------------------------------------

    def raw_manifest(self, repo: str, ref: str) -> bytes:
        """The manifest (or index) bytes the registry serves for ``repo:ref``."""
        return skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{self.ref(repo, ref)}")

    def digest(self, repo: str, ref: str) -> str:
        """``sha256:`` + sha256 of the raw manifest: the digest of ``repo:ref``."""
        return "sha256:" + hashlib.sha256(self.raw_manifest(repo, ref)).hexdigest()

    def inspect(self, repo: str, ref: str) -> dict[str, Any]:
        """``skopeo inspect`` (for an index: the image for this machine's platform)."""
        out = skopeo("inspect", "--tls-verify=false", f"docker://{self.ref(repo, ref)}")
        result: dict[str, Any] = json.loads(out)
        return result

    def tags(self, repo: str) -> list[str]:
        out = skopeo("list-tags", "--tls-verify=false", f"docker://{self.host}/{repo}")
        tags: list[str] = json.loads(out).get("Tags") or []
        return sorted(tags)

    def blob(self, repo: str, digest: str) -> bytes:
        """A blob (layer or config) of ``repo``, fetched over the registry's HTTP API."""
        url = f"{self.url}/v2/{repo}/blobs/{digest}"
        with urllib.request.urlopen(url, timeout=60) as resp:
            data: bytes = resp.read()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise RuntimeError(f"blob {digest} of {repo}: content does not match the digest")
        return data

    def delete(self, repo: str, ref: str) -> None:
        """Delete the manifest ``repo:ref`` (a tag is resolved to its digest first)."""
        skopeo("delete", "--tls-verify=false", f"docker://{self.ref(repo, ref)}")
