"""The command line a podman and bootc user expects: help, spellings, completion, man pages,
one error style, one JSON vocabulary (validated by the schemas in docs/schemas)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bindimg import manpage, skopeo
from bindimg.findings import RULES
from bindimg.options import EXAMPLES
from bindimg.report import sarif
from tests import ociimage
from tests.kit import D1, QDIR, run_bindimg, snapshot, write
from tests.registry import Registry

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
COMMANDS = [("add",), ("lock",), ("lint",), ("list",), ("export",), ("store", "init"), ("completion",)]
PYTHON_TYPES = re.compile(
    r"<(str|int|float|bool|list\[|int range|float range)|\b(TEXT|INTEGER|FLOAT|BOOLEAN)\b"
)


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DOCS / "schemas" / f"{name}.json").read_text())
    return loaded


def valid(name: str, text: str) -> Any:
    """`text` parsed, after validating it against docs/schemas/NAME.json."""
    data = json.loads(text)
    jsonschema.validate(data, schema(name))
    return data


# --- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_metavars_choices_and_examples_and_h_is_help(command: tuple[str, ...]) -> None:
    long, short = run_bindimg(*command, "--help"), run_bindimg(*command, "-h")
    assert (long.code, short.code, long.err) == (0, 0, "")
    assert short.out == long.out
    assert not PYTHON_TYPES.search(long.out), long.out
    assert "Examples:" in long.out
    for _, example in EXAMPLES[" ".join(command)]:
        assert example in long.out
    if command != ("completion",):
        assert "--format [text|json" in long.out
        assert "--json " in long.out


def test_choices_are_listed() -> None:
    assert "--format [text|json|github|sarif]" in run_bindimg("lint", "-h").out
    help_ = run_bindimg("add", "-h").out
    assert "--flatten [auto|always|never]" in help_
    assert "--driver [overlay|vfs]" in help_


def test_bare_bindimg_lists_every_command_uncut() -> None:
    done = run_bindimg()
    assert (done.code, done.err) == (0, "")
    assert done.out == run_bindimg("-h").out
    listed = done.out.split("Commands:\n", 1)[1]
    for name in ("add", "lock", "lint", "list", "export", "store", "completion"):
        assert re.search(rf"^  {name} ", listed, re.MULTILINE), name
    assert "..." not in listed


# --- flags as podman spells them ----------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", ["--tls-verify=false", "--tls-verify=true", "--tls-verify", "--no-tls-verify"]
)
def test_tls_verify_spellings(tmp_path: Path, spelling: str) -> None:
    write(tmp_path, "a.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    done = run_bindimg("lint", spelling, str(tmp_path))
    assert (done.code, done.out, done.err) == (0, "", "bindimg: 0 errors, 0 warnings\n")


def test_tls_verify_with_a_non_boolean_is_a_usage_error() -> None:
    done = run_bindimg("lint", "--tls-verify=maybe", ".")
    assert (done.code, done.out) == (2, "")
    assert done.err == "bindimg: error: --tls-verify=maybe: not a boolean; use true or false\n"


# --- one error style ----------------------------------------------------------------------------


def test_usage_errors_have_the_one_error_style() -> None:
    done = run_bindimg("add", "--nope", "x.container")
    assert (done.code, done.out) == (2, "")
    assert re.fullmatch(r"bindimg: error: No such option: --nope.* \(see `bindimg add -h`\)\n", done.err)
    unknown = run_bindimg("frobnicate")
    assert unknown.code == 2
    assert unknown.err.startswith("bindimg: error: No such command 'frobnicate'")
    bad_choice = run_bindimg("lint", "--format", "xml", ".")
    assert bad_choice.code == 2 and bad_choice.err.startswith("bindimg: error: Invalid value for '--format'")
    # click lays a missing choice out over lines and tabs: one plain line here
    missing = run_bindimg("completion")
    assert (missing.code, missing.err) == (
        2,
        "bindimg: error: Missing argument '[bash|zsh|fish]'. Choose from: bash, zsh, fish "
        "(see `bindimg completion -h`)\n",
    )
    bare_group = run_bindimg("store")
    assert bare_group.code == 0 and bare_group.err == ""
    assert "  init  Create an empty store podman accepts read-only.\n" in bare_group.out


def test_json_failures_print_the_error_object_on_stdout(tmp_path: Path) -> None:
    for args in (["list", "--json", str(tmp_path / "missing")], ["add", "--format", "json", "--nope", "x"]):
        done = run_bindimg(*args)
        assert done.code == 2
        error = valid("error", done.out)["error"]
        assert error["exit_code"] == 2
        assert error["meaning"] == "bad input or usage; nothing was written"
        assert done.err == f"bindimg: error: {error['message']}\n"


def test_missing_path_empty_directory_and_missing_lock_for_check_are_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cases = {
        ("lint", str(tmp_path / "nope")): f"{tmp_path / 'nope'}: no such file or directory",
        (
            "list",
            str(tmp_path / "empty"),
        ): f"{tmp_path / 'empty'}: no .container, .image or .volume units in this directory",
        (
            "add",
            "--root",
            str(tmp_path),
            str(tmp_path / "empty"),
        ): f"{tmp_path / 'empty'}: no .container, .image or .volume units in this directory",
        (
            "lock",
            "--check",
            "--lock",
            str(tmp_path / "x.lock"),
            str(tmp_path),
        ): f"{tmp_path / 'x.lock'}: no such lock file; run `bindimg lock` first, or name it with --lock",
    }
    for args, message in cases.items():
        before = snapshot(tmp_path)
        done = run_bindimg(*args)
        assert (done.code, done.out, done.err) == (2, "", f"bindimg: error: {message}\n"), args
        assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["add", "lock", "export"])
def test_skopeo_missing_is_one_line_at_the_start(tmp_path: Path, command: str) -> None:
    tag = write(tmp_path, "src/a.container", "[Container]\nImage=registry.example/o/a:1\n")
    pinned = write(tmp_path, "pinned/b.container", f"[Container]\nImage=registry.example/o/b@{D1}\n")
    (tmp_path / "root").mkdir()
    args = {
        "add": ["add", "--root", str(tmp_path / "root"), str(tag)],
        "lock": ["lock", "--lock", str(tmp_path / "bindimg.lock"), str(tag)],
        "export": ["export", "--to", f"oci:{tmp_path / 'oci'}", str(pinned)],
    }[command]
    before = snapshot(tmp_path)
    done = run_bindimg(*args, env={**os.environ, "PATH": "/nonexistent"})
    # no progress line ("resolving …", "exporting …") before it: nothing was started
    assert (done.code, done.out) == (3, "")
    assert done.err == "bindimg: error: skopeo is not installed; bindimg needs skopeo >= 1.9 on PATH\n"
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        ("skopeo version 1.9.3\n", None),
        ("skopeo version 1.14.0 commit: abc\n", None),
        ("skopeo version 1.4.1\n", "skopeo 1.4.1 found; bindimg needs skopeo >= 1.9"),
        ("skopeo version 0.1.40\n", "skopeo 0.1.40 found; bindimg needs skopeo >= 1.9"),
        ("oops\n", "cannot tell skopeo's version from 'oops'; bindimg needs skopeo >= 1.9"),
    ],
)
def test_skopeo_version_rule(output: str, problem: str) -> None:
    assert skopeo.version_error(output) == problem


# --- completion and man pages -------------------------------------------------------------------


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script_and_protocol(shell: str) -> None:
    done = run_bindimg("completion", shell)
    assert (done.code, done.err) == (0, "")
    assert "_BINDIMG_COMPLETE=complete_" + shell in done.out
    env = {**os.environ, "_BINDIMG_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": "bindimg l"}
    if shell == "bash":
        env.update(COMP_WORDS="bindimg l", COMP_CWORD="1")
    if shell == "fish":
        env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    answer = subprocess.run(
        [sys.executable, "-m", "bindimg"], env=env, capture_output=True, text=True, check=False
    )
    assert answer.returncode == 0, answer.stderr
    for name in ("lint", "list", "lock"):
        assert name in answer.stdout
    assert "add" not in answer.stdout.split()


def test_bash_completes_bindimg_through_the_script(tmp_path: Path) -> None:
    script = run_bindimg("completion", "bash").out
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "bindimg").write_text(f'#!/bin/sh\nexec {sys.executable} -m bindimg "$@"\n')
    (bindir / "bindimg").chmod(0o755)
    probe = (
        script
        + "\nCOMP_WORDS=(bindimg lint --form); COMP_CWORD=2\n"
        + '_bindimg_completion bindimg\necho "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", probe],
        env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.split() == ["--format"], done.stderr


def test_man_pages_are_generated_from_the_cli_and_committed() -> None:
    generated = manpage.pages()
    assert sorted(generated) == sorted(p.name for p in (REPO / "man").glob("*.1"))
    for name, text in generated.items():
        assert (REPO / "man" / name).read_text() == text, (
            f"man/{name} is stale: python -m bindimg.manpage man"
        )
    add = generated["bindimg-add.1"]
    assert ".SH EXAMPLES" in add and "\\-\\-tls\\-verify" in add and ".B 3" in add
    for name, text in generated.items():  # the short spellings -h shows, too
        assert ".B \\-h, \\-\\-help\n" in text, name


# --- docs: the contract -------------------------------------------------------------------------


def test_every_finding_id_has_its_section_with_the_four_parts() -> None:
    text = (DOCS / "findings.md").read_text()
    sections = dict(re.findall(r"^## ([a-z-]+)\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL))
    assert sorted(sections) == sorted(RULES)
    for rule_id, body in sections.items():
        for part in ("**Severity:**", "**Meaning:**", "**Why:**", "**Fix:**", "**Example:**"):
            assert part in body, f"{rule_id}: {part}"


def test_sarif_rules_point_to_the_docs() -> None:
    rules = sarif([])["runs"][0]["tool"]["driver"]["rules"]
    for rule in rules:
        assert rule["help"]["text"].endswith(f"docs/findings.md#{rule['id']}")
        assert f"](docs/findings.md#{rule['id']})" in rule["help"]["markdown"]
        assert "helpUri" not in rule  # SARIF wants it absolute; no public URL (docs/commands.md)


def test_every_option_is_documented_in_docs_commands() -> None:
    text = (DOCS / "commands.md").read_text()
    for name in manpage.pages():
        page = manpage.pages()[name]
        for option in re.findall(r"^\.B (?:\\-[a-z], )?(\\-\\-[a-z\\-]+)", page, re.MULTILINE):
            plain = option.replace("\\-", "-")
            assert f"`{plain}" in text, f"{plain} ({name}) is not in docs/commands.md"


def test_readme_links_stay_inside_the_repository() -> None:
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)]+)\)", readme):
        if target.startswith("http"):
            continue
        assert (REPO / target.split("#")[0]).exists(), target
    assert "shared folder" not in readme and "SPEC.md" not in readme


# --- one JSON vocabulary ------------------------------------------------------------------------


def test_json_of_list_lint_store_and_add_match_their_schemas(tmp_path: Path) -> None:
    unit = write(tmp_path, "src/a.container", f"[Container]\nImage=quay.io/o/a:1@{D1}\n")
    root = tmp_path / "root"
    root.mkdir()
    listed = valid("list", run_bindimg("list", "--json", str(tmp_path / "src")).out)
    assert listed == {
        "images": [{"type": "unit", "image": f"quay.io/o/a:1@{D1}", "quadlet": str(unit), "line": 2}]
    }
    linted = valid("lint", run_bindimg("lint", "--format", "json", str(tmp_path / "src")).out)
    assert [f["id"] for f in linted["findings"]] == ["tag-and-digest"]

    dry = run_bindimg("add", "--json", "--dry-run", "--root", str(root), str(tmp_path / "src"))
    assert dry.code == 0, dry.err
    installed = str(root / QDIR / "a.container")
    link = str(root / "usr/lib/bootc/bound-images.d/a.container")
    planned = valid("add", dry.out)
    assert planned["dry_run"] is True
    assert planned["files"] == [{"path": installed, "action": "created"}]
    assert planned["links"] == [{"path": link, "target": f"/{QDIR}/a.container"}]
    assert list(root.iterdir()) == []

    done = run_bindimg("add", "--format", "json", "--root", str(root), str(tmp_path / "src"))
    added = valid("add", done.out)
    assert {**added, "dry_run": True} == planned
    assert added["images"][0] | {"quadlet": None} == {
        "quadlet": None,
        "source": f"quay.io/o/a:1@{D1}",
        "image": f"quay.io/o/a@{D1}",
        "digest": D1,
        "type": "logical",
        "changed": True,
    }
    unbound = write(root, f"{QDIR}/b.container", f"[Container]\nImage=quay.io/o/b@{D1}\n")
    rooted = valid("list", run_bindimg("list", "--json", "--root", str(root)).out)
    assert rooted["images"] == [
        {"type": "logical", "image": f"quay.io/o/a@{D1}", "quadlet": installed, "line": 3},
        {"type": "unbound", "image": f"quay.io/o/b@{D1}", "quadlet": str(unbound), "line": 2},
    ]
    exported = run_bindimg(
        "export", "--json", "--dry-run", "--root", str(root), "--to", f"oci:{tmp_path / 'oci'}"
    )
    assert exported.code == 0, exported.err
    assert [i["status"] for i in valid("export", exported.out)["images"]] == ["planned"]
    store = valid("store-init", run_bindimg("store", "init", "--json", "--root", str(root)).out)
    assert store == {"path": "/usr/lib/containers/storage", "driver": "overlay", "changed": True}


def test_add_reports_every_file_and_link_in_text_and_q_prints_nothing(tmp_path: Path) -> None:
    write(tmp_path, "src/app.container", "[Container]\nImage=app.image\n")
    write(tmp_path, "src/app.image", f"[Image]\nImage=quay.io/o/a@{D1}\n")
    root = tmp_path / "root"
    root.mkdir()
    done = run_bindimg("add", "--root", str(root), str(tmp_path / "src/app.container"))
    assert done.code == 0, done.err
    qdir, bound = root / QDIR, root / "usr/lib/bootc/bound-images.d"
    assert done.out.splitlines() == [
        f"changed {qdir / 'app.image'} quay.io/o/a@{D1}",
        f"created {qdir / 'app.container'}",
        f"created {qdir / 'app.image'}",
        f"linked {bound / 'app.image'} -> /{QDIR}/app.image",
    ]
    again = run_bindimg("add", "-q", "--root", str(root), str(tmp_path / "src/app.container"))
    assert (again.code, again.out, again.err) == (0, "", "")


def test_dry_run_says_so(tmp_path: Path) -> None:
    unit = write(tmp_path, f"root/{QDIR}/a.container", f"[Container]\nImage=quay.io/o/a@{D1}\n")
    done = run_bindimg("add", "--dry-run", "--root", str(tmp_path / "root"), str(unit))
    assert done.code == 0
    assert done.err == "bindimg: dry run, nothing written: 1 file and 1 link would change\n"
    assert done.out.startswith(f"--- {unit}\n+++ {unit}\n")


def test_lock_shows_changes_has_dry_run_and_json(
    tmp_path: Path, registry: Registry, unique_repo: str
) -> None:
    one = registry.push_image(ociimage.app_image("cli-one-v1"), unique_repo, "one")
    two = registry.push_image(ociimage.app_image("cli-two-v1"), unique_repo, "two")
    write(tmp_path, "q/one.container", f"[Container]\nImage={one.ref}\n")
    two_unit = write(tmp_path, "q/two.image", f"[Image]\nImage={two.ref}\n")
    lock_file = str(tmp_path / "bindimg.lock")
    args = ("lock", "--no-tls-verify", "--lock", lock_file, str(tmp_path / "q"))
    first = run_bindimg(*args)
    assert first.out.splitlines()[:2] == [f"{one.ref}: added {one.digest}", f"{two.ref}: added {two.digest}"]

    moved = registry.move_tag(ociimage.app_image("cli-one-v2"), unique_repo, "one")
    before = snapshot(tmp_path)
    dry = run_bindimg(*args, "--update", one.ref, "--dry-run", "--json")
    result = valid("lock", dry.out)
    assert result["changes"] == [{"image": one.ref, "change": "updated", "old": one.digest, "new": moved}]
    assert (result["dry_run"], result["written"], result["resolved"]) == (True, False, [one.ref])
    assert snapshot(tmp_path) == before

    text = run_bindimg(*args, "--update", one.ref)
    assert text.out.splitlines()[0] == f"{one.ref}: {one.digest} -> {moved}"
    two_unit.unlink()
    dropped = run_bindimg(*args)
    assert dropped.out.splitlines()[0] == f"{two.ref}: dropped (was {two.digest})"


def test_unknown_tag_says_no_such_tag(tmp_path: Path, registry: Registry, unique_repo: str) -> None:
    one = registry.push_image(ociimage.app_image("cli-tag"), unique_repo, "one")
    missing = one.ref.rsplit(":", 1)[0] + ":nope"
    write(tmp_path, "q/a.container", f"[Container]\nImage={missing}\n")
    done = run_bindimg("lock", "-q", "--no-tls-verify", "--lock", str(tmp_path / "l"), str(tmp_path / "q"))
    assert (done.code, done.out) == (3, "")
    where = f"{tmp_path}/q/a.container:2"  # the unit's Image= first, then the reference
    assert done.err.startswith(f"bindimg: error: {where}: {missing}: no such tag in the registry (")
    assert done.err.endswith("); check the tag\n")


def test_verbose_shows_each_registry_request(tmp_path: Path, registry: Registry, unique_repo: str) -> None:
    one = registry.push_image(ociimage.app_image("cli-verbose"), unique_repo, "one")
    write(tmp_path, "q/a.container", f"[Container]\nImage={one.ref}\n")
    done = run_bindimg("lock", "-v", "--no-tls-verify", "--lock", str(tmp_path / "l"), str(tmp_path / "q"))
    assert done.code == 0, done.err
    requests = (
        f"bindimg: GET the manifest of {one.ref} (direct HTTP request)\n",
        f"bindimg: skopeo inspect --raw --tls-verify=false docker://{one.ref}\n",
    )
    assert any(request in done.err for request in requests), done.err
    assert f"bindimg: {one.ref}: {one.digest} (" in done.err


def test_scripts_example_pins_and_binds(base_image: str) -> None:
    done = subprocess.run(
        ["./scripts/example"], cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    assert re.search(
        r"^Image=127\.0\.0\.1:\d+/examples/hello@sha256:[0-9a-f]{64}$", done.stdout, re.MULTILINE
    )
    assert "hello.container -> /usr/share/containers/systemd/hello.container" in done.stdout
    assert done.stdout.splitlines()[-1].startswith("unchanged ")  # the second run
