"""What the commands print: results on stdout (text lines or one JSON document), progress and
failures on stderr, and the one error boundary with the exit codes the spec documents.

`Output` is where a command talks; the `show_*` functions render each command's result (the
object its `bindimg.commands` module returns) in the chosen format. The result classes are
imported for type checking only, so that importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Optional

import typer

from bindimg.errors import EXIT_INTERNAL, EXIT_MEANINGS, BindimgError, counted, one_line

if TYPE_CHECKING:
    from bindimg.commands.export import Result as ExportResult
    from bindimg.commands.list import Listed
    from bindimg.commands.lock import LockResult
    from bindimg.findings import Finding
    from bindimg.podmanversion import Podman
    from bindimg.write import Plan

LOG = logging.getLogger("bindimg")


@dataclass(frozen=True)
class Output:
    """Where a command talks: results on stdout (in `format`), progress (unless -q) and
    failures on stderr; with JSON, a failure is also a JSON error object on stdout."""

    quiet: bool = False
    verbose: bool = False
    format: str = "text"

    @property
    def json(self) -> bool:
        return self.format == "json"

    def progress(self, message: str) -> None:
        if not self.quiet:
            typer.echo(message, err=True)

    def text(self, line: str) -> None:
        """A result line of the text format (-q: none)."""
        if not self.quiet:
            typer.echo(line)

    def data(self, value: Any) -> None:
        """The result in the JSON format."""
        typer.echo(json.dumps(value, indent=2))

    def detail(self, message: str) -> None:
        """A line only -v shows (on stderr): how bindimg decided."""
        if self.verbose and not self.quiet:
            typer.echo(message, err=True)

    def log_details(self) -> None:
        """-v: each registry request and decision, logged by the modules, on stderr."""
        if self.verbose:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("bindimg: %(message)s"))
            LOG.addHandler(handler)
            LOG.setLevel(logging.DEBUG)

    def podman(self, option: Optional[str], root: Optional[str]) -> Podman:
        """Whose Quadlet rules apply (`--podman-version`, else the root's podman), said with -v."""
        from bindimg import podmanversion
        from bindimg.rootfs import Root

        chosen = podmanversion.choose(option, Root(root) if root is not None else None)
        self.detail(chosen.describe())
        return chosen

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """The one error boundary: a BindimgError is one line and its documented exit code;
        anything else is a bug (exit 70), with a traceback only with -v."""
        try:
            yield
        except (typer.Exit, typer.Abort):
            raise
        except BindimgError as error:
            self.fail(str(error), error.exit_code)
        except Exception as error:
            if self.verbose:
                traceback.print_exc()
            self.fail(
                f"{type(error).__name__}: {one_line(str(error))} (run with -v for details)",
                EXIT_INTERNAL,
                kind="internal error",
            )

    def fail(self, message: str, code: int, kind: str = "error") -> NoReturn:
        fail(message, code, self.json, kind)


def fail(message: str, code: int, as_json: bool, kind: str = "error") -> NoReturn:
    """`bindimg: KIND: MESSAGE` on stderr (and the JSON error object on stdout), exit `code`;
    KIND is `internal error` for a bug."""
    if as_json:
        typer.echo(json.dumps({"error": error_object(message, code)}, indent=2))
    typer.echo(f"bindimg: {kind}: {message}", err=True)
    raise typer.Exit(code)


def error_object(message: str, code: int) -> dict[str, Any]:
    return {"message": message, "exit_code": code, "meaning": EXIT_MEANINGS[code]}


def show_add(out: Output, plan: Plan, podman: Podman, dry_run: bool) -> None:
    """Every file and link `add` wrote (or, with `dry_run`, a unified diff of them)."""
    files = [
        {"path": path, "action": "modified" if old is not None else "created"}
        for path, (old, _) in sorted(plan.files.items())
    ]
    links = [{"path": link.path, "target": link.target} for link in plan.links]
    if out.json:
        out.data(
            {
                "dry_run": dry_run,
                "images": [e.as_json() for e in plan.entries],
                "files": files,
                "links": links,
                "podman": podman.as_json(),
            }
        )
        return
    if dry_run:
        from bindimg import write

        out.progress(
            f"bindimg: dry run, nothing written: {counted(len(files), 'file')} and "
            f"{counted(len(links), 'link')} would change"
        )
        sys.stdout.write(write.diff(plan))
        return
    for entry in plan.entries:
        out.text(f"{'changed' if entry.changed else 'unchanged'} {entry.quadlet} {entry.reference}")
    for item in files:
        out.text(f"{item['action']} {item['path']}")
    for item in links:
        out.text(f"linked {item['path']} -> {item['target']}")


def show_lock(out: Output, result: LockResult, lock_file: str, check: bool, dry_run: bool) -> None:
    """The lock's changes and where it went; with `check`, the problems only (even with -q)."""
    if out.json:
        out.data(result.as_json(lock_file, dry_run))
    elif check:
        for problem in result.problems:
            typer.echo(problem)
    else:
        for line in result.change_lines():
            out.text(line)
        for path in result.rewritten:
            out.text(f"pinned {path}")
        status = (
            ("would write" if result.written else "unchanged")
            if dry_run
            else ("written" if result.written else "unchanged")
        )
        images = counted(len(result.entries), "image")
        out.text(f"{status} {lock_file} ({images}, {len(result.resolved)} resolved)")


def show_lint(out: Output, findings: Sequence[Finding], podman: Podman) -> dict[str, int]:
    """The findings in the chosen format and the summary line; returns the counts by severity."""
    from bindimg import report

    if out.json:
        out.data({**report.as_json(findings), "podman": podman.as_json()})
    else:
        sys.stdout.write(report.FORMATS[out.format](findings))
    counts = report.summary(findings)
    if not out.quiet:
        errors, warnings = counted(counts["errors"], "error"), counted(counts["warnings"], "warning")
        typer.echo(f"bindimg: {errors}, {warnings}", err=True)
    return counts


def show_list(out: Output, items: Sequence[Listed]) -> None:
    """One line per image: `IMAGE<TAB>TYPE<TAB>UNIT:LINE`."""
    if out.json:
        out.data({"images": [asdict(item) for item in items]})
        return
    for item in items:
        where = f"{item.quadlet}:{item.line}" if item.quadlet is not None else "-"
        out.text(f"{item.image}\t{item.type}\t{where}")


def show_export(out: Output, result: ExportResult, failure: Optional[BindimgError]) -> None:
    """One line per image; with JSON one document, the `failure` in it when there is one."""
    if out.json:
        data = result.as_json()
        if failure is not None:
            data["error"] = error_object(str(failure), failure.exit_code)
        out.data(data)
    else:
        for line in result.lines():
            out.text(line)


def show_store_init(out: Output, inner: str, driver: str, created: bool) -> None:
    if out.json:
        out.data({"path": inner, "driver": driver, "changed": created})
    else:
        out.text(f"{'created' if created else 'unchanged'} {inner} ({driver})")
