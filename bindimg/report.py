"""Lint findings rendered for people (text), programs (json), GitHub Actions and code scanning.

Every format carries the same findings in the same order (path, line, id), so a CI job can
switch formats without changing what fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

from bindimg import __version__
from bindimg.findings import ERROR, RULES, WARNING, Finding

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    return {
        "errors": sum(f.severity == ERROR for f in findings),
        "warnings": sum(f.severity == WARNING for f in findings),
    }


def as_text(findings: Sequence[Finding]) -> str:
    """`PATH:LINE: SEVERITY: ID: MESSAGE`, one line per finding."""
    return "".join(f"{f.path}:{f.line}: {f.severity}: {f.id}: {f.message}\n" for f in findings)


def as_json(findings: Sequence[Finding]) -> dict[str, Any]:
    return {
        "findings": [
            {"id": f.id, "severity": f.severity, "path": f.path, "line": f.line, "message": f.message}
            for f in findings
        ],
        "summary": summary(findings),
    }


def _escape_data(text: str) -> str:
    """GitHub's escapeData (actions/toolkit): the message after `::`."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """GitHub's escapeProperty: a `key=value` property also may not hold `:` or `,`."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(f: Finding) -> str:
    """One workflow command, so the finding shows as an annotation on the file and line."""
    properties = ",".join(
        f"{key}={_escape_property(str(value))}"
        for key, value in (("file", f.path), ("line", f.line), ("title", f.id))
    )
    return f"::{f.severity} {properties}::{_escape_data(f.message)}"


def _artifact_uri(path: str) -> str:
    """A relative path stays relative (resolved against the checkout); an absolute one is a file URI."""
    uri = quote(path.replace("\\", "/"), safe="/")
    return "file://" + uri if path.startswith("/") else uri


def sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    """A SARIF 2.1.0 log with one run; every rule is described, used or not."""
    ids = list(RULES)
    rules = [
        {
            "id": rule_id,
            "name": "".join(part.capitalize() for part in rule_id.split("-")),
            "shortDescription": {"text": rule.summary},
            "defaultConfiguration": {"level": rule.severity},
        }
        for rule_id, rule in RULES.items()
    ]
    results = [
        {
            "ruleId": f.id,
            "ruleIndex": ids.index(f.id),
            "level": f.severity,
            "message": {"text": f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _artifact_uri(f.path)},
                        "region": {"startLine": max(1, f.line)},
                    }
                }
            ],
        }
        for f in findings
    ]
    driver = {"name": "bindimg", "version": __version__, "rules": rules}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }


FORMATS: dict[str, Callable[[Sequence[Finding]], str]] = {
    "text": as_text,
    "json": lambda findings: json.dumps(as_json(findings), indent=2) + "\n",
    "github": lambda findings: "".join(github_command(f) + "\n" for f in findings),
    "sarif": lambda findings: json.dumps(sarif(findings), indent=2) + "\n",
}
"""Each report format by name (`--format`'s choices, in this order): findings -> the whole
report, empty in a line format when there is nothing to say."""
