"""The shipped examples, run as a user would run them, with the public parts made local.

This machine reaches no public registry: an example's `FROM quay.io/…-bootc` becomes the
local base image, `registry.example.com/` the test registry (marked insecure in the
image's registries.conf.d, as a plain-HTTP registry must be); nothing else changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests import buildimage, ociimage
from tests.kit import QDIR, STORAGE, run_bindimg
from tests.registry import Registry

EXAMPLES = buildimage.REPO_ROOT / "examples"


def localise(text: str, host: str) -> str:
    return text.replace("registry.example.com/", f"{host}/")


def test_logical_example_containerfile(
    tmp_path: Path, zipapp: Path, base_image: str, registry: Registry
) -> None:
    pushed = registry.push_image(ociimage.app_image("example-hello"), "examples/hello", "1.0")
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(zipapp, context / "bindimg.pyz")
    unit = (EXAMPLES / "logical/hello.container").read_text()
    (context / "hello.container").write_text(localise(unit, registry.host))
    (context / "insecure.conf").write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    containerfile = (EXAMPLES / "logical/Containerfile").read_text()
    containerfile, count = re.subn(
        r"^FROM \S+$",
        f"FROM {base_image}\nCOPY insecure.conf /etc/containers/registries.conf.d/99-test.conf",
        containerfile,
        flags=re.M,
    )
    assert count == 1
    (context / "Containerfile").write_text(containerfile)
    tag = "localhost/bindimg-example-logical:test"
    subprocess.run(
        ["podman", "build", "-q", "--network=host", "--pull=never", "--no-cache", "-t", tag, str(context)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    try:
        tree = buildimage.read_tree(tag, QDIR, "usr/lib/bootc/bound-images.d", "usr/local/bin")
    finally:
        buildimage.remove(tag)
    pinned = f"{pushed.host}/{pushed.repo}@{pushed.digest}"
    expected = localise(unit, registry.host).replace(
        f"Image={pushed.ref}\n", f"# bindimg: pinned from {pushed.ref}\nImage={pinned}\n{STORAGE}\n"
    )
    assert tree[f"{QDIR}/hello.container"] == expected.encode()
    link = tree["usr/lib/bootc/bound-images.d/hello.container"]
    assert isinstance(link, tarfile.TarInfo)
    assert link.linkname == "/usr/share/containers/systemd/hello.container"
    assert "usr/local/bin/bindimg" not in tree  # the example removes the tool again


def workflow_commands() -> list[str]:
    """The `run:` steps of the example CI workflow, in order."""
    text = (EXAMPLES / "ci/github-workflow.yml").read_text()
    return [m.group(1).strip() for m in re.finditer(r"^\s+run: (.+)$", text, flags=re.M)]


def test_ci_workflow_steps_pass_on_a_locked_tree_and_fail_on_a_stale_lock(
    tmp_path: Path, zipapp: Path, registry: Registry, unique_repo: str
) -> None:
    pushed = registry.push_image(ociimage.app_image("example-ci"), unique_repo, "1.0")
    repo = tmp_path / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(zipapp, repo / "tools/bindimg.pyz")
    unit = repo / "quadlets/hello.container"
    unit.parent.mkdir()
    unit.write_text(
        (EXAMPLES / "logical/hello.container")
        .read_text()
        .replace("registry.example.com/examples/hello:1.0", pushed.ref)
    )
    done = run_bindimg(
        "lock", "--no-tls-verify", "--rewrite", "--lock", str(repo / "bindimg.lock"), str(repo)
    )
    assert done.code == 0, done.err
    commands = workflow_commands()
    assert [c.split()[2] for c in commands] == ["lock", "lint", "lint"]
    for command in commands:
        step = subprocess.run(["bash", "-ec", command], cwd=repo, capture_output=True, text=True, check=False)
        assert step.returncode == 0, (command, step.stdout, step.stderr)
    assert (repo / "bindimg.sarif").read_text().startswith("{")

    unit.write_text(unit.read_text().replace(pushed.repo, pushed.repo + "-moved"))
    check = subprocess.run(
        ["bash", "-ec", commands[0]], cwd=repo, capture_output=True, text=True, check=False
    )
    assert check.returncode == 1
    assert "lock-stale" in check.stdout and "lock-missing" in check.stdout
    lint = subprocess.run(["bash", "-ec", commands[1]], cwd=repo, capture_output=True, text=True, check=False)
    assert lint.returncode == 1
    annotations = lint.stdout.splitlines()
    assert [a.split(",", 1)[0] for a in annotations] == [
        "::error file=bindimg.lock",
        "::error file=quadlets/hello.container",
    ]
    assert [a.split("title=", 1)[1].split("::", 1)[0] for a in annotations] == ["lock-stale", "lock-missing"]


EMBED_STORE = "GlobalArgs=--storage-opt=additionalimagestore=/usr/lib/containers/storage"


def build_example(
    tmp_path: Path, zipapp: Path, base_image: str, registry: Registry, example: str, units: dict[str, str]
) -> dict[str, bytes | tarfile.TarInfo]:
    """Build examples/EXAMPLE/Containerfile with every `FROM` made local: the units and the
    store's index afterwards. Neither bindimg nor a bound-images.d link is left in the image."""
    context = tmp_path / "context"
    context.mkdir(parents=True)
    shutil.copy(zipapp, context / "bindimg.pyz")
    for name, text in units.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(text)
    (context / "insecure.conf").write_text(f'[[registry]]\nlocation = "{registry.host}"\ninsecure = true\n')
    containerfile = re.sub(
        r"^FROM \S+( AS \S+)?$",
        lambda m: (
            f"FROM {base_image}{m.group(1) or ''}\n"
            "COPY insecure.conf /etc/containers/registries.conf.d/99-test.conf"
        ),
        (EXAMPLES / example / "Containerfile").read_text(),
        flags=re.M,
    )
    (context / "Containerfile").write_text(containerfile)
    tag = f"localhost/bindimg-example-{example}:test"
    build = ["podman", "build", "-q", "--network=host", "--pull=never", "--no-cache", "--layers=false"]
    subprocess.run([*build, "-t", tag, str(context)], check=True, capture_output=True, timeout=600)
    try:
        absent = "test ! -e /usr/lib/bootc/bound-images.d && test ! -e /usr/local/bin/bindimg"
        check = subprocess.run(
            ["podman", "run", "--rm", "--network=none", tag, "sh", "-c", absent], check=False
        )
        assert check.returncode == 0, f"{example}: bindimg or a bound-images.d link is left in the image"
        return buildimage.read_tree(tag, QDIR, "usr/lib/containers/storage/overlay-images")
    finally:
        buildimage.remove(tag)


def test_embedded_and_multi_stage_example_containerfiles(
    tmp_path: Path, zipapp: Path, base_image: str, registry: Registry
) -> None:
    pushed = registry.push_image(ociimage.app_image("example-embedded"), "examples/hello", "1.0")
    pinned = f"{pushed.host}/{pushed.repo}@{pushed.digest}"
    for example, unit_path in (("embedded", "hello.container"), ("multi-stage", "quadlets/hello.container")):
        unit = localise((EXAMPLES / example / unit_path).read_text(), registry.host)
        tree = build_example(tmp_path / example, zipapp, base_image, registry, example, {unit_path: unit})
        expected = unit.replace(
            f"Image={pushed.ref}\n",
            f"# bindimg: pinned from {pushed.ref}\nImage={pinned}\n{EMBED_STORE}\nPull=never\n",
        )
        assert tree[f"{QDIR}/hello.container"] == expected.encode(), example
        images = tree["usr/lib/containers/storage/overlay-images/images.json"]
        assert isinstance(images, bytes) and pinned in images.decode(), example
