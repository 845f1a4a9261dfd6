"""The `bindimg` command line: parse options, call the modules, format what they return.

Results go to stdout, progress to stderr, and every failure is one line with the exit code
the spec documents (1 check failed, 2 bad input, 3 registry or tool failure); a traceback
only with -v.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import inspect
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, List, NoReturn, Optional, get_type_hints

import typer
import typer.core
from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script

try:  # typer >= 0.24 carries its own click; 0.23 (the zipapp's, for Python 3.9) uses click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover (Python 3.9)
    from click.exceptions import ClickException, UsageError  # type: ignore[import-not-found, no-redef]

from bindimg import __version__, interrupt, lockfile, podmanversion, report, write
from bindimg.commands import add as add_cmd
from bindimg.commands import export as export_cmd
from bindimg.commands import lint as lint_cmd
from bindimg.commands import list as list_cmd
from bindimg.commands import lock as lock_cmd
from bindimg.commands import store as store_cmd
from bindimg.destinations import TRANSPORTS
from bindimg.embed import FLATTEN_MODES, EmbedOptions
from bindimg.errors import (
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_MEANINGS,
    EXIT_USAGE,
    BindimgError,
    InputError,
    one_line,
)
from bindimg.platforms import Platform
from bindimg.resolve import DEFAULT_JOBS, DEFAULT_RETRY, DEFAULT_TIMEOUT, Settings
from bindimg.rootfs import Root
from bindimg.rules import Remote
from bindimg.skopeo import RegistryOptions
from bindimg.store import DEFAULT_STORE, DRIVERS

LOG = logging.getLogger("bindimg")
SHELLS = ("bash", "zsh", "fish")


def completion_script(shell: str) -> str:
    """The script that makes SHELL complete `bindimg` (typer's, i.e. click's protocol over
    the variable _BINDIMG_COMPLETE)."""
    return str(get_completion_script(prog_name="bindimg", complete_var="_BINDIMG_COMPLETE", shell=shell))


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


def _epilog(name: str) -> str:
    """The examples of command `name` as a help epilog (\\b: click keeps the lines as they are)."""
    lines = ["\b", "Examples:"]
    for what, command in EXAMPLES[name]:
        lines += [f"  # {what}", f"  {command}"]
    return "\n".join(lines)


class _Command(typer.core.TyperCommand):
    """A command whose help shows metavars (PATH, FILE, N), never typer's Python types."""

    def format_options(self, ctx: Any, formatter: Any) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "argument":
                args.append((param.metavar or param.name.upper(), getattr(param, "help", "") or ""))
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


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT,
    help="Bind container images to a bootc OS image: pin Quadlet Image= to digests, link them.",
)


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


@app.callback(invoke_without_command=True)
def _main(ctx: typer.Context, version: bool = VERSION) -> None:
    """bindimg binds container images to bootc OS images."""
    if ctx.invoked_subcommand is None:  # bare `bindimg` lists the commands, as skopeo does
        typer.echo(ctx.get_help())


def command(name: str, short: str, **kwargs: Any) -> Callable[[Callable[..., None]], Any]:
    """`app.command`, with the examples as epilog and a short help that is never cut off."""
    return app.command(name, cls=_Command, short_help=short, epilog=_epilog(name), **kwargs)


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

    def podman(self, option: Optional[str], root: Optional[str]) -> podmanversion.Podman:
        """Whose Quadlet rules apply (`--podman-version`, else the root's podman), said with -v."""
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


Formats = enum.Enum("Formats", {name: name for name in ("text", "json")}, type=str)  # type: ignore[misc]
LintFormats = enum.Enum("LintFormats", {name: name for name in report.FORMATS}, type=str)  # type: ignore[misc]
Flatten = enum.Enum("Flatten", {name: name for name in FLATTEN_MODES}, type=str)  # type: ignore[misc]
Driver = enum.Enum("Driver", {name: name for name in DRIVERS}, type=str)  # type: ignore[misc]
Shell = enum.Enum("Shell", {name: name for name in SHELLS}, type=str)  # type: ignore[misc]


def _choices(names: Any) -> str:
    return "[" + "|".join(item.value for item in names) + "]"


# Placeholders for the parameters the decorators below fill in (never seen by typer).
REGISTRY = RegistryOptions()
SETTINGS = Settings()
OUTPUT = Output()

