"""`bindimg add`: plan every edit and link first, resolve, then write all or nothing.

The flow is one way: read and check every unit (nothing is written), collect the tags that
need the registry, resolve them concurrently, render the new bytes, and only then stage and
rename the files. Any failure before the renames leaves the root exactly as it was.

With `--embed` the images are also copied into the store (and flattened there where
whiteouts require it) while planning: the unit pins the flattened digest, so it must be known
before rendering. `apply` keeps them and writes the units; any failure before that, or in
writing, takes this run's images out of the store again (embed.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Optional

from bindimg import lockfile, skopeo
from bindimg.collect import UNIT_EXTENSIONS, AddOptions, Collector
from bindimg.commands.lint import lint_root
from bindimg.composefs import COMPOSEFS_ADVICE, find_uki
from bindimg.embed import Embedder, EmbedOptions, Prepared
from bindimg.errors import BindimgError, ExternalError, InputError
from bindimg.findings import Finding
from bindimg.platforms import Platform
from bindimg.podmanversion import NEWEST, NEWEST_RULES, Podman, Version
from bindimg.registry import Registry, or_skopeo
from bindimg.render import Renderer
from bindimg.report import as_text
from bindimg.resolve import Request, Settings, resolve_all
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.unitset import source_units
from bindimg.write import Plan, apply

__all__ = ["AddOptions", "expand_dirs", "findings_on", "plan", "run"]


def plan(
    paths: list[str],
    options: AddOptions,
    progress: Callable[[str], None] = lambda _: None,
    given: Optional[list[str]] = None,
) -> Plan:
    """Everything `add` would do, without writing anything (registry look-ups included).
    `paths` are unit files; `given` the PATHs as given (directories not expanded; default
    `paths`), whose source trees supply the drop-ins of units outside the root.

    With `--embed` the images are copied into the store (and flattened there) while planning;
    `Plan.close()` takes them out again unless `apply` succeeded (with `--dry-run` only their
    manifests are read).
    """
    uki = find_uki(options.root) if options.embed is None else None
    if uki is not None:
        raise InputError(COMPOSEFS_ADVICE, path=options.root.host_path(uki))
    planner = Collector(options, given if given is not None else paths)
    policy = options.embed.image_policy if options.embed else None
    rootless = options.embed is not None and options.embed.rootless
    renderer = Renderer(planner, options.storage_args, policy, rootless)
    embedder = None
    if options.embed:
        embedder = Embedder(options.root, options.embed, options.settings, progress, options.client)
    for path in paths:
        planner.add(path)
    for dropin in planner.uninstalled:
        progress(
            f"note: {dropin}: drop-in not installed (add installs unit files only); "
            "copy it into the root if the unit needs it"
        )
    planner.check_embedded(progress)
    planner.check_bound_dir()
    where: dict[Request, tuple[str, int]] = {}
    for b in planner.bound.values():  # a registry failure names the first unit of its image
        if b.request is not None:
            where.setdefault(b.request, (b.source.path, b.line))
    resolved = resolve_all(where, options.settings, progress, options.client, where)
    planner.check_platforms(resolved)
    digests = {request: result.digest for request, result in resolved.items()}
    if embedder is None:
        return renderer.render(digests)
    try:
        prepared: dict[str, Prepared] = {}
        for dest, bound in planner.bound.items():
            digest = digests[bound.request] if bound.request is not None else bound.digest
            assert digest is not None
            name = bound.ref.canonical_name
            try:
                prepared[dest] = embedder.prepare(
                    name, digest, bound.flattened_from, bound.options, dest, bound.installed
                )
            except ExternalError as error:  # a registry failure names the (first) unit's Image=
                if error.path is None and not isinstance(error, skopeo.ToolError):
                    error.path, error.line = bound.source.path, bound.line
                raise
        result = renderer.render(digests, prepared, embedder.store)
    except BaseException:
        embedder.close()
        raise
    result.embedded = list(prepared.values())
    result.embedder = embedder
    return result


def expand_dirs(paths: list[str], podman: Version = NEWEST_RULES) -> list[str]:
    """`add DIR`: the .container and .image units under DIR (as Quadlet searches it); a
    directory without any is an InputError."""
    expanded: list[str] = []
    for path in paths:
        if not os.path.isdir(path) or path.endswith(UNIT_EXTENSIONS):  # a unit that is a directory:
            expanded.append(path)  # refused as such
            continue
        _, files = source_units([path], podman)
        units = [f for f in files if f.endswith(UNIT_EXTENSIONS)]
        if not units:
            raise InputError("no .container or .image units in this directory", path=path)
        expanded.extend(units)
    return expanded


def run(
    quadlets: list[str],
    *,
    root: str,
    lock_path: Optional[str] = None,
    frozen: bool = False,
    storage_args: bool = True,
    embed: Optional[EmbedOptions] = None,
    platforms: Sequence[str] = (),
    registry: RegistryOptions,
    settings: Settings,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda _: None,
    podman: Podman = NEWEST,
    client: Optional[Registry] = None,
) -> Plan:
    """`bindimg add`: plan, then (unless `dry_run`) apply; the plan, closed, says what changed.
    After writing, the warnings `lint --root` gives on what it wrote go to `progress`.

    `lock_path`: take the digests of tags from this lock file instead of the registry.
    `platforms`: what the OS image is built for (`--platform`; default: this machine's).
    `client`: who asks the registries and copies (default: a new `registry.Skopeo`).
    """
    locked = lockfile.load(lock_path) if lock_path else {}
    targets = Platform.parse_all(platforms) or (Platform.host(),)
    if embed is not None and len(targets) > 1:
        raise InputError("--embed copies one platform's image: give one --platform per OS image build")
    image_root = Root(root)
    options = AddOptions(
        root=image_root,
        registry=registry,
        settings=settings,
        storage_args=storage_args,
        locked=locked,
        frozen=frozen,
        embed=embed,
        platforms=targets,
        podman=podman.rules,
        client=or_skopeo(client),
    )
    with image_root.locked(progress):  # one run at a time on a root, planning included
        # --embed copies into the store while planning
        planned = plan(expand_dirs(quadlets, options.podman), options, progress, quadlets)
        try:
            if not dry_run:
                apply(planned)
                for found in findings_on(planned, options):
                    progress(as_text([found]).rstrip("\n"))
        finally:
            planned.close()
    return planned


def findings_on(plan_: Plan, options: AddOptions) -> list[Finding]:
    """What `lint --root` says about the units and links this run wrote or kept (after
    `apply`): its refusals leave no error there, but the warnings are the user's to see."""
    root = options.root
    try:
        found = lint_root(root, root.host, podman=options.podman)
    except BindimgError:  # something else in the root is unreadable: not this run's to report
        return []
    return [f for f in found if f.path in plan_.touched]
