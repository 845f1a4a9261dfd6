"""Man pages generated from the command line itself: `python -m bindimg.manpage DIR`.

One page per command (`bindimg.1`, `bindimg-add.1`, …) from the same help texts, options and
examples that `-h` shows, so the two cannot drift apart. `pip install` puts the committed
pages (`man/`) into `share/man/man1`; `scripts/zipapp` ships them beside the zipapp.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import typer
import typer.main

from bindimg.cli import app
from bindimg.errors import EXIT_MEANINGS
from bindimg.options import EXAMPLES


def _roff(text: str) -> str:
    """Text as roff: backslashes and dashes escaped, no line taken for a request."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in escaped.split("\n"))


def _commands(
    command: Any, path: tuple[str, ...], parent: Any = None
) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(name path, command, context) of `command` and of every subcommand, depth first."""
    # the command's own settings (`-h` beside `--help`), as click's `make_context` applies them
    ctx = typer.Context(command, info_name=path[-1], parent=parent, **command.context_settings)
    yield path, command, ctx
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name), ctx)


def _page(path: tuple[str, ...], command: Any, ctx: Any) -> str:
    name = "-".join(path)
    usage = " ".join(command.collect_usage_pieces(ctx))
    short = command.get_short_help_str(limit=200)
    lines = [
        f'.TH {name.upper()} 1 "" "bindimg" "User Commands"',
        ".SH NAME",
        f"{_roff(name)} \\- {_roff(short)}",
        ".SH SYNOPSIS",
        f".B {_roff(' '.join(path))}",
        _roff(usage),
        ".SH DESCRIPTION",
        _roff((command.help or "").strip()),
    ]
    subcommands = sorted(getattr(command, "commands", {}).items())
    if subcommands:
        lines.append(".SH COMMANDS")
        for sub_name, sub in subcommands:
            page = "-".join((*path, sub_name))
            lines += [
                ".TP",
                f".B {_roff(sub_name)}",
                f"{_roff(sub.get_short_help_str(limit=200))} See \\fB{_roff(page)}\\fR(1).",
            ]
    records = [p.get_help_record(ctx) for p in command.get_params(ctx) if p.param_type_name == "option"]
    records = [r for r in records if r is not None]
    if records:
        lines.append(".SH OPTIONS")
        for term, text in records:
            lines += [".TP", f".B {_roff(term)}", _roff(text)]
    examples = EXAMPLES.get(" ".join(path[1:]))
    if examples:
        lines.append(".SH EXAMPLES")
        for what, example in examples:
            lines += [".PP", _roff(what) + ":", ".IP", f".B {_roff(example)}"]
    lines += [".SH EXIT STATUS", ".TP", ".B 0", "success"]
    for code, meaning in EXIT_MEANINGS.items():
        lines += [".TP", f".B {code}", _roff(meaning)]
    others = ["bindimg"] if len(path) > 1 else ["bindimg-" + n for n, _ in subcommands]
    lines += [".SH SEE ALSO", ", ".join(f"\\fB{_roff(o)}\\fR(1)" for o in others if o != name)]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> roff text of every page."""
    root = typer.main.get_command(app)
    return {
        "-".join(path) + ".1": _page(path, command, ctx)
        for path, command, ctx in _commands(root, ("bindimg",))
    }


def main(argv: list[str]) -> None:
    (directory,) = argv
    os.makedirs(directory, exist_ok=True)
    for name, text in pages().items():
        with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
            handle.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