# Options shared by several commands (typer reads these default objects per parameter).
QUIET = typer.Option(False, "-q", "--quiet", help="Print nothing but errors (and JSON asked for).")
VERBOSE = typer.Option(
    False, "-v", "--verbose", help="Show each registry request and decision; tracebacks on internal errors."
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
    metavar=_choices(Driver),
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


def _paths(help: str) -> Any:
    return typer.Argument(None, metavar="PATH", help=help)


def _root(help: str) -> Any:
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
        hints = get_type_hints(func)
        own = [p for p in inspect.signature(func).parameters.values() if p.name not in replaced]
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
    lambda v: {
        "registry": RegistryOptions(
            authfile=v["authfile"],
            creds=v["creds"],
            cert_dir=v["cert_dir"],
            tls_verify=None if v["tls_verify"] else False,
        ),
        "settings": Settings(jobs=v["jobs"], retry=v["retry"], timeout=v["timeout"]),
    },
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
                typer.Option(formats("text"), "--format", metavar=_choices(formats), help="Output format."),
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


def _verbose(out: Output) -> None:
    """-v: each registry request and decision, logged by the modules, on stderr."""
    if out.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("bindimg: %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.DEBUG)


@command("add", "Pin units' Image= to digests and bind them (bound-images.d link or --embed).")
@output_command()
@registry_command
def add(
    quadlets: List[str] = typer.Argument(
        ..., metavar="QUADLET", help=".container or .image units, or directories of them."
    ),
    root: str = ROOT,
    lock: Optional[str] = typer.Option(
        None, "--lock", metavar="FILE", help="Use the digests locked in this file."
    ),
    frozen: bool = typer.Option(False, "--frozen", help="Refuse tags that are neither pinned nor locked."),
    no_storage_args: bool = typer.Option(
        False, "--no-storage-args", help="Do not add the bootc-storage GlobalArgs to .container units."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print a unified diff; write nothing."),
    embed: bool = typer.Option(
        False, "--embed", help="Copy the images into an image store in the root instead of linking."
    ),
    store: str = STORE,
    driver: Driver = DRIVER,
    platform: Optional[List[str]] = typer.Option(
        None,
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="A platform the OS image is built for (repeatable; default: this machine's): each "
        "image must have it. --embed: the image of an index to copy (one platform).",
    ),
    flatten: Flatten = typer.Option(
        Flatten("auto"),
        "--flatten",
        metavar=_choices(Flatten),
        help="--embed: flatten images with whiteouts (auto), always or never.",
    ),
    image_policy: Optional[str] = typer.Option(
        None,
        "--image-policy",
        metavar="missing",
        help="--embed: set Policy=missing in .image units (podman >= 5.6).",
    ),
    rootless: bool = typer.Option(
        False,
        "--rootless",
        help="--embed: also register the store for rootless podman (storage.conf.d, podman >= 6).",
    ),
    podman_version: Optional[str] = PODMAN_VERSION,
    registry: RegistryOptions = REGISTRY,
    settings: Settings = SETTINGS,
    out: Output = OUTPUT,
) -> None:
    """Pin each unit's Image= to a digest and link it into bound-images.d (or --embed it).

    Every file and link written is reported; a second run reports `unchanged` and writes nothing."""
    _verbose(out)
    embedded = platform[0] if platform else None  # `run` refuses several with --embed
    # A root that is no directory is refused by `add` itself, after the lock file is read.
    podman = out.podman(podman_version, root if os.path.isdir(root) else None)
    plan = add_cmd.run(
        quadlets,
        root=root,
        lock_path=lock,
        frozen=frozen,
        storage_args=not no_storage_args,
        embed=EmbedOptions(
            store,
            driver.value,
            embedded,
            flatten.value,
            image_policy,
            dry_run,
            live=sys.stderr.isatty() and not out.quiet,
            rootless=rootless,
        )
        if embed
        else None,
        platforms=platform or [],
        registry=registry,
        settings=settings,
        dry_run=dry_run,
        progress=out.progress,
        podman=podman,
    )
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
        out.progress(
            f"bindimg: dry run, nothing written: {len(files)} files and {len(links)} links would change"
        )
        sys.stdout.write(write.diff(plan))
        return
    for entry in plan.entries:
        out.text(f"{'changed' if entry.changed else 'unchanged'} {entry.quadlet} {entry.reference}")
    for item in files:
        out.text(f"{item['action']} {item['path']}")
    for item in links:
        out.text(f"linked {item['path']} -> {item['target']}")


@command("lock", "Resolve the tags units use into a lock file (bindimg.lock) for offline builds.")
@output_command()
@registry_command
def lock(
    paths: Optional[List[str]] = _paths("Unit files or directories (default: .)."),
    lock_file: str = typer.Option(lockfile.DEFAULT_LOCK, "--lock", metavar="FILE", help="The lock file."),
    update: bool = typer.Option(
        False,
        "--update",
        help="Re-resolve every tag, or only the references given among the arguments "
        "(an argument that is not an existing path is taken as a reference).",
    ),
    check: bool = typer.Option(False, "--check", help="Exit 1 if the lock is missing or stale; offline."),
    rewrite: bool = typer.Option(False, "--rewrite", help="Also pin the source units in place."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    platform: Optional[List[str]] = PLATFORMS,
    podman_version: Optional[str] = PODMAN_VERSION,
    registry: RegistryOptions = REGISTRY,
    settings: Settings = SETTINGS,
    out: Output = OUTPUT,
) -> None:
    """Freeze the tags that units use into a lock file for reproducible builds.

    Prints each change: `REF: OLD -> NEW`, `REF: added DIGEST`, `REF: dropped`."""
    _verbose(out)
    podman = out.podman(podman_version, None)
    result = lock_cmd.run(
        list(paths or []),
        lock_file,
        registry=registry,
        settings=settings,
        update=update,
        check=check,
        rewrite=rewrite,
        dry_run=dry_run,
        targets=Platform.parse_all(platform or []),
        progress=out.progress,
        podman=podman.rules,
    )
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
        out.text(f"{status} {lock_file} ({len(result.entries)} images, {len(result.resolved)} resolved)")
    if check and result.problems:
        raise typer.Exit(EXIT_FINDINGS)


def _sources_or_root(paths: Optional[List[str]], root: Optional[str]) -> List[str]:
    """PATHs and --root are two different questions; default: the units under `.`."""
    if paths and root is not None:
        raise InputError("give PATHs or --root, not both")
    return list(paths or ["."])


@command("lint", "Check units or an image root; exit 1 on an error finding.")
@output_command(LintFormats)
@registry_command
def lint(
    registry: RegistryOptions = REGISTRY,  # (the placeholders' place does not matter: the
    settings: Settings = SETTINGS,  # decorators put their options after the command's own)
    out: Output = OUTPUT,
    paths: Optional[List[str]] = _paths("Unit files, drop-ins or directories (default: .)."),
    root: Optional[str] = _root("Lint an image root: bound-images.d, Quadlet directories, embedded store."),
    lock: Optional[str] = typer.Option(
        None, "--lock", metavar="FILE", help="Check the sources against this lock file."
    ),
    remote: bool = typer.Option(False, "--remote", help="Check that each pinned digest still resolves."),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail too."),
    platform: Optional[List[str]] = PLATFORMS,
    podman_version: Optional[str] = PODMAN_VERSION,
) -> None:
    """Check units or an image root: exit 1 on an error finding (any finding with --strict).

    Finding ids, what they mean and how to fix them: docs/findings.md."""
    _verbose(out)
    sources = _sources_or_root(paths, root)
    if lock is not None and root is not None:
        raise InputError("--lock checks source units; drop --root")
    checker = Remote(registry, settings, out.progress) if remote else None
    podman = out.podman(podman_version, root)
    targets = Platform.parse_all(platform or [])
    findings = lint_cmd.lint(
        sources, root=root, lock_path=lock, remote=checker, targets=targets, podman=podman.rules
    )
    if out.json:
        out.data({**report.as_json(findings), "podman": podman.as_json()})
    else:
        sys.stdout.write(report.FORMATS[out.format](findings))
    counts = report.summary(findings)
    if not out.quiet:
        errors, warnings = _count(counts["errors"], "error"), _count(counts["warnings"], "warning")
        typer.echo(f"bindimg: {errors}, {warnings}", err=True)
    if counts["errors"] or (strict and findings):
        raise typer.Exit(EXIT_FINDINGS)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


@command("list", "List images: what bootc binds from a root (--root), or each unit's image.")
@output_command()
def list_(
    paths: Optional[List[str]] = _paths("Unit files or directories (default: .)."),
    root: Optional[str] = _root("What bootc binds from this image root, and its embedded store."),
    podman_version: Optional[str] = PODMAN_VERSION,
    out: Output = OUTPUT,
) -> None:
    """List images: bootc's logical ones and the embedded store (--root), or each unit's."""
    podman = out.podman(podman_version, root)
    items = list_cmd.list_images(_sources_or_root(paths, root), root, podman.rules)
    if out.json:
        out.data({"images": [asdict(item) for item in items]})
        return
    for item in items:
        where = f"{item.quadlet}:{item.line}" if item.quadlet is not None else "-"
        out.text(f"{item.image}\t{item.type}\t{where}")


@command("export", "Copy the pinned images to a container store, OCI layout, archive or mirror.")
@output_command()
@registry_command
def export(
    units: Optional[List[str]] = typer.Argument(
        None, metavar="UNIT-OR-DIR", help="Units or directories of units."
    ),
    root: Optional[str] = _root("What bootc binds from this image root."),
    lock: Optional[str] = typer.Option(None, "--lock", metavar="FILE", help="Every image of this lock file."),
    to: str = typer.Option(..., "--to", metavar="DEST", help=TRANSPORTS),
    include_embedded: bool = typer.Option(
        False, "--include-embedded", help="--root: also the embedded store's images."
    ),
    platform: Optional[List[str]] = typer.Option(
        None, "--platform", metavar="OS/ARCH[/VARIANT]", help="Only these images of an index (repeatable)."
    ),
    registries_conf: Optional[str] = typer.Option(
        None, "--registries-conf", metavar="FILE", help="docker:// DEST: write a registries.conf drop-in."
    ),
    dest_authfile: Optional[str] = typer.Option(
        None, "--dest-authfile", metavar="FILE", help="Auth file for DEST."
    ),
    dest_creds: Optional[str] = typer.Option(
        None, "--dest-creds", metavar="USER[:PASS]", help="DEST credentials."
    ),
    dest_cert_dir: Optional[str] = typer.Option(
        None, "--dest-cert-dir", metavar="DIR", help="Certificates for DEST."
    ),
    dest_tls_verify: bool = typer.Option(
        True,
        "--dest-tls-verify/--no-dest-tls-verify",
        help="Verify DEST's TLS; --dest-tls-verify=false turns it off.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be copied; copy nothing."),
    registry: RegistryOptions = REGISTRY,
    settings: Settings = SETTINGS,
    out: Output = OUTPUT,
) -> None:
    """Copy the pinned images (of a root, a lock or units) to a container store, OCI layout or mirror.

    One line per image: `exported`, `present` (already there), `planned` (--dry-run) or `failed`."""
    _verbose(out)
    dest = RegistryOptions(dest_authfile, dest_creds, dest_cert_dir, None if dest_tls_verify else False)
    result = export_cmd.run(
        list(units or []),
        root=root,
        lock_path=lock,
        include_embedded=include_embedded,
        to=to,
        dest_options=dest,
        platforms=list(platform or []),
        registries_conf=registries_conf,
        registry=registry,
        settings=settings,
        dry_run=dry_run,
        live=sys.stderr.isatty() and not out.quiet,
        progress=out.progress,
    )
    failure = result.failure()
    if out.json:  # one document: the outcomes, and the error when there is one
        data = result.as_json()
        if failure is not None:
            data["error"] = error_object(str(failure), failure.exit_code)
        out.data(data)
    else:
        for line in result.lines():
            out.text(line)
    if failure is not None:
        fail(str(failure), failure.exit_code, as_json=False)


store_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=CONTEXT,
    help="The embedded image store (an additional image store for podman, under /usr).",
)
app.add_typer(store_app, name="store", short_help="The embedded image store: `store init`.")


@store_app.command("init", cls=_Command, epilog=_epilog("store init"))
@output_command()
def store_init(
    root: str = ROOT,
    store: str = STORE,
    driver: Driver = DRIVER,
    out: Output = OUTPUT,
) -> None:
    """Create an empty store that podman accepts even read-only (idempotent)."""
    inner, created = store_cmd.init(root, store, driver.value)
    if out.json:
        out.data({"path": inner, "driver": driver.value, "changed": created})
    else:
        out.text(f"{'created' if created else 'unchanged'} {inner} ({driver.value})")


@command("completion", "Print the shell completion script for bash, zsh or fish.")
def completion(shell: Shell = typer.Argument(..., metavar=_choices(Shell), help="The shell.")) -> None:
    """Print the completion script for SHELL, as `podman completion SHELL` does."""
    typer.echo(completion_script(shell.value))


def _podman_spellings(args: list[str]) -> list[str]:
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
                    _wants_json(args),
                )
            arg = flag if BOOLEANS[value] else "--no-" + flag[2:]
        spelled.append(arg)
    return spelled


BOOLEANS = {"true": True, "1": True, "t": True, "false": False, "0": False, "f": False}  # Go's ParseBool


def _wants_json(args: list[str]) -> bool:
    """Whether the command line asks for JSON (for the error of a command line that failed to parse)."""
    return (
        "--json" in args
        or "--format=json" in args
        or any(a == "--format" and b == "json" for a, b in zip(args, args[1:]))
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The `bindimg` program: usage errors in the one error style (exit 2), as the others; a
    terminating signal cleans up and ends it by that signal (`interrupt`)."""
    interrupt.run(functools.partial(_run, argv))


def _run(argv: Optional[Sequence[str]]) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    completion_init()
    try:
        code = app(_podman_spellings(args), prog_name="bindimg", standalone_mode=False)
    except typer.Exit as done:
        code = done.exit_code
    except ClickException as error:
        context = getattr(error, "ctx", None)
        where = f" (see `{context.command_path} -h`)" if isinstance(error, UsageError) and context else ""
        try:
            fail(one_line(error.format_message()) + where, EXIT_USAGE, _wants_json(args))
        except typer.Exit as done:
            code = done.exit_code
    except typer.Abort:
        typer.echo("bindimg: error: interrupted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
