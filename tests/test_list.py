"""`bindimg list`: units read as Podman Quadlet reads them, roots read as bootc reads them.

Source cases follow quadlet-and-image-references.md §1-2 rule by rule (continuations,
quotes, comments, drop-ins, `.image` references); root cases follow bootc's
`query_bound_images`, including its failures and their exact words.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Optional, Union

import pytest

from bindimg.commands.list import list_root, list_units
from bindimg.errors import InputError
from bindimg.rootfs import Root, root_display
from tests.kit import BOUND, D1, D2, QDIR, link, run_bindimg, store, write

Item = tuple[str, str, int]  # image, quadlet, line


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def units(*paths: str) -> list[tuple[str, Optional[str], Optional[int]]]:
    return [(i.image, i.quadlet, i.line) for i in list_units(list(paths) or ["q"])]


# --- one unit: continuations, quotes, comments (§1) --------------------------------------------

ONE_UNIT = [
    # continuation: pieces joined with nothing between them, the value starts on its first line
    ("cont-join", "[Container]\nImage=quay.io/\\\n   o/a:1\n", "quay.io/o/a:1", 2),
    ("cont-space-kept", "[Container]\nImage=quay.io/o/a:1 \\\n  x\n", "quay.io/o/a:1 x", 2),
    ("cont-trailing-blanks", "[Container]\nImage=quay.io/\\   \n  o/a:1\n", "quay.io/o/a:1", 2),
    ("cont-escaped-backslash", "[Container]\nImage=quay.io/o/a\\\\\n:1\n", "quay.io/o/a\\:1", 2),
    ("cont-comments-skipped", "[Container]\nImage=quay.io/\\\n# c\n; c\n  o/a:1\n", "quay.io/o/a:1", 2),
    (
        "cont-blank-line-swallows",
        "[Container]\nImage=quay.io/o/first:1\nExec=a \\\n\nImage=quay.io/o/second:1\n",
        "quay.io/o/first:1",
        2,
    ),
    ("cont-last-line", "[Container]\nImage=quay.io/o/a:1\\", "quay.io/o/a:1", 2),
    (
        "cont-dangling-dropped",
        "[Container]\nImage=quay.io/o/a:1\nImage=quay.io/o/b:1 \\\n\n# end\n",
        "quay.io/o/a:1",
        2,
    ),
    ("cont-group-header", "[Cont\\\nainer]\nImage=quay.io/o/a:1\n", "quay.io/o/a:1", 3),
    ("crlf", "[Container]\r\nImage=quay.io/o/a:1\r\n", "quay.io/o/a:1", 2),
    # Lookup: trailing blanks trimmed, one "..." pair stripped, nothing else
    ("spaces", "[Container]\n  Image =   quay.io/o/a:1   \n", "quay.io/o/a:1", 2),
    ("double-quotes", '[Container]\nImage="quay.io/o/a:1"\n', "quay.io/o/a:1", 2),
    ("single-quotes", "[Container]\nImage='quay.io/o/a:1'\n", "'quay.io/o/a:1'", 2),
    ("unmatched-quote", '[Container]\nImage="quay.io/o/a:1\n', '"quay.io/o/a:1', 2),
    ("inline-comment-kept", "[Container]\nImage=quay.io/o/a:1 # c\n", "quay.io/o/a:1 # c", 2),
    ("comment-lines", "[Container]\n# Image=x\n; Image=y\nImage=quay.io/o/a:1\n", "quay.io/o/a:1", 4),
    # the last assignment wins, repeated groups merge, keys are case-sensitive
    (
        "last-wins-groups-merge",
        "[Container]\nImage=quay.io/o/a:1\n[Service]\nRestart=always\n[Container]\nImage=quay.io/o/b:1\n",
        "quay.io/o/b:1",
        6,
    ),
    ("case-sensitive", "[Container]\nImage=quay.io/o/a:1\nimage=quay.io/o/x:1\n", "quay.io/o/a:1", 2),
]


@pytest.mark.parametrize(("text", "image", "line"), [c[1:] for c in ONE_UNIT], ids=[c[0] for c in ONE_UNIT])
def test_one_unit(here: Path, text: str, image: str, line: int) -> None:
    write(here, "q/app.container", text)
    assert units() == [(image, "q/app.container", line)]


def test_blank_line_in_a_continuation_can_swallow_the_only_image(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nExec=a \\\n\nImage=quay.io/o/a:1\n")
    with pytest.raises(InputError, match=r"no Image= in \[Container\]"):
        units()


def test_unit_kinds(here: Path) -> None:
    write(here, "q/a.image", "[Image]\nImage=quay.io/o/a:1\nImageTag=quay.io/o/a:tagged\n")
    write(here, "q/b.volume", "[Volume]\nDriver=image\nImage=quay.io/o/b:1\n")
    write(here, "q/c.volume", "[Volume]\nImage=quay.io/o/ignored:1\n")
    write(here, "q/d.container", "[Container]\nRootfs=/srv/root\n")
    write(here, "q/e.kube", "[Kube]\nYaml=e.yml\n")
    assert units() == [("quay.io/o/a:1", "q/a.image", 2), ("quay.io/o/b:1", "q/b.volume", 3)]


# --- drop-ins (§2.7) ---------------------------------------------------------------------------


def test_dropin_overrides_and_names_its_own_line(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "q/app.container.d/10-image.conf", "# override\n[Container]\nImage=quay.io/o/b:1\n")
    assert units() == [("quay.io/o/b:1", "q/app.container.d/10-image.conf", 3)]


def test_dropins_merge_in_bytewise_order(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "q/app.container.d/a.conf", "[Container]\nImage=quay.io/o/lower:1\n")
    write(here, "q/app.container.d/B.conf", "[Container]\nImage=quay.io/o/upper:1\n")  # b'B' < b'a'
    write(here, "q/app.container.d/z.txt", "[Container]\nImage=quay.io/o/not-a-conf:1\n")
    assert units() == [("quay.io/o/lower:1", "q/app.container.d/a.conf", 2)]


def test_specific_dropin_masks_a_generic_one_of_the_same_name(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "q/web.container", "[Container]\nImage=quay.io/o/w:1\n")
    write(here, "q/container.d/10.conf", "[Container]\nImage=quay.io/o/generic:1\n")
    write(here, "q/app.container.d/10.conf", "[Container]\nExec=true\n")
    assert units() == [
        ("quay.io/o/a:1", "q/app.container", 2),
        ("quay.io/o/generic:1", "q/container.d/10.conf", 2),
    ]


def test_truncated_and_template_dropin_directories(here: Path) -> None:
    write(here, "q/foo-bar.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "q/foo-.container.d/10.conf", "[Container]\nImage=quay.io/o/truncated:1\n")
    write(here, "q/svc@inst.container", "[Container]\nImage=quay.io/o/s:1\n")
    write(here, "q/svc@.container.d/10.conf", "[Container]\n\nImage=quay.io/o/template:1\n")
    assert units() == [
        ("quay.io/o/truncated:1", "q/foo-.container.d/10.conf", 2),
        ("quay.io/o/template:1", "q/svc@.container.d/10.conf", 3),
    ]


def test_dropins_come_from_every_search_directory(here: Path) -> None:
    write(here, "a/app.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "b/app.container.d/10.conf", "[Container]\nImage=quay.io/o/b:1\n")
    assert units("a", "b") == [("quay.io/o/b:1", "b/app.container.d/10.conf", 2)]


def test_dropin_that_does_not_parse_is_skipped(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "q/app.container.d/10.conf", "[Container]\nImage=quay.io/o/b:1\n")
    write(here, "q/app.container.d/20.conf", "[Container]\nnot a key\n")
    assert units() == [("quay.io/o/b:1", "q/app.container.d/10.conf", 2)]


def test_dropin_emptying_image_makes_quadlet_refuse_the_unit(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "q/app.container.d/10.conf", "[Container]\nImage=\n")
    with pytest.raises(InputError, match="no Image="):
        units()


# --- `.image` and `.build` references (§2.2, §2.3) ---------------------------------------------


def test_image_reference_followed_to_image(here: Path) -> None:
    write(here, "q/base.image", f"[Image]\n\nImage=quay.io/o/base@{D1}\n")
    write(here, "q/web.container", "[Container]\nImage=base.image\n")
    assert units() == [
        (f"quay.io/o/base@{D1}", "q/base.image", 3),
        (f"quay.io/o/base@{D1}", "q/web.container", 2),  # its Image=base.image
    ]


def test_image_reference_followed_to_image_tag(here: Path) -> None:
    write(here, "q/base.image", "[Image]\nImage=docker-archive:/srv/b.tar\nImageTag=quay.io/o/base:1\n")
    write(here, "q/web.container", "[Container]\nImage=base.image\n")
    assert units() == [
        ("docker-archive:/srv/b.tar", "q/base.image", 2),
        ("quay.io/o/base:1", "q/web.container", 2),
    ]


def test_image_reference_sees_the_image_units_dropins(here: Path) -> None:
    write(here, "q/base.image", "[Image]\nImage=quay.io/o/base:1\n")
    write(here, "q/base.image.d/10.conf", f"[Image]\nImage=quay.io/o/base@{D2}\n")
    write(here, "q/web.container", "[Container]\nImage=base.image\n")
    assert units() == [
        (f"quay.io/o/base@{D2}", "q/base.image.d/10.conf", 2),
        (f"quay.io/o/base@{D2}", "q/web.container", 2),
    ]


def test_build_reference_followed_to_its_first_image_tag(here: Path) -> None:
    write(here, "q/app.build", "[Build]\nImageTag=localhost/app:1\nImageTag=localhost/app:latest\n")
    write(here, "q/app.container", "[Container]\nImage=app.build\n")
    assert units() == [("localhost/app:1", "q/app.container", 2)]


def test_reference_to_a_missing_unit_is_refused(here: Path) -> None:
    write(here, "q/web.container", "[Container]\nImage=base.image\n")
    with pytest.raises(InputError, match=r"base\.image names a unit that is in no Quadlet directory"):
        units()


# --- the command line ------------------------------------------------------------------------


def test_cli_json_and_text(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "q/db.image", f"[Image]\nImage=quay.io/o/db@{D1}\n")
    done = run_bindimg("list", "q", "--json")
    assert (done.code, done.err) == (0, "")
    assert json.loads(done.out) == {
        "images": [
            {"type": "unit", "image": "quay.io/o/a:1", "quadlet": "q/app.container", "line": 2},
            {"type": "unit", "image": f"quay.io/o/db@{D1}", "quadlet": "q/db.image", "line": 2},
        ]
    }
    text = run_bindimg("list", "q")
    assert text.out == f"quay.io/o/a:1\tunit\tq/app.container:2\nquay.io/o/db@{D1}\tunit\tq/db.image:2\n"


def test_cli_refused_unit_exits_2(here: Path) -> None:
    write(here, "q/app.container", "[Container]\nImage\n")
    done = run_bindimg("list", "q")
    assert (done.code, done.out) == (2, "")
    assert done.err.startswith(f"bindimg: error: {here}/q/app.container:2: ")
    assert len(done.err.splitlines()) == 1


# --- an image root, read as bootc reads it -----------------------------------------------------


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r" / QDIR).mkdir(parents=True)
    return tmp_path / "r"


def listed(root: Path) -> list[tuple[str, str, Optional[str], Optional[int]]]:
    image_root = Root(str(root))
    return [
        (i.type, i.image, i.quadlet, i.line) for i in list_root(image_root, root_display(image_root, "r"))
    ]


def test_root_lists_bootcs_images_in_readdir_order_then_the_store(root: Path) -> None:
    names = ["a.container", "b.image", "c.container", "d.image", "e.container"]
    for n, name in enumerate(names):
        group = "Image" if name.endswith(".image") else "Container"
        write(root, f"{QDIR}/{name}", f"[{group}]\n\nImage=quay.io/o/{n}@{D1}\n")
        link(root, name, f"/{QDIR}/{name}")
    store(root, f"quay.io/o/e@{D2}", "quay.io/o/f:1")
    order = os.listdir(root / BOUND)  # readdir order, which bootc keeps
    assert listed(root) == [
        *[("logical", f"quay.io/o/{names.index(n)}@{D1}", f"r/{QDIR}/{n}", 3) for n in order],
        ("embedded", f"quay.io/o/e@{D2}", None, None),
        ("embedded", "quay.io/o/f:1", None, None),
    ]


def test_root_shows_bootcs_reading_not_quadlets(root: Path) -> None:
    write(root, f"{QDIR}/a.container", "[Container]\nImage=quay.io/o/a:1 # inline comment\n")
    write(root, f"{QDIR}/a.container.d/10.conf", "[Container]\nImage=quay.io/o/dropin:1\n")  # unread
    link(root, "a.container", f"/{QDIR}/a.container")
    write(root, f"{QDIR}/b.image", '[Image]\nImage="quay.io/o/%%b:1"\n')
    link(root, "b.image", f"/{QDIR}/b.image")
    write(root, f"{QDIR}/c.container", "[Container]\nImage=\n")
    link(root, "c.container", f"/{QDIR}/c.container")
    assert sorted(listed(root)) == [
        ("logical", "", f"r/{QDIR}/c.container", 2),
        ("logical", '"quay.io/o/%b:1"', f"r/{QDIR}/b.image", 2),
        ("logical", "quay.io/o/a:1", f"r/{QDIR}/a.container", 2),
    ]


def test_root_without_bound_images_d_lists_nothing(root: Path) -> None:
    assert listed(root) == []


P = "usr/lib/bootc/bound-images.d"
ROOT_FAILURES = [
    ("regular-file", "app.image", None, "[Image]\nImage=quay.io/o/a:1\n", "Not a symlink: app.image"),
    ("kube", "app.kube", "app.kube", "[Kube]\nYaml=a.yml\n", "Invalid file extension: app.kube"),
    ("dotfile", ".image", ".image", "[Image]\nImage=quay.io/o/a:1\n", "Invalid file extension: .image"),
    (
        "continuation",
        "app.container",
        "app.container",
        "[Container]\nImage=quay.io/o/a:1\nExec=a \\\n  b\n",
        "Parse to ini: Incorrect syntax at line 4",
    ),
    (
        "bad-section",
        "app.image",
        "app.image",
        "[Image\nImage=quay.io/o/a:1\n",
        "Parse to ini: Incorrect section syntax at line 1",
    ),
    (
        "missing",
        "app.image",
        "app.image",
        "[Image]\nPolicy=missing\n",
        f"Parsing {P}/app.image: Missing Image field",
    ),
    (
        "mismatch",
        "app.image",
        "app.container",
        "[Container]\nImage=quay.io/o/a:1\n",
        f"Parsing {P}/app.image: Missing Image field",
    ),
    (
        "authfile",
        "app.image",
        "app.image",
        "[Image]\nImage=quay.io/o/a:1\nAuthFile=\n",
        f"Parsing {P}/app.image: AuthFile is not supported by bound bootc images",
    ),
    (
        "specifier",
        "app@.container",
        "app@.container",
        "[Container]\nImage=quay.io/o/a:%i\n",
        f"Parsing {P}/app@.container: Invalid image value: Systemd specifiers are not supported by bound "
        "bootc images: quay.io/o/a:%i",
    ),
    (
        "unterminated",
        "app.container",
        "app.container",
        "[Container]\nImage=quay.io/o/a:1%\n",
        f"Parsing {P}/app.container: Invalid image value: Unterminated %",
    ),
    ("dangling", "app.container", "gone.container", None, "No such file or directory (os error 2)"),
    (
        "not-utf8",
        "app.container",
        "app.container",
        b"[Container]\nImage=\xff\n",
        "stream did not contain valid UTF-8",
    ),
]


@pytest.mark.parametrize(
    ("name", "target", "text", "reason"), [f[1:] for f in ROOT_FAILURES], ids=[f[0] for f in ROOT_FAILURES]
)
def test_root_fails_like_bootc(
    root: Path, name: str, target: Optional[str], text: Optional[Union[str, bytes]], reason: str
) -> None:
    if target is None:  # a regular file in bound-images.d
        assert text is not None
        write(root, f"{BOUND}/{name}", text)
    else:
        if text is not None:
            write(root, f"{QDIR}/{target}", text)
        link(root, name, f"/{QDIR}/{target}")
    done = run_bindimg("list", "--root", "r", "--json")
    assert done.code == 2
    (line,) = done.err.splitlines()
    assert json.loads(done.out)["error"]["message"] == line.removeprefix("bindimg: error: ")
    assert f"bootc fails here: Querying bound images: {reason}; " in line
    assert line.startswith("bindimg: error: r/")


def test_link_to_a_directory_fails_like_bootc(root: Path) -> None:
    (root / QDIR / "app.container").mkdir()
    link(root, "app.container", f"/{QDIR}/app.container")
    with pytest.raises(InputError, match=re.escape("Querying bound images: Is a directory (os error 21);")):
        listed(root)


def test_link_to_a_fifo_is_refused_unread(root: Path) -> None:
    os.mkfifo(root / QDIR / "app.container")
    link(root, "app.container", f"/{QDIR}/app.container")
    done = run_bindimg("list", "--root", "r")
    assert (done.code, done.out) == (2, "")
    where = f"{root}/{QDIR}/app.container"
    assert done.err == f"bindimg: error: {where}: is a FIFO, not a unit file; make it a regular file\n"


def test_root_fails_on_the_first_bad_entry_in_readdir_order(root: Path) -> None:
    for name in ("a.kube", "b.kube", "c.kube", "d.kube"):
        write(root, f"{QDIR}/{name}", "[Kube]\nYaml=a.yml\n")
        link(root, name, f"/{QDIR}/{name}")
    first = os.listdir(root / BOUND)[0]
    with pytest.raises(InputError, match=re.escape(f"Invalid file extension: {first};")):
        listed(root)
