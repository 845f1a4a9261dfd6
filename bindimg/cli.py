"""The `bindimg` command line: the typer app, one short function per command that parses its
options, calls its `bindimg.commands` module with plain values and hands the result to
`bindimg.output`.

Results go to stdout, progress to stderr, and every failure is one line with the exit code
the spec documents (1 check failed, 2 bad input, 3 registry or tool failure); a traceback
only with -v. Each command imports its module when it runs: `bindimg lint` never loads the
embedder nor the export destinations, and `--version`, `-h` and shell completion load none.
About 400 lines: most are the options of `add` and `export`, declared where typer reads them.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, List, Optional

import typer
from click.exceptions import ClickException, UsageError
from typer._completion_classes import completion_init
from typer._completion_shared import get_completion_script

from bindimg import interrupt
from bindimg.defaults import DEFAULT_LOCK, TRANSPORTS
from bindimg.errors import EXIT_FINDINGS, EXIT_USAGE, InputError, one_line
from bindimg.options import (
    CONTEXT,
    DRIVER,
    OUTPUT,
    PLATFORMS,
    PODMAN_VERSION,
    REGISTRY,
    ROOT,
    SETTINGS,
    STORE,
    VERSION,
    Command,
    Driver,
    Flatten,
    LintFormats,
    Shell,
    choices,
    epilog,
    output_command,
    path_arguments,
    podman_spellings,
    registry_command,
    root_option,
    wants_json,
)
from bindimg.output import (
    Output,
    fail,
    show_add,
    show_export,
    show_lint,
    show_list,
    show_lock,
    show_store_init,
)

if TYPE_CHECKING:
    from bindimg.resolve import Settings
    from bindimg.skopeo import RegistryOptions


def completion_script(shell: str) -> str:
    """The script that makes SHELL complete `bindimg` (typer's, i.e. click's protocol over
    the variable _BINDIMG_COMPLETE)."""
    return str(get_completion_script(prog_name="bindimg", complete_var="_BINDIMG_COMPLETE", shell=shell))


app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT,
    help="Bind container images to a bootc OS image: pin Quadlet Image= to digests, link them.",
)


@app.callback(invoke_without_command=True)
def _main(ctx: typer.Context, version: bool = VERSION) -> None:
    """bindimg binds container images to bootc OS images."""
    if ctx.invoked_subcommand is None:  # bare `bindimg` lists the commands, as skopeo does
        typer.echo(ctx.get_help())


def command(name: str, short: str, **kwargs: Any) -> Callable[[Callable[..., None]], Any]:
    """`app.command`, with the examples as epilog and a short help that is never cut off."""
    return app.command(name, cls=Command, short_help=short, epilog=epilog(name), **kwargs)


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
        metavar=choices(Flatten),
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
    from bindimg import skopeo

    skopeo.check_version_soon()  # in the background, while the command loads and plans
    from bindimg.commands import add as add_cmd
    from bindimg.embed import EmbedOptions

    out.log_details()
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
    show_add(out, plan, podman, dry_run)


@command("lock", "Resolve the tags units use into a lock file (bindimg.lock) for offline builds.")
@output_command()
@registry_command
def lock(
    paths: Optional[List[str]] = path_arguments("Unit files or directories (default: .)."),
    lock_file: str = typer.Option(DEFAULT_LOCK, "--lock", metavar="FILE", help="The lock file."),
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
    from bindimg import skopeo

    if not check:  # --check reads no registry
        skopeo.check_version_soon()
    from bindimg.commands import lock as lock_cmd
    from bindimg.platforms import Platform

    out.log_details()
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
    show_lock(out, result, lock_file, check, dry_run)
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
    paths: Optional[List[str]] = path_arguments("Unit files, drop-ins or directories (default: .)."),
    root: Optional[str] = root_option(
        "Lint an image root: bound-images.d, Quadlet directories, embedded store."
    ),
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
    from bindimg.commands import lint as lint_cmd
    from bindimg.platforms import Platform
    from bindimg.rules import Remote

    out.log_details()
    sources = _sources_or_root(paths, root)
    if lock is not None and root is not None:
        raise InputError("--lock checks source units; drop --root")
    checker = Remote(registry, settings, out.progress) if remote else None
    podman = out.podman(podman_version, root)
    targets = Platform.parse_all(platform or [])
    findings = lint_cmd.lint(
        sources, root=root, lock_path=lock, remote=checker, targets=targets, podman=podman.rules
    )
    counts = show_lint(out, findings, podman)
    if counts["errors"] or (strict and findings):
        raise typer.Exit(EXIT_FINDINGS)


@command("list", "List images: what bootc binds from a root (--root), or each unit's image.")
@output_command()
def list_(
    paths: Optional[List[str]] = path_arguments("Unit files or directories (default: .)."),
    root: Optional[str] = root_option("What bootc binds from this image root, and its embedded store."),
    podman_version: Optional[str] = PODMAN_VERSION,
    out: Output = OUTPUT,
) -> None:
    """List images: bootc's logical ones and the embedded store (--root), or each unit's."""
    from bindimg.commands import list as list_cmd

    podman = out.podman(podman_version, root)
    show_list(out, list_cmd.list_images(_sources_or_root(paths, root), root, podman.rules))


@command("export", "Copy the pinned images to a container store, OCI layout, archive or mirror.")
@output_command()
@registry_command
def export(
    units: Optional[List[str]] = typer.Argument(
        None, metavar="UNIT-OR-DIR", help="Units or directories of units."
    ),
    root: Optional[str] = root_option("What bootc binds from this image root."),
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
    from bindimg import skopeo

    skopeo.check_version_soon()
    from bindimg.commands import export as export_cmd
    from bindimg.skopeo import RegistryOptions

    out.log_details()
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
    show_export(out, result, failure)
    if failure is not None:
        fail(str(failure), failure.exit_code, as_json=False)


store_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=CONTEXT,
    help="The embedded image store (an additional image store for podman, under /usr).",
)
app.add_typer(store_app, name="store", short_help="The embedded image store: `store init`.")


@store_app.command(
    "init",
    cls=Command,
    short_help="Create an empty store podman accepts read-only.",
    epilog=epilog("store init"),
)
@output_command()
def store_init(
    root: str = ROOT,
    store: str = STORE,
    driver: Driver = DRIVER,
    out: Output = OUTPUT,
) -> None:
    """Create an empty store that podman accepts even read-only (idempotent)."""
    from bindimg.commands import store as store_cmd

    inner, created = store_cmd.init(root, store, driver.value)
    show_store_init(out, inner, driver.value, created)


@command("completion", "Print the shell completion script for bash, zsh or fish.")
def completion(shell: Shell = typer.Argument(..., metavar=choices(Shell), help="The shell.")) -> None:
    """Print the completion script for SHELL, as `podman completion SHELL` does."""
    typer.echo(completion_script(shell.value))


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The `bindimg` program: usage errors in the one error style (exit 2), as the others; a
    terminating signal cleans up and ends it by that signal (`interrupt`)."""
    try:
        interrupt.run(functools.partial(_run, argv))
    finally:
        if argv is None:  # the process ends now (`python -m bindimg`, the console script)
            # Every object is left to the interpreter's exit, whose cyclic collections of the
            # loaded modules took 40-50 ms (a third of `bindimg --version`); files, children
            # and temporary data are closed, waited for and removed before this point.
            gc.freeze()


def _run(argv: Optional[Sequence[str]]) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    completion_init()
    try:
        code = app(podman_spellings(args), prog_name="bindimg", standalone_mode=False)
    except typer.Exit as done:
        code = done.exit_code
    except ClickException as error:
        context = getattr(error, "ctx", None)
        where = f" (see `{context.command_path} -h`)" if isinstance(error, UsageError) and context else ""
        try:
            # click lays its messages out over lines (choices one per line): one line here
            fail(one_line(" ".join(error.format_message().split())) + where, EXIT_USAGE, wants_json(args))
        except typer.Exit as done:
            code = done.exit_code
    except typer.Abort:
        typer.echo("bindimg: error: interrupted", err=True)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
