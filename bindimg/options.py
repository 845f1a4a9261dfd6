"""The command line's vocabulary: options shared by several commands, choices, help layout.

`registry_command` and `output_command` give a command the registry options (handed to it as
`registry` and `settings`) and the output options (handed to it as `out`, the command running
inside the one error boundary); the constants below are the options a few commands share.
Everything here is cheap to import: the values shown come from `bindimg.defaults`, and the
classes built from the options are imported when a command runs.
"""

from __future__ import annotations

import enum
import functools
import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Optional, get_type_hints

import typer
import typer.core

from bindimg import __version__
from bindimg.defaults import (
    DEFAULT_JOBS,
    DEFAULT_RETRY,
    DEFAULT_STORE,
    DEFAULT_TIMEOUT,
    DRIVERS,
    FLATTEN_MODES,
)
from bindimg.errors import EXIT_USAGE, one_line
from bindimg.output import Output, fail
from bindimg.report import FORMATS

SHELLS = ("bash", "zsh", "fish")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

EXAMPLES = {
    "add": [
        (
            "Pin and bind a unit in a Containerfile RUN step",
            "bindimg add /usr/share/containers/systemd/app.container",
        ),
        (
            "Offline, from the lock, in a staging root",
            "bindimg add --lock bindimg.lock --frozen --root /out quadlets/",
        ),
    ],
    "lock": [
        ("Resolve every tag under quadlets/ into bindimg.lock", "bindimg lock quadlets/"),
        ("CI: fail when the lock is stale (no network)", "bindimg lock --check quadlets/"),
    ],
    "lint": [
        ("Sources in CI, as GitHub annotations", "bindimg lint --format github quadlets/"),
        ("The image as bootc will see it (last RUN step)", "bindimg lint --root /"),
    ],
    "list": [
        ("What bootc binds from this image", "bindimg list --root /"),
        ("Each unit's image, as JSON", "bindimg list --format json quadlets/"),
    ],
    "export": [
        ("Mirror what an image root binds", "bindimg export --root /out --to docker://mirror.example/bootc"),
        (
            "The locked images as an OCI archive",
            "bindimg export --lock bindimg.lock --to oci-archive:images.tar",
        ),
    ],
    "store init": [("An empty store in a staging root", "bindimg store init --root /out")],
    "completion": [
        ("bash, for this shell", "source <(bindimg completion bash)"),
        ("fish, for good", "bindimg completion fish > ~/.config/fish/completions/bindimg.fish"),
    ],
}
"""One or two examples per command, shown by -h and in the man pages."""


def epilog(name: str) -> str:
    """The examples of command `name` as a help epilog (\\b: click keeps the lines as they are)."""
    lines = ["\b", "Examples:"]
    for what, command in EXAMPLES[name]:
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)


