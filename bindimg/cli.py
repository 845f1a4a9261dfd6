"""The `bindimg` command line: parse options, call the modules, format what they return.

Results go to stdout, progress to stderr, and every failure is one line with the exit code
the spec documents (2 bad input, 3 registry or tool failure); a traceback only with -v.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict
from typing import List, NoReturn, Optional

import typer

from bindimg import __version__
from bindimg import add as add_mod
from bindimg.errors import BindimgError
from bindimg.resolve import DEFAULT_JOBS, DEFAULT_RETRY, DEFAULT_TIMEOUT, Settings
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions

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


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """bindimg binds container images to bootc OS images."""


def _fail(error: BaseException, verbose: bool) -> NoReturn:
    if isinstance(error, BindimgError):
        typer.echo(f"bindimg: error: {error}", err=True)
        raise typer.Exit(error.exit_code)
    if verbose:
        traceback.print_exc()
    typer.echo(
        f"bindimg: internal error: {type(error).__name__}: {error} (run with -v for details)",
        err=True,
    )
    raise typer.Exit(70)


def _progress(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            typer.echo(message, err=True)

    return say


QUIET = typer.Option(False, "-q", "--quiet", help="No progress output.")
VERBOSE = typer.Option(
    False, "-v", "--verbose", help="More detail, and tracebacks on internal errors."
)


@app.command()
def add(
    quadlets: List[str] = typer.Argument(
        ..., metavar="QUADLET...", help=".container or .image units."
    ),
    root: str = typer.Option("/", "--root", help="The image root to work in."),
    no_storage_args: bool = typer.Option(
        False,
        "--no-storage-args",
        help="Do not add the bootc-storage GlobalArgs to .container units.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print a unified diff; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    authfile: Optional[str] = typer.Option(None, "--authfile", help="Registry auth file."),
    creds: Optional[str] = typer.Option(
        None, "--creds", metavar="USER[:PASS]", help="Registry credentials."
    ),
    cert_dir: Optional[str] = typer.Option(
        None, "--cert-dir", help="Directory of registry certificates."
    ),
    tls_verify: bool = typer.Option(
        True, "--tls-verify/--no-tls-verify", help="Verify registry TLS."
    ),
    jobs: int = typer.Option(DEFAULT_JOBS, "--jobs", min=1, help="Parallel registry look-ups."),
    retry: int = typer.Option(
        DEFAULT_RETRY, "--retry", min=0, help="Retries of transient failures."
    ),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT, "--timeout", min=1, help="Seconds per registry request."
    ),
    quiet: bool = QUIET,
    verbose: bool = VERBOSE,
) -> None:
    """Pin each unit's Image= to a digest and link it into bound-images.d."""
    try:
        options = add_mod.AddOptions(
            root=Root(root),
            registry=RegistryOptions(
                authfile=authfile,
                creds=creds,
                cert_dir=cert_dir,
                tls_verify=None if tls_verify else False,
            ),
            settings=Settings(jobs=jobs, retry=retry, timeout=timeout),
            storage_args=not no_storage_args,
        )
        plan = add_mod.plan(quadlets, options, _progress(quiet))
        if not dry_run:
            add_mod.apply(plan)
    except Exception as error:  # one line for the user; traceback only with -v
        _fail(error, verbose)
    if as_json:
        typer.echo(json.dumps({"images": [asdict(e) for e in plan.entries]}, indent=2))
    elif dry_run:
        sys.stdout.write(add_mod.diff(plan))
    else:
        for entry in plan.entries:
            status = "changed" if entry.changed else "unchanged"
            typer.echo(f"{status} {entry.quadlet} {entry.reference}")


def main() -> None:
    app()
