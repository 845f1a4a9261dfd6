"""The layout's promises: every catalogued rule has code, no unknown id, no import cycle."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Optional

import pytest

from bindimg.commands import lint  # noqa: F401  (the runner imports every rule, as a run does)
from bindimg.findings import RULES
from bindimg.rules import REPORTED_BY, unit_rule
from tests.kit import PINNED, run_bindimg, write


def test_every_catalogued_rule_is_reported_by_a_registered_function() -> None:
    assert sorted(REPORTED_BY) == sorted(RULES)


def test_a_rule_with_an_uncatalogued_id_is_refused_at_registration() -> None:
    with pytest.raises(ValueError) as refused:
        unit_rule("no-such-rule")(lambda u, ctx: [])
    assert str(refused.value) == "<lambda> reports 'no-such-rule', which is not in findings.RULES"


PACKAGE = Path(__file__).resolve().parent.parent / "bindimg"


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The bindimg modules `path` imports (`from bindimg import x` counts when x is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "bindimg":
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bindimg."):
            found.add(node.module.removeprefix("bindimg."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("bindimg.") for a in node.names if a.name.startswith("bindimg.")}
    return found & modules


def test_the_modules_import_each_other_without_a_cycle() -> None:
    files = {
        str(p.relative_to(PACKAGE).with_suffix("")).replace("/", "."): p
        for p in PACKAGE.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    graph = {name: _imports(path, set(files)) for name, path in files.items()}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, " -> ".join((*trail, name))
        if name in done:
            return
        for dep in sorted(graph[name]):
            visit(dep, (*trail, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
    assert len(done) == len(files) > 30


# What a start loads: the command line itself and nothing a command needs (bench/startup.py
# measures what that saves; these keep a module-level import from undoing it).
STARTUP_MODULES = {
    "bindimg",
    "bindimg.cli",
    "bindimg.defaults",
    "bindimg.errors",
    "bindimg.findings",
    "bindimg.interrupt",
    "bindimg.options",
    "bindimg.output",
    "bindimg.report",
}


def _loaded(*args: str, cwd: Path, env: Optional[dict[str, str]] = None) -> tuple[int, set[str]]:
    """Exit code of `bindimg ARGS` and the bindimg modules it imported (Python's import report)."""
    done = run_bindimg(*args, cwd=cwd, env={**os.environ, **(env or {}), "PYTHONPROFILEIMPORTTIME": "1"})
    names = {
        line.rsplit("|", 1)[1].strip() for line in done.err.splitlines() if line.startswith("import time:")
    }
    return done.code, {name for name in names if name.split(".")[0] == "bindimg"}


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--version",), {}),
        (("lint", "-h"), {}),
        (("completion", "bash"), {}),
        ((), {"_BINDIMG_COMPLETE": "complete_bash", "COMP_WORDS": "bindimg lint --f", "COMP_CWORD": "2"}),
    ],
)
def test_version_help_and_completion_load_no_command(
    args: tuple[str, ...], env: dict[str, str], tmp_path: Path
) -> None:
    assert _loaded(*args, cwd=tmp_path, env=env) == (0, STARTUP_MODULES)


@pytest.mark.parametrize(("command", "code"), [(("lint", "."), 0), (("lock", "--check", "."), 2)])
def test_lint_and_lock_load_neither_the_embedder_nor_export(
    command: tuple[str, ...], code: int, tmp_path: Path
) -> None:
    write(tmp_path, "app.container", f"[Container]\nImage={PINNED}\n")
    exit_code, loaded = _loaded(*command, cwd=tmp_path)
    assert exit_code == code
    assert f"bindimg.commands.{command[0]}" in loaded
    embedding_or_export = {
        "bindimg.commands.add",
        "bindimg.commands.export",
        "bindimg.destinations",
        "bindimg.embed",
        "bindimg.fetch",
        "bindimg.flatten",
        "bindimg.progress",
    }
    assert loaded & embedding_or_export == set()
