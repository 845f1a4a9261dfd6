"""The layout's promises: every catalogued rule has code, no unknown id, no import cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bindimg.commands import lint  # noqa: F401  (the runner imports every rule, as a run does)
from bindimg.findings import RULES
from bindimg.rules import REPORTED_BY, unit_rule


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
