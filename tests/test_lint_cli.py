"""`bindimg lint` as a user runs it: formats, exit codes, a root made by `bindimg add`, --remote.

The commands run as subprocesses (`python -m bindimg`), from the test's own working directory
so that paths in the output are the relative ones a CI job sees.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bindimg import __version__
from bindimg.findings import RULES
from tests import ociimage
from tests.kit import BOUND, D1, D2, QDIR, link, run_bindimg, snapshot, write
from tests.registry import PushedImages, Registry

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lint(*args: str) -> tuple[int, str, str]:
    done = run_bindimg("lint", *args)
    return done.code, done.out, done.err


def mixed_tree(top: Path) -> None:
    """One error, two warnings; a file name with `,` and `:` and a message with `%`."""
    write(top, "q/a.container", "[Container]\nImage=quay.io/o/a:1\n")  # floating-tag warning
    write(top, "q/odd,name:1.image", f"[Image]\nImage=quay.io/o/b@{D1}\nImageTag=quay.io/o/b:1\n")
    write(top, "q/t@.container", "[Container]\nImage=quay.io/o/c:%i\n")  # specifier error


def findings_of(out: str) -> list[dict[str, Any]]:
    document = json.loads(out)
    findings: list[dict[str, Any]] = document["findings"]
    return findings


# --- formats -----------------------------------------------------------------------------------


def test_json_shape(here: Path) -> None:
    mixed_tree(here)
    code, out, err = lint("q", "--format", "json")
    assert code == 1
    document = json.loads(out)
    assert list(document) == ["findings", "summary", "podman"]
    assert document["podman"] == {"version": None, "source": "default"}  # source units: newest rules
    assert document["summary"] == {"errors": 1, "warnings": 2}
    assert [(f["id"], f["severity"], f["path"], f["line"]) for f in document["findings"]] == [
        ("floating-tag", "warning", "q/a.container", 2),
        ("image-tag", "warning", "q/odd,name:1.image", 3),
        ("specifier", "error", "q/t@.container", 2),
    ]
    assert all(list(f) == ["id", "severity", "path", "line", "message"] for f in document["findings"])
    assert document["findings"][2]["message"].startswith("Image=quay.io/o/c:%i contains a systemd specifier")
    assert err == "bindimg: 1 error, 2 warnings\n"


def test_text_is_one_line_per_finding_sorted(here: Path) -> None:
    mixed_tree(here)
    expected = findings_of(lint("q", "--format", "json")[1])
    code, out, _ = lint("q")
    assert code == 1
    assert out == "".join(
        f"{f['path']}:{f['line']}: {f['severity']}: {f['id']}: {f['message']}\n" for f in expected
    )


def test_github_annotations_escape_properties_and_data(here: Path) -> None:
    mixed_tree(here)
    expected = findings_of(lint("q", "--format", "json")[1])
    code, out, _ = lint("q", "--format", "github", "-q")
    assert code == 1
    lines = out.splitlines()
    assert len(lines) == len(expected) == 3
    assert lines[0] == f"::warning file=q/a.container,line=2,title=floating-tag::{expected[0]['message']}"
    assert lines[1] == (
        f"::warning file=q/odd%2Cname%3A1.image,line=3,title=image-tag::{expected[1]['message']}"
    )
    assert lines[2] == (
        "::error file=q/t@.container,line=2,title=specifier::" + expected[2]["message"].replace("%", "%25")
    )
    assert "%25i" in lines[2]


def test_sarif_validates_against_the_official_schema(here: Path) -> None:
    mixed_tree(here)
    code, out, _ = lint("q", "--format", "sarif")
    assert code == 1
    log = json.loads(out)
    jsonschema.validate(log, json.loads(SCHEMA.read_text()))
    assert log["version"] == "2.1.0"
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert (driver["name"], driver["version"]) == ("bindimg", __version__)
    assert [r["id"] for r in driver["rules"]] == list(RULES)
    assert all(r["shortDescription"]["text"] for r in driver["rules"])
    assert [
        (
            r["ruleId"],
            r["level"],
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in run["results"]
    ] == [
        ("floating-tag", "warning", "q/a.container", 2),
        ("image-tag", "warning", "q/odd%2Cname%3A1.image", 3),
        ("specifier", "error", "q/t%40.container", 2),
    ]
    assert all(driver["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])


def test_sarif_of_a_clean_tree_validates_too(here: Path) -> None:
    write(here, "q/a.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    code, out, _ = lint("q", "--format", "sarif")
    assert code == 0
    log = json.loads(out)
    jsonschema.validate(log, json.loads(SCHEMA.read_text()))
    assert log["runs"][0]["results"] == []


def test_sarif_of_a_root_has_absolute_file_uris_and_line_one_for_links(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root, f"{BOUND}/app.container", "not a link")
    code, out, _ = lint("--root", str(root), "--format", "sarif")
    assert code == 1
    log = json.loads(out)
    jsonschema.validate(log, json.loads(SCHEMA.read_text()))
    location = log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location == {
        "artifactLocation": {"uri": f"file://{root}/{BOUND}/app.container"},
        "region": {"startLine": 1},
    }


# --- exit codes --------------------------------------------------------------------------------


def test_clean_exits_0_with_no_output(here: Path) -> None:
    write(here, "q/a.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    assert lint("q") == (0, "", "bindimg: 0 errors, 0 warnings\n")
    assert lint("q", "-q") == (0, "", "")


def test_default_path_is_the_working_directory(here: Path) -> None:
    write(here, "a.container", "[Container]\nImage=alpine:3\n")
    code, out, _ = lint("-q")
    assert (code, out.split(": ")[:3]) == (1, ["a.container:2", "error", "short-name"])


def test_warnings_pass_unless_strict(here: Path) -> None:
    write(here, "q/a.container", "[Container]\nImage=quay.io/o/a:1\n")
    code, out, _ = lint("q", "-q")
    assert (code, out.split(": ")[:3]) == (0, ["q/a.container:2", "warning", "floating-tag"])
    assert lint("q", "-q", "--strict")[0] == 1


def test_error_exits_1(here: Path) -> None:
    write(here, "q/a.container", "[Container]\nImage=quay.io/o/a:1@" + D1 + "\n")
    assert lint("q", "-q")[0] == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--format", "xml", "q"), "--format"),
        (("q", "--root", "q"), "not both"),
        (("--root", "q", "--lock", "bindimg.lock"), "--lock"),
        (("nope",), "nope: no such file or directory"),
        (("q", "--lock", "missing.lock"), "missing.lock: no such lock file"),
        (("q/README",), "q/README: not a .container, .image or .volume unit"),
        (("--root", "nowhere"), "nowhere: the root is not a directory"),
    ],
)
def test_bad_usage_or_unreadable_input_exits_2(here: Path, args: tuple[str, ...], needle: str) -> None:
    write(here, "q/a.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    write(here, "q/README", "hello\n")
    code, out, err = lint(*args)
    assert (code, out) == (2, "")
    assert needle in err


def test_damaged_lock_exits_2_naming_the_line(here: Path) -> None:
    write(here, "q/a.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(here, "bindimg.lock", 'version = 1\n[images."quay.io/o/a:1"]\ndigest = "sha256:abc"\n')
    code, out, err = lint("q", "--lock", "bindimg.lock")
    assert (code, out) == (2, "")
    assert err.startswith("bindimg: error: bindimg.lock:2: ")


def test_lock_checks_through_the_cli(here: Path) -> None:
    write(here, "q/a.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(
        here,
        "bindimg.lock",
        f'version = 1\n\n[images."quay.io/o/a:1"]\ndigest = "{D1}"\n\n'
        f'[images."quay.io/o/old:1"]\ndigest = "{D2}"\n',
    )
    code, out, _ = lint("q", "--lock", "bindimg.lock", "-q")
    assert code == 1
    assert [line.split(": ")[:3] for line in out.splitlines()] == [["bindimg.lock:6", "error", "lock-stale"]]


# --- a root made by `bindimg add`, then broken each way bootc breaks ---------------------------

APP = f"/{QDIR}/app.container"


@pytest.fixture
def added_root(tmp_path: Path) -> Path:
    root = tmp_path / "r"
    write(root, f"{QDIR}/app.container", f"[Container]\nImage=quay.io/o/app:1.2@{D1}\nExec=true\n")
    write(root, f"{QDIR}/db.image", f"[Image]\nImage=docker.io/postgres@{D2}\n")
    write(root, f"{QDIR}/web.container", "[Container]\nImage=db.image\n")
    units = [str(root / QDIR / n) for n in ("app.container", "db.image", "web.container")]
    done = run_bindimg("add", "--root", str(root), *units)
    assert done.code == 0, done.err
    return root


def test_root_made_by_add_lints_clean(added_root: Path) -> None:
    assert sorted(os.listdir(added_root / BOUND)) == ["app.container", "db.image"]
    assert lint("--root", str(added_root)) == (0, "", "bindimg: 0 errors, 0 warnings\n")


def _regular_file(root: Path) -> None:
    target = root / BOUND / "app.container"
    target.unlink()
    shutil.copy(root / QDIR / "app.container", target)


def _dangling(root: Path) -> None:
    (root / QDIR / "app.container").unlink()


def _kube(root: Path) -> None:
    write(root, f"{QDIR}/app.kube", "[Kube]\nYaml=/srv/app.yml\n")
    write(root, "srv/app.yml", "apiVersion: v1\nkind: Pod\n")
    link(root, "app.kube", f"/{QDIR}/app.kube")


def _append(rel: str, text: str) -> Any:
    def change(root: Path) -> None:
        with open(root / rel, "a") as handle:
            handle.write(text)

    return change


def _edit(rel: str, old: str, new: str) -> Any:
    def change(root: Path) -> None:
        path = root / rel
        path.write_text(path.read_text().replace(old, new))

    return change


BREAKAGES = [
    # bootc fails on the regular file, and the unit it copies is bound no more
    (
        "regular-file",
        _regular_file,
        ("not-a-symlink", f"{BOUND}/app.container", 1),
        ("unbound-image", APP[1:], 3),
    ),
    ("dangling", _dangling, ("dangling-link", f"{BOUND}/app.container", 1)),
    ("kube-link", _kube, ("bad-extension", f"{BOUND}/app.kube", 1)),
    (
        "authfile",
        _append(f"{QDIR}/db.image", "AuthFile=/etc/a.json\n"),
        ("authfile-unsupported", f"{QDIR}/db.image", 4),
    ),
    (
        "specifier",
        _edit(f"{QDIR}/app.container", "quay.io/o/app@", "quay.io/o/%i@"),
        ("specifier", APP[1:], 3),
    ),
    (
        "continuation",
        _append(f"{QDIR}/app.container", "PodmanArgs=--log-level=info \\\n  --quiet\n"),
        ("bootc-parse-error", APP[1:], 7),
    ),
    (
        "no-image",
        _edit(f"{QDIR}/app.container", f"Image=quay.io/o/app@{D1}\n", ""),
        ("missing-image", APP[1:], 1),
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(b[1], b[2:]) for b in BREAKAGES], ids=[b[0] for b in BREAKAGES]
)
def test_root_broken_each_way_bootc_breaks(
    added_root: Path, change: Any, expected: tuple[tuple[str, str, int], ...]
) -> None:
    change(added_root)
    code, out, _ = lint("--root", str(added_root), "--format", "json")
    assert code == 1
    assert [(f["id"], f["path"], f["line"]) for f in findings_of(out)] == [
        (rule, f"{added_root}/{rel}", line) for rule, rel, line in expected
    ]


def test_root_lint_writes_nothing(added_root: Path) -> None:
    _regular_file(added_root)
    before = snapshot(added_root)
    assert lint("--root", str(added_root), "-q")[0] == 1
    assert snapshot(added_root) == before


# --- --remote against a real registry ----------------------------------------------------------


def test_remote_reports_only_the_digest_the_registry_lacks(
    here: Path, registry: Registry, images: PushedImages
) -> None:
    gone = "sha256:" + "0" * 64
    write(here, "q/app.container", f"[Container]\nImage={images.app.by_digest}\n")
    write(here, "q/multi.image", f"[Image]\nImage={images.multi.by_digest}\n")
    write(here, "q/gone.container", f"[Container]\nImage={registry.host}/test/whiteout@{gone}\n")
    code, out, err = lint("q", "--remote", "--no-tls-verify", "--format", "json")
    assert code == 1, err
    (found,) = findings_of(out)
    assert (found["id"], found["severity"], found["path"], found["line"]) == (
        "digest-gone",
        "error",
        "q/gone.container",
        2,
    )
    assert f"{registry.host}/test/whiteout@{gone}" in found["message"]
    assert "manifest unknown" in found["message"].lower()


def test_remote_clean_when_every_digest_resolves(here: Path, images: PushedImages) -> None:
    write(here, "q/app.container", f"[Container]\nImage={images.app.by_digest}\n")
    assert lint("q", "--remote", "--no-tls-verify", "-q") == (0, "", "")


def test_remote_with_the_registry_down_exits_3(here: Path, fresh_registry: Registry) -> None:
    pushed = fresh_registry.push_image(ociimage.app_image("lint-down"), "test/app", "1.0")
    write(here, "q/app.container", f"[Container]\nImage={pushed.by_digest}\n")
    fresh_registry.stop()
    code, out, err = lint("q", "--remote", "--no-tls-verify", "--retry", "0", "-q")
    assert (code, out) == (3, "")
    assert err.startswith(f"bindimg: error: q/app.container:2: cannot resolve {pushed.by_digest}: ")
    assert "connection refused" in err and len(err.splitlines()) == 1
