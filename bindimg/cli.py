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
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, List, Optional, get_type_hints

import typer

from bindimg import __version__, interrupt, lockfile, podmanversion, report, write
from bindimg.commands import add as add_cmd
from bindimg.commands import export as export_cmd
from bindimg.commands import lint as lint_cmd
from bindimg.commands import list as list_cmd
from bindimg.commands import lock as lock_cmd
from bindimg.commands import store as store_cmd
from bindimg.destinations import TRANSPORTS
from bindimg.embed import FLATTEN_MODES, EmbedOptions
from bindimg.errors import EXIT_FINDINGS, EXIT_INTERNAL, BindimgError, one_line
from bindimg.platforms import Platform
from bindimg.resolve import DEFAULT_JOBS, DEFAULT_RETRY, DEFAULT_TIMEOUT, Settings
from bindimg.rootfs import Root
from bindimg.rules import Remote
from bindimg.skopeo import RegistryOptions
from bindimg.store import DEFAULT_STORE, DRIVERS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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


@app.callback()
def _main(version: bool = VERSION) -> None:
    """bindimg binds container images to bootc OS images."""


@dataclass(frozen=True)
class Output:
    """Where a command talks: results on stdout, progress (unless -q) and failures on stderr."""

    quiet: bool = False
    verbose: bool = False

    def progress(self, message: str) -> None:
        if not self.quiet:
            typer.echo(message, err=True)

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
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise  # typer's own: usage errors and exits
        except BindimgError as error:
            typer.echo(f"bindimg: error: {error}", err=True)
            raise typer.Exit(error.exit_code) from None
        except Exception as error:
            if self.verbose:
                traceback.print_exc()
            typer.echo(
                f"bindimg: internal error: {type(error).__name__}: {one_line(str(error))} "
                "(run with -v for details)",
                err=True,
            )
            raise typer.Exit(EXIT_INTERNAL) from None


Format = enum.Enum("Format", {name: name for name in report.FORMATS}, type=str)  # type: ignore[misc]
Flatten = enum.Enum("Flatten", {name: name for name in FLATTEN_MODES}, type=str)  # type: ignore[misc]
Driver = enum.Enum("Driver", {name: name for name in DRIVERS}, type=str)  # type: ignore[misc]


# Placeholders for the parameters the decorators below fill in (never seen by typer).
REGISTRY = RegistryOptions()
SETTINGS = Settings()
OUTPUT = Output()

# Options shared by several commands (typer reads these default objects per parameter).
QUIET = typer.Option(False, "-q", "--quiet", help="No progress output.")
VERBOSE = typer.Option(False, "-v", "--verbose", help="More detail, and tracebacks on internal errors.")
ROOT = typer.Option("/", "--root", help="The image root to work in.")
AUTHFILE = typer.Option(None, "--authfile", help="Registry auth file (default: skopeo's lookup).")
CREDS = typer.Option(None, "--creds", metavar="USER[:PASS]", help="Registry credentials.")
CERT_DIR = typer.Option(None, "--cert-dir", help="Directory of registry certificates.")
TLS_VERIFY = typer.Option(True, "--tls-verify/--no-tls-verify", help="Verify registry TLS.")
JOBS = typer.Option(DEFAULT_JOBS, "--jobs", min=1, help="Parallel registry look-ups.")
RETRY = typer.Option(DEFAULT_RETRY, "--retry", min=0, help="Retries of transient failures.")
TIMEOUT = typer.Option(DEFAULT_TIMEOUT, "--timeout", min=1, help="Seconds per registry request.")
STORE = typer.Option(DEFAULT_STORE, "--store", help="The embedded image store, inside the root.")
PLATFORMS = typer.Option(
    None,
    "--platform",
    metavar="OS/ARCH[/VARIANT]",
    help="A platform the OS image is built for (repeatable): each bound image must have it.",
)
PODMAN_VERSION = typer.Option(
    None,
    "--podman-version",
    metavar="X.Y",
    help="Read units as this podman's Quadlet does (default: the root's podman package, else the newest).",
)
DRIVER = typer.Option(
    Driver("overlay"), "--driver", help="The storage driver of the podman that reads the store."
)


def _paths(help: str) -> Any:
    return typer.Argument(None, metavar="PATH", help=help)