class Command(typer.core.TyperCommand):
    """A command whose help shows metavars (PATH, FILE, N), never typer's Python types, and
    whose usage line is the same whatever typer's version: `{REQUIRED}`, `[OPTIONAL]`, `...`
    when repeatable (typer >= 0.29 writes that; 0.23 writes the bare metavar)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces.extend(param.get_usage_pieces(ctx))
                continue
            name = param.metavar or (param.name or "").upper()
            name = f"{{{name}}}" if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or (param.name or "").upper(), getattr(param, "help", "") or ""))
                continue
            record = param.get_help_record(ctx)
            if record is not None:
                opts.append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bindimg {__version__}")
        raise typer.Exit()


VERSION = typer.Option(
    False,
    "--version",
    callback=_version,
    is_eager=True,
    expose_value=False,
    help="Print the version and exit.",
)

Formats = enum.Enum("Formats", {name: name for name in ("text", "json")}, type=str)  # type: ignore[misc]
LintFormats = enum.Enum("LintFormats", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]
Flatten = enum.Enum("Flatten", {name: name for name in FLATTEN_MODES}, type=str)  # type: ignore[misc]
Driver = enum.Enum("Driver", {name: name for name in DRIVERS}, type=str)  # type: ignore[misc]
Shell = enum.Enum("Shell", {name: name for name in SHELLS}, type=str)  # type: ignore[misc]


def choices(names: Any) -> str:
    """The metavar of an enum option: `[a|b|c]`."""
    return "[" + "|".join(item.value for item in names) + "]"


# Placeholders for the parameters the decorators below fill in (never seen by typer).
REGISTRY: Any = None
SETTINGS: Any = None
OUTPUT = Output()

# Options shared by several commands (typer reads these default objects per parameter).
QUIET = typer.Option(False, "-q", "--quiet", help="Print nothing but errors (and JSON asked for).")
VERBOSE = typer.Option(
    False,
    "-v",
    "--verbose",
    help="Show each step on stderr (registry requests, decisions); tracebacks on internal errors.",
)
ROOT = typer.Option("/", "--root", metavar="DIR", help="The image root to work in.")
AUTHFILE = typer.Option(
    None,
    "--authfile",
    metavar="FILE",
    help="Registry auth file (default: $REGISTRY_AUTH_FILE, then skopeo's own lookup).",
)
CREDS = typer.Option(None, "--creds", metavar="USER[:PASS]", help="Registry credentials.")
CERT_DIR = typer.Option(None, "--cert-dir", metavar="DIR", help="Directory of registry certificates.")
TLS_VERIFY = typer.Option(
    True,
    "--tls-verify/--no-tls-verify",
    help="Verify registry TLS; --tls-verify=false (as podman) or --no-tls-verify turns it off.",
)
JOBS = typer.Option(DEFAULT_JOBS, "--jobs", min=1, metavar="N", help="Parallel registry look-ups.")
RETRY = typer.Option(DEFAULT_RETRY, "--retry", min=0, metavar="N", help="Retries of transient failures.")
TIMEOUT = typer.Option(
    DEFAULT_TIMEOUT, "--timeout", min=1, metavar="SECONDS", help="Seconds per registry request."
)
STORE = typer.Option(
    DEFAULT_STORE, "--store", metavar="PATH", help="The embedded image store, inside the root."
)
DRIVER = typer.Option(
    Driver("overlay"),
    "--driver",
    metavar=choices(Driver),
    help="The storage driver of the podman that reads the store.",
)
PLATFORMS = typer.Option(
    None,
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="A platform the OS image is built for (repeatable): each bound image must have it.",
)
PODMAN_VERSION = typer.Option(
    None,
    "--podman-version",
    metavar="X.Y[.Z]",
    help="Read units as this podman's Quadlet does (default: the root's podman package, else the newest).",
)
JSON = typer.Option(False, "--json", help="Same as --format json.")


def path_arguments(help: str) -> Any:
    """The PATH arguments of a command."""
    return typer.Argument(None, metavar="PATH", help=help)


def root_option(help: str) -> Any:
    """--root of lint and list: optional, since PATHs are the other question they answer."""
    return typer.Option(None, "--root", metavar="DIR", help=help)


Options = dict[str, tuple[Any, Any]]  # parameter name -> (type, typer option)


def _with_options(
    replaced: tuple[str, ...],
    options: Options,
    build: Callable[[dict[str, Any]], dict[str, Any]],
    guard: bool = False,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator giving a command `options`; `build` turns their values into its `replaced`
    parameters (with `guard`, the `out` it builds runs the command inside its error boundary).
    typer reads a command's options from its signature: the wrapper's is the command's own,
    `replaced` swapped for `options` at the end."""

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(func).parameters.values() if p.name not in replaced]
        # Only the command's own annotations are evaluated: the replaced ones name classes
        # (RegistryOptions, Settings) that the CLI imports for type checking only.
        hints = get_type_hints(
            SimpleNamespace(__annotations__={p.name: p.annotation for p in own}), func.__globals__
        )
        params = [p.replace(annotation=hints[p.name]) for p in own] + [
            inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=option, annotation=kind)
            for name, (kind, option) in options.items()
        ]

        @functools.wraps(func)
        def command(**kwargs: Any) -> None:
            given = {name: kwargs.pop(name, None) for name in options}
            built = build(given)
            if not guard:
                func(**built, **kwargs)
                return
            with built["out"].errors():
                func(**built, **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _registry(values: dict[str, Any]) -> dict[str, Any]:
    # imported when a command that talks to registries runs, not when any command starts
    from bindimg.resolve import Settings
    from bindimg.skopeo import RegistryOptions

    return {
        "registry": RegistryOptions(
            authfile=values["authfile"],
            creds=values["creds"],
            cert_dir=values["cert_dir"],
            tls_verify=None if values["tls_verify"] else False,
        ),
        "settings": Settings(jobs=values["jobs"], retry=values["retry"], timeout=values["timeout"]),
    }


registry_command = _with_options(
    ("registry", "settings"),
    {
        "authfile": (Optional[str], AUTHFILE),
        "creds": (Optional[str], CREDS),
        "cert_dir": (Optional[str], CERT_DIR),
        "tls_verify": (bool, TLS_VERIFY),
        "jobs": (int, JOBS),
        "retry": (int, RETRY),
        "timeout": (float, TIMEOUT),
    },
    _registry,
)
"""The registry options, handed to the command as `registry` and `settings`."""


def output_command(formats: Any = Formats) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """-q/-v/--version/--format/--json, which every command takes, handed to it as `out`; the
    command runs inside `Output.errors`, the one error boundary."""
    return _with_options(
        ("out",),
        {
            "fmt": (
                formats,
                typer.Option(formats("text"), "--format", metavar=choices(formats), help="Output format."),
            ),
            "as_json": (bool, JSON),
            "quiet": (bool, QUIET),
            "verbose": (bool, VERBOSE),
            "version": (bool, VERSION),
        },
        lambda v: {
            "out": Output(
                quiet=bool(v["quiet"]),
                verbose=bool(v["verbose"]),
                format="json" if v["as_json"] else v["fmt"].value,
            )
        },
        guard=True,
    )


def podman_spellings(args: list[str]) -> list[str]:
    """podman's `--tls-verify=BOOL` and skopeo's `--dest-tls-verify=BOOL` (Go's flag syntax) as
    the two flags typer knows."""
    spelled: list[str] = []
    for arg in args:
        if arg == "--":
            spelled.extend(args[len(spelled) :])
            break
        flag, _, value = arg.partition("=")
        if flag in ("--tls-verify", "--dest-tls-verify") and value:
            value = value.lower()
            if value not in BOOLEANS:
                fail(
                    f"{flag}={one_line(value)}: not a boolean; use true or false",
                    EXIT_USAGE,
                    wants_json(args),
                )
            arg = flag if BOOLEANS[value] else "--no-" + flag[2:]
        spelled.append(arg)
    return spelled


BOOLEANS = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}  # Go's ParseBool


def wants_json(args: list[str]) -> bool:
    """Whether the command line asks for JSON (for the error of a command line that failed to parse)."""
    return (
        "--json" in args
        or "--format=json" in args
        or any(a == "--format" and b == "json" for a, b in zip(args, args[1:]))
    )
