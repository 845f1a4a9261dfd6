"""`bindimg add` on units that need no registry: pins already in place, and every refusal.

Each refusal must exit 2 with one line naming the file (and line) and leave the root exactly
as it was; each success is checked byte for byte.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.kit import BOUND, D1, D2, QDIR, STORAGE, image_lines, run_bindimg, snapshot, write


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / QDIR).mkdir(parents=True)
    return r


def add(root: Path, *units: str | Path, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    done = run_bindimg("add", "--root", str(root), *extra, *(str(u) for u in units))
    return done.code, done.out, done.err


def refused(
    root: Path, unit: Path, *, line: int | None = None, needle: str = "", named: Path | None = None
) -> str:
    before = snapshot(root.parent)
    code, out, err = add(root, unit)
    assert code == 2, err
    assert out == ""
    assert snapshot(root.parent) == before
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    named = named or unit
    where = f"{named}:{line}: " if line is not None else f"{named}: "
    assert lines[0].startswith("bindimg: error: " + where), lines[0]
    assert needle in lines[0]
    return lines[0]


def test_pinned_unit_gets_storage_args_and_link(root: Path) -> None:
    text = f"[Container]\nImage=quay.io/org/app@{D1}\nExec=true\n"
    unit = write(root, f"{QDIR}/app.container", text)
    code, out, err = add(root, unit)
    assert (code, err) == (0, "")
    assert image_lines(out) == [f"changed {unit} quay.io/org/app@{D1}"]
    assert unit.read_text() == f"[Container]\nImage=quay.io/org/app@{D1}\n{STORAGE}\nExec=true\n"
    link = root / BOUND / "app.container"
    assert os.readlink(link) == "/usr/share/containers/systemd/app.container"


def test_non_canonical_pin_is_canonicalised_with_provenance(root: Path) -> None:
    text = f"[Image]\r\nImage=index.docker.io/alpine:3.20@{D1}\r\n"
    unit = write(root, f"{QDIR}/alpine.image", text)
    code, out, _ = add(root, unit)
    assert code == 0
    assert (
        unit.read_bytes()
        == (
            f"[Image]\r\n# bindimg: pinned from index.docker.io/alpine:3.20@{D1}\r\n"
            f"Image=docker.io/library/alpine@{D1}\r\n"
        ).encode()
    )
    assert image_lines(out) == [f"changed {unit} docker.io/library/alpine@{D1}"]


def test_second_run_is_unchanged_to_the_byte_and_mtime(root: Path) -> None:
    unit = write(root, f"{QDIR}/app.container", f"[Container]\n  Image = docker.io/x/y:1@{D1}  \n")
    assert add(root, unit)[0] == 0
    first = snapshot(root)
    code, out, _ = add(root, unit, extra=("--json",))
    assert code == 0
    assert json.loads(out) == {
        "dry_run": False,
        "images": [
            {
                "quadlet": str(unit),
                "source": f"docker.io/x/y@{D1}",
                "image": f"docker.io/x/y@{D1}",
                "digest": D1,
                "type": "logical",
                "changed": False,
            }
        ],
        "files": [],
        "links": [],
        "podman": {"version": None, "source": "default"},  # no podman package in this root
    }
    assert snapshot(root) == first
    assert unit.read_text() == (
        f"[Container]\n  # bindimg: pinned from docker.io/x/y:1@{D1}\n"
        f"  Image = docker.io/x/y@{D1}  \n  {STORAGE}\n"
    )


def test_provenance_comment_is_replaced_not_duplicated(root: Path) -> None:
    unit = write(
        root,
        f"{QDIR}/app.image",
        f"[Image]\n# bindimg: pinned from quay.io/a/b:1\nImage=quay.io/a/b:2@{D2}\n",
    )
    assert add(root, unit)[0] == 0
    assert unit.read_text() == f"[Image]\n# bindimg: pinned from quay.io/a/b:1\nImage=quay.io/a/b@{D2}\n"


def test_container_naming_an_image_unit_links_the_image_unit(root: Path) -> None:
    image = write(root, f"{QDIR}/base.image", f"[Image]\nImage=quay.io/org/base@{D1}\n")
    container = write(root, f"{QDIR}/web.container", "[Container]\nImage=base.image\n")
    code, out, _ = add(root, container)
    assert code == 0
    assert image_lines(out) == [f"changed {image} quay.io/org/base@{D1}"]
    assert sorted(os.listdir(root / BOUND)) == ["base.image"]
    assert os.readlink(root / BOUND / "base.image") == "/usr/share/containers/systemd/base.image"
    assert container.read_text() == f"[Container]\nImage=base.image\n{STORAGE}\n"
    assert image.read_text() == f"[Image]\nImage=quay.io/org/base@{D1}\n"


def test_unit_outside_the_root_is_installed_and_source_untouched(tmp_path: Path, root: Path) -> None:
    src = write(tmp_path, "src/app.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    write(tmp_path, "src/db.image", f"[Image]\nImage=quay.io/o/db@{D2}\n")
    web = write(tmp_path, "src/web.container", "[Container]\nImage=db.image\n")
    before = src.read_bytes()
    code, out, err = add(root, src, web, extra=("--no-storage-args",))
    assert code == 0, err
    assert src.read_bytes() == before
    installed = root / QDIR
    assert (installed / "app.container").read_bytes() == before
    assert (installed / "db.image").read_text() == f"[Image]\nImage=quay.io/o/db@{D2}\n"
    assert (installed / "web.container").read_text() == "[Container]\nImage=db.image\n"
    assert sorted(os.listdir(root / BOUND)) == ["app.container", "db.image"]
    assert image_lines(out) == [
        f"changed {installed / 'app.container'} quay.io/o/a@{D1}",
        f"changed {installed / 'db.image'} quay.io/o/db@{D2}",
    ]


def test_dry_run_prints_a_diff_and_writes_nothing(root: Path) -> None:
    unit = write(root, f"{QDIR}/app.container", f"[Container]\nImage=quay.io/o/a:1@{D1}\n")
    before = snapshot(root)
    code, out, err = add(root, unit, extra=("--dry-run",))
    assert code == 0
    assert err == "bindimg: dry run, nothing written: 1 file and 1 link would change\n"
    assert snapshot(root) == before
    link = root / BOUND / "app.container"
    assert out == (
        f"--- {unit}\n+++ {unit}\n@@ -1,2 +1,4 @@\n [Container]\n"
        f"-Image=quay.io/o/a:1@{D1}\n"
        f"+# bindimg: pinned from quay.io/o/a:1@{D1}\n"
        f"+Image=quay.io/o/a@{D1}\n"
        f"+{STORAGE}\n"
        f"--- /dev/null\n+++ {link}\n@@ -0,0 +1 @@\n"
        "+/usr/share/containers/systemd/app.container\n\\ No newline at end of file\n"
    )


def test_symlinked_quadlet_dir_resolves_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/share/containers").mkdir(parents=True)
    # An absolute target means "from the image root", as bootc's RESOLVE_IN_ROOT reads it.
    os.symlink("/../../../opt/quadlets", root / "usr/share/containers/systemd")
    unit = write(root, "opt/quadlets/app.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    outside = write(tmp_path, "opt/quadlets/app.container", "[Container]\nImage=untouched\n")
    code, _, err = add(root, root / "usr/share/containers/systemd/app.container")
    assert code == 0, err
    assert unit.read_text() == f"[Container]\nImage=quay.io/o/a@{D1}\n{STORAGE}\n"
    assert outside.read_text() == "[Container]\nImage=untouched\n"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (f"[Container]\nImage=quay.io/o/a@{D1} # pinned\n", 2, "bootc reads 'quay.io/o/a@"),
        (f'[Container]\nImage="quay.io/o/a@{D1}"\n', 2, "but bootc reads '\"quay.io"),
        (f"[Container]\nImage=quay.io/o/\\\n  a@{D1}\n", 3, "bootc cannot read this unit"),
        (f"[Container]\nImage=quay.io/o/a@{D1};x\n", 2, "bootc reads 'quay.io/o/a@"),
        ("[Container]\nExec=true\n", None, "no Image= in [Container]"),
        ("[Container]\nImage=\n", 2, "no Image= in [Container]"),
        ("[Container]\nImage=quay.io/o/a:%i\n", 2, "specifier"),
        ("[Container]\nImage=${REG}/a:1\n", 2, "specifier"),
        ("[Container]\nImage=alpine:3\n", 2, "not fully qualified"),
        ("[Container]\nImage=quay.io/O/a:1\n", 2, "not a valid image reference"),
        ("[Container]\nImage=quay.io/o/a@sha256:abc\n", 2, "not a valid image reference"),
        ("[Container]\nImage=app.build\n", 2, "names a .build unit"),
        ("[Container]\nImage=missing.image\n", 2, "in no Quadlet directory"),
        ("[Container]\nImage=docker-archive:/a.tar\n", 2, "not a registry image"),
        ("[Container]\nImage\n", 2, "not a key-value pair"),
    ],
)
def test_refusals_name_file_and_line(root: Path, text: str, line: int | None, needle: str) -> None:
    unit = write(root, f"{QDIR}/app.container", text)
    refused(root, unit, line=line, needle=needle)


def test_image_set_by_a_dropin_is_refused(root: Path) -> None:
    unit = write(root, f"{QDIR}/app.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    dropin = write(root, f"{QDIR}/app.container.d/10-image.conf", f"[Container]\nImage=quay.io/o/b@{D2}\n")
    before = snapshot(root)
    code, _, err = add(root, unit)
    assert code == 2
    assert err == (
        f"bindimg: error: {dropin}:2: Image= is set by this drop-in, which bootc does not read; "
        "move it into the unit file\n"
    )
    assert snapshot(root) == before


def test_bound_image_unit_with_authfile_is_refused(root: Path) -> None:
    unit = write(root, f"{QDIR}/a.image", f"[Image]\nImage=quay.io/o/a@{D1}\nAuthFile=/etc/a.json\n")
    refused(root, unit, line=3, needle="AuthFile=")


def test_bom_and_invalid_utf8_are_refused(root: Path) -> None:
    bom = write(
        root,
        f"{QDIR}/a.container",
        b"\xef\xbb\xbf[Container]\nImage=quay.io/o/a@" + D1.encode() + b"\n",
    )
    refused(root, bom, line=1, needle="byte-order mark")
    bad = write(root, f"{QDIR}/b.container", b"[Container]\nDescription=\xff\n")
    refused(root, bad, line=2, needle="UTF-8")


def test_regular_file_in_bound_images_d_is_refused(root: Path) -> None:
    unit = write(root, f"{QDIR}/app.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    write(root, f"{BOUND}/app.container", "not a link")
    refused(root, unit, named=root / BOUND / "app.container", needle="is not a symlink")


def test_shadowed_unit_is_refused(root: Path) -> None:
    write(root, "etc/containers/systemd/app.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    unit = write(root, f"{QDIR}/app.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    refused(root, unit, needle="Quadlet would use")


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/share/containers").mkdir(parents=True)
    os.symlink("/usr/share/containers/systemd", root / "usr/share/containers/systemd")
    src = write(tmp_path, "app.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    before = snapshot(tmp_path)
    code, _, err = add(root, src)
    assert code == 2
    assert "too many levels of symbolic links" in err
    assert len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["app.kube", "app.volume", "app.conf"])
def test_other_unit_kinds_are_refused(root: Path, name: str) -> None:
    unit = write(root, f"{QDIR}/{name}", "[Kube]\nYaml=a.yml\n")
    refused(root, unit, needle="not a .container or .image unit")


def test_missing_file_is_refused(root: Path) -> None:
    refused(root, root / QDIR / "nope.container", needle="no such unit file")


@pytest.mark.parametrize("command", [[], ["add"], ["lock"], ["lint"], ["list"], ["store", "init"]])
def test_every_command_takes_version(command: list[str]) -> None:
    from bindimg import __version__

    done = run_bindimg(*command, "--version")
    assert (done.code, done.out, done.err) == (0, f"bindimg {__version__}\n", "")