def _root(help: str) -> Any:
    """--root of lint and list: optional, since PATHs are the other question they answer."""
    return typer.Option(None, "--root", help=help)


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

output_command = _with_options(
    ("out",),
    {"quiet": (bool, QUIET), "verbose": (bool, VERBOSE), "version": (bool, VERSION)},
    lambda v: {"out": Output(quiet=bool(v["quiet"]), verbose=bool(v["verbose"]))},
    guard=True,
)
"""-q/-v/--version, which every command takes, handed to it as `out`; the command runs inside
`Output.errors`, the one error boundary."""


@app.command()
@output_command
@registry_command
def add(
    quadlets: List[str] = typer.Argument(..., metavar="QUADLET", help=".container or .image units."),
    root: str = ROOT,
    lock: Optional[str] = typer.Option(None, "--lock", help="Use the digests locked in this file."),
    frozen: bool = typer.Option(False, "--frozen", help="Refuse tags that are neither pinned nor locked."),
    no_storage_args: bool = typer.Option(
        False, "--no-storage-args", help="Do not add the bootc-storage GlobalArgs to .container units."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print a unified diff; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
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
        Flatten("auto"), "--flatten", help="--embed: auto (images with whiteouts), always or never."
    ),
    image_policy: Optional[str] = typer.Option(
        None, "--image-policy", help="--embed: `missing` sets Policy=missing in .image units (podman >= 5.6)."
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
    """Pin each unit's Image= to a digest and link it into bound-images.d (or --embed it)."""
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
    if as_json:
        document = {"images": [e.as_json() for e in plan.entries], "podman": podman.as_json()}
        typer.echo(json.dumps(document, indent=2))
    elif dry_run:
        sys.stdout.write(write.diff(plan))
    else:
        for entry in plan.entries:
            status = "changed" if entry.changed else "unchanged"
            typer.echo(f"{status} {entry.quadlet} {entry.reference}")


@app.command()
@output_command
@registry_command
def lock(
    paths: Optional[List[str]] = _paths("Unit files or directories (default: .)."),
    lock_file: str = typer.Option(lockfile.DEFAULT_LOCK, "--lock", help="The lock file."),
    update: bool = typer.Option(
        False,
        "--update",
        help="Re-resolve every tag, or only the references given among the arguments "
        "(an argument that is not an existing path is taken as a reference).",
    ),
    check: bool = typer.Option(False, "--check", help="Exit 1 if the lock is missing or stale; offline."),
    rewrite: bool = typer.Option(False, "--rewrite", help="Also pin the source units in place."),
    platform: Optional[List[str]] = PLATFORMS,
    podman_version: Optional[str] = PODMAN_VERSION,
    registry: RegistryOptions = REGISTRY,
    settings: Settings = SETTINGS,
    out: Output = OUTPUT,
) -> None:
    """Freeze the tags that units use into a lock file for reproducible builds."""
    podman = out.podman(podman_version, None)
    result = lock_cmd.run(
        list(paths or []),
        lock_file,
        registry=registry,
        settings=settings,
        update=update,
        check=check,
        rewrite=rewrite,
        targets=Platform.parse_all(platform or []),
        progress=out.progress,
        podman=podman.rules,
    )
    if check:
        for problem in result.problems:
            typer.echo(problem)
        if result.problems:
            raise typer.Exit(EXIT_FINDINGS)
        return
    for path in result.rewritten:
        typer.echo(f"pinned {path}")
    status = "written" if result.written else "unchanged"
    typer.echo(f"{status} {lock_file} ({len(result.entries)} images, {len(result.resolved)} resolved)")


def _sources_or_root(paths: Optional[List[str]], root: Optional[str]) -> List[str]:
    """PATHs and --root are two different questions; default: the units under `.`."""
    if paths and root is not None:
        raise typer.BadParameter("give PATHs or --root, not both", param_hint="PATH")
    return list(paths or ["."])


@app.command()
@output_command
@registry_command
def lint(
    registry: RegistryOptions = REGISTRY,  # (the placeholders' place does not matter: the
    settings: Settings = SETTINGS,  # decorators put their options after the command's own)
    out: Output = OUTPUT,
    paths: Optional[List[str]] = _paths("Unit files, drop-ins or directories (default: .)."),
    root: Optional[str] = _root("Lint an image root: bound-images.d, Quadlet directories, embedded store."),
    fmt: Format = typer.Option(Format("text"), "--format", help="The report format."),
    lock: Optional[str] = typer.Option(None, "--lock", help="Check the sources against this lock file."),
    remote: bool = typer.Option(False, "--remote", help="Check that each pinned digest still resolves."),
    strict: bool = typer.Option(False, "--strict", help="Warnings fail too."),
    platform: Optional[List[str]] = PLATFORMS,
    podman_version: Optional[str] = PODMAN_VERSION,
) -> None:
    """Check units or an image root: exit 1 on an error finding (any finding with --strict)."""
    sources = _sources_or_root(paths, root)
    if lock is not None and root is not None:
        raise typer.BadParameter("--lock checks source units; drop --root", param_hint="--lock")
    checker = Remote(registry, settings, out.progress) if remote else None
    podman = out.podman(podman_version, root)
    targets = Platform.parse_all(platform or [])
    findings = lint_cmd.lint(
        sources, root=root, lock_path=lock, remote=checker, targets=targets, podman=podman.rules
    )
    if fmt.value == "json":
        document = {**report.as_json(findings), "podman": podman.as_json()}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(report.FORMATS[fmt.value](findings))
    counts = report.summary(findings)
    if not out.quiet:
        errors, warnings = _count(counts["errors"], "error"), _count(counts["warnings"], "warning")
        typer.echo(f"bindimg: {errors}, {warnings}", err=True)
    if counts["errors"] or (strict and findings):
        raise typer.Exit(EXIT_FINDINGS)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


@app.command("list")
@output_command
def list_(
    paths: Optional[List[str]] = _paths("Unit files or directories (default: .)."),
    root: Optional[str] = _root("What bootc binds from this image root, and its embedded store."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    podman_version: Optional[str] = PODMAN_VERSION,
    out: Output = OUTPUT,
) -> None:
    """List images: bootc's logical ones and the embedded store (--root), or each unit's."""
    podman = out.podman(podman_version, root)
    items = list_cmd.list_images(_sources_or_root(paths, root), root, podman.rules)
    if as_json:
        typer.echo(json.dumps([asdict(item) for item in items], indent=2))
        return
    for item in items:
        where = f"{item.quadlet}:{item.line}" if item.quadlet is not None else "-"
        typer.echo(f"{item.image}\t{item.type}\t{where}")


@app.command()
@output_command
@registry_command
def export(
    units: Optional[List[str]] = typer.Argument(
        None, metavar="UNIT-OR-DIR", help="Units or directories of units."
    ),
    root: Optional[str] = typer.Option(None, "--root", help="What bootc binds from this image root."),
    lock: Optional[str] = typer.Option(None, "--lock", help="Every image of this lock file."),
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
    dest_authfile: Optional[str] = typer.Option(None, "--dest-authfile", help="Auth file for DEST."),
    dest_creds: Optional[str] = typer.Option(
        None, "--dest-creds", metavar="USER[:PASS]", help="DEST credentials."
    ),
    dest_cert_dir: Optional[str] = typer.Option(None, "--dest-cert-dir", help="Certificates for DEST."),
    dest_tls_verify: bool = typer.Option(
        True, "--dest-tls-verify/--no-dest-tls-verify", help="Verify DEST's TLS."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be copied; copy nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    registry: RegistryOptions = REGISTRY,
    settings: Settings = SETTINGS,
    out: Output = OUTPUT,
) -> None:
    """Copy the pinned images (of a root, a lock or units) to a container store, OCI layout or mirror."""
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
        progress=out.progress,
    )
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
    else:
        for line in result.lines():
            typer.echo(line)
    failure = result.failure()
    if failure is not None:
        raise failure


store_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The embedded image store (an additional image store for podman, under /usr).",
)
app.add_typer(store_app, name="store")


@store_app.command("init")
@output_command
def store_init(
    root: str = ROOT,
    store: str = STORE,
    driver: Driver = DRIVER,
    out: Output = OUTPUT,
) -> None:
    """Create an empty store that podman accepts even read-only (idempotent)."""
    inner, created = store_cmd.init(root, store, driver.value)
    if not out.quiet:
        typer.echo(f"{'created' if created else 'unchanged'} {inner} ({driver.value})")


def main() -> None:
    interrupt.run(app)
