"""`bindimg export`: copy every bound image, by its pinned digest, to where it is needed.

`bootc install` (default `--bound-images=stored`) finds a logically bound image only in the
install host's container storage, under the exact `Image=` string; disk and ISO builders carry
none; a disconnected site needs a mirror. Export answers all three with skopeo, to the
destinations of `bindimg.destinations`.

What to export: the images bootc binds from a root (as `list --root`; `--include-embedded`
adds the root's embedded store), the entries of a lock, or the units given. Only pinned
digests are copied, never a tag looked up. What DEST already holds is not copied again; every
image gets its own outcome, and a failure names what was and was not exported.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from bindimg import fsutil, lockfile, reference
from bindimg.commands.list import list_root, unit_images
from bindimg.destinations import Copier, Destination, MirrorDestination, Wanted, destination
from bindimg.errors import EXIT_EXTERNAL, BindimgError, ExternalError, InputError, excerpt
from bindimg.platforms import Platform
from bindimg.progress import Bar, Live
from bindimg.quadlet import IMAGE
from bindimg.reference import ReferenceError
from bindimg.registry import Registry, or_skopeo
from bindimg.resolve import Settings
from bindimg.rootfs import Root, root_display
from bindimg.skopeo import RegistryOptions
from bindimg.store import DEFAULT_STORE, DRIVERS, Store
from bindimg.units import image_reference, image_unit_registry_options

Progress = Callable[[str], None]


# --- what to export ------------------------------------------------------------------------


def _pinned(value: str, kind: str, path: str, line: int) -> Wanted:
    ref = image_reference(value, path, line)  # a UnitProblem names the file and line
    if ref.digest is None:
        raise InputError(
            f"Image={excerpt(value)} is not pinned by digest, and export copies pinned images only; "
            "pin it with `bindimg add` (or `bindimg lock --rewrite`)",
            path=path,
            line=line,
        )
    return Wanted(ref.canonical_name, ref.digest, kind, path, line)


def from_root(root: Root, shown: str, include_embedded: bool = False) -> list[Wanted]:
    """What bootc binds from `root` (as `list --root`, failing where bootc fails), then with
    `include_embedded` the images of its embedded store, which are copied from that store."""
    wanted = [
        _pinned(item.image, "logical", item.quadlet or shown, item.line or 0)
        for item in list_root(root, root_display(root, shown))
        if item.type == "logical"
    ]
    if include_embedded:
        for driver in DRIVERS:
            store = Store(root, DEFAULT_STORE, driver)
            names = sorted(store.names())
            if names:
                store.check_confined()  # skopeo reads it (and takes its locks) on the host
            for name in names:
                try:
                    ref = reference.parse(name)
                    canonical = ref.canonical_name
                except ReferenceError as error:
                    raise InputError(
                        f"the store holds {excerpt(name)}, not an image name: {error}", path=store.host
                    ) from None
                if ref.digest is None:
                    raise InputError(
                        f"the store holds {excerpt(name)}, which is not pinned by digest; "
                        "embed it again with `bindimg add --embed`",
                        path=store.host,
                    )
                wanted.append(Wanted(canonical, ref.digest, "embedded", None, None, store))
    return wanted


def from_lock(path: str) -> list[Wanted]:
    """Every entry of a lock file, as NAME@DIGEST."""
    return [
        Wanted(reference.parse(key).canonical_name, entry.digest, "lock", path, None)
        for key, entry in sorted(lockfile.load(path).items())
    ]


def from_units(paths: list[str]) -> list[Wanted]:
    """Each unit's image as Podman Quadlet runs it (drop-ins applied, `.image` followed); a
    `.image` unit's own AuthFile=, Creds=, CertDir=, TLSVerify= apply to its image."""
    wanted: list[Wanted] = []
    for item, setting in unit_images(paths):
        found = _pinned(item.image, "unit", item.quadlet or "", item.line or 0)
        if setting.group == IMAGE:
            found = replace(found, options=image_unit_registry_options(setting.merged, Root("/")))
        wanted.append(found)
    return wanted


def unique(wanted: Sequence[Wanted]) -> list[Wanted]:
    """Each image once, named by its first source; registry options of a `.image` unit kept."""
    seen: dict[str, Wanted] = {}
    for item in wanted:
        first = seen.setdefault(item.image, item)
        if first.options == RegistryOptions() and item.options != RegistryOptions():
            seen[item.image] = replace(first, options=item.options)
    return list(seen.values())


# --- the run ------------------------------------------------------------------------------


STATUSES = ("exported", "present", "planned", "failed")


@dataclass(frozen=True)
class Outcome:
    """What happened to one image: exported, present (DEST had it), planned (--dry-run) or failed."""

    item: Wanted
    status: str
    error: Optional[BindimgError] = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "image": self.item.image,
            "type": self.item.type,
            "quadlet": self.item.quadlet,
            "line": self.item.line,
            "status": self.status,
        }
        if self.error is not None:
            found["error"] = str(self.error)
        return found


@dataclass
class Export:
    """The request: images, DEST and how."""

    wanted: list[Wanted]
    to: str
    copier: Copier
    platforms: list[Platform] = field(default_factory=list)
    registries_conf: Optional[str] = None
    dry_run: bool = False
    live: bool = False  # a live line per image with bytes done/total (stderr is a terminal)


@dataclass
class Result:
    to: str
    outcomes: list[Outcome]
    registries_conf: Optional[str] = None

    def as_json(self) -> dict[str, Any]:
        return {
            "to": self.to,
            "images": [o.as_json() for o in self.outcomes],
            "registries_conf": self.registries_conf,
        }

    def lines(self) -> list[str]:
        """`STATUS IMAGE`, one per image; a failure's reason follows on its line."""
        return [
            f"{o.status} {o.item.image}" + (f": {o.error}" if o.error is not None else "")
            for o in self.outcomes
        ]

    def failure(self) -> Optional[BindimgError]:
        """One error saying what was and was not exported (exit 3, or 2 when only input failed)."""
        failed = [o for o in self.outcomes if o.error is not None]
        if not failed:
            return None
        done = [o.item.image for o in self.outcomes if o.status == "exported"]
        present = [o.item.image for o in self.outcomes if o.status == "present"]
        message = (
            f"{len(failed)} of {len(self.outcomes)} images not exported to {self.to}: "
            f"{failed[0].item.image}: {failed[0].error}"
            + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "")
            + f"; exported: {', '.join(done) or 'none'}; already there: {', '.join(present) or 'none'}"
        )
        first = failed[0].item  # a unit's image (the first unit of several) is named by its Image=
        path, line = (first.quadlet, first.line) if first.line else (None, None)
        if any(o.error is not None and o.error.exit_code == EXIT_EXTERNAL for o in failed):
            return ExternalError(message, path=path, line=line)
        return InputError(message, path=path, line=line)


@contextlib.contextmanager
def _runroot() -> Iterator[str]:
    """A private run directory for copies out of an embedded store (never the host's)."""
    run_dir = fsutil.RunDir("runroot")  # a killed run's is swept by the next
    try:
        yield run_dir.path
    finally:
        run_dir.close()


def run(
    paths: Sequence[str],
    *,
    root: Optional[str] = None,
    lock_path: Optional[str] = None,
    include_embedded: bool = False,
    to: str,
    dest_options: RegistryOptions = RegistryOptions(),
    platforms: Sequence[str] = (),
    registries_conf: Optional[str] = None,
    registry: RegistryOptions = RegistryOptions(),
    settings: Settings = Settings(),
    dry_run: bool = False,
    live: bool = False,
    progress: Progress = lambda _: None,
    client: Optional[Registry] = None,
) -> Result:
    """`bindimg export`: the images of exactly one of `root`, `lock_path` or `paths` (units or
    directories), to `to`; `dest_options` reach a mirror DEST, `registry` the sources. `live`:
    a live line per image (bytes done/total) instead of a line when each starts and ends.

    Raises InputError (nothing copied) for a source, DEST or option that cannot work; a
    failure to copy an image is that image's outcome (`Result.failure`).
    """
    if sum((root is not None, lock_path is not None, bool(paths))) != 1:
        raise InputError("give one of --root DIR, --lock FILE or UNIT-OR-DIR...")
    if include_embedded and root is None:
        raise InputError("--include-embedded: only with --root (the embedded store is in the root)")
    if root is not None:
        wanted = from_root(Root(root), root, include_embedded)
    elif lock_path is not None:
        wanted = from_lock(lock_path)
    else:
        wanted = from_units(list(paths))
    request = Export(
        unique(wanted),
        to,
        Copier(registry, dest_options, settings, or_skopeo(client)),
        [Platform.parse(text) for text in platforms],
        registries_conf,
        dry_run,
        live,
    )
    return export(request, progress)


def export(request: Export, progress: Progress = lambda _: None) -> Result:
    """Export every wanted image that DEST lacks, `jobs` at a time; each image's own outcome.

    Raises InputError (nothing copied) for a DEST or option that cannot work.
    """
    dest = destination(request.to, request.copier)
    try:
        return _run(request, dest, progress)
    finally:
        dest.close()


def _check(request: Export, dest: Destination) -> None:
    if request.registries_conf is not None and not isinstance(dest, MirrorDestination):
        raise InputError("--registries-conf: only with --to docker://MIRROR (it maps sources to the mirror)")
    if isinstance(dest, MirrorDestination):
        if request.platforms:
            raise InputError(
                "--platform: a mirror gets every platform of an index (a registry refuses an index "
                "whose images it lacks, and a smaller index would not have the pinned digest); drop "
                "--platform, or export only some platforms to oci:DIR or oci-archive:FILE"
            )
        by_repo: dict[str, str] = {}
        for item in request.wanted:
            other = by_repo.setdefault(dest.repository(item.name), item.name)
            if other != item.name:
                raise InputError(
                    f"{other} and {item.name} would both be mirrored as {dest.repository(item.name)}; "
                    "export them to different --to prefixes"
                )
    if not dest.multi_platform and len(request.platforms) > 1:
        raise InputError(
            "--platform: containers-storage holds one image per name; "
            "give one --platform (default: this machine's)"
        )


def _run(request: Export, dest: Destination, progress: Progress) -> Result:
    _check(request, dest)
    if request.wanted:
        request.copier.client.ready()  # a missing skopeo is one line, before any progress
    total = len(request.wanted)
    counter = iter(range(1, total + 1))
    lock = threading.Lock()

    meter = Live() if request.live and not request.dry_run else None

    def work(item: Wanted, runroot: str) -> Outcome:
        started = time.monotonic()
        bar: Optional[Bar] = None
        try:
            if dest.holds(item):
                return Outcome(item, "present")
            if request.dry_run:
                return Outcome(item, "planned")
            with lock:
                number = next(counter)
            if meter is None:
                progress(f"[{number}/{total}] exporting {item.image}")
                dest.put(item, request.platforms, runroot)
            else:
                plan = dest.plan(item, request.platforms, runroot)
                bar = meter.bar(item.image, plan.size, f"{plan.blobs}/{plan.total} blobs new")
                dest.put(item, request.platforms, runroot, bar.advance)
        except BindimgError as error:
            if bar is not None:
                bar.end(f"failed: {error}", complete=False)
            else:
                progress(f"failed {item.image}: {error}")
            return Outcome(item, "failed", error, time.monotonic() - started)
        seconds = time.monotonic() - started
        if bar is not None:
            bar.end(f"exported in {seconds:.1f} s: {plan.blobs} of {plan.total} blobs new, {plan.size} bytes")
        else:
            progress(f"exported {item.image} ({seconds:.1f} s)")
        return Outcome(item, "exported", seconds=seconds)

    jobs = max(1, min(request.copier.settings.jobs, total or 1))
    try:
        with _runroot() as runroot, ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(lambda item: work(item, runroot), request.wanted))
    finally:
        if meter is not None:
            meter.close()
    if not request.dry_run:
        dest.finish()
    counts = {status: sum(o.status == status for o in outcomes) for status in STATUSES}
    progress(", ".join(f"{count} {status}" for status, count in counts.items() if count) or "no images")
    result = Result(request.to, outcomes)
    if isinstance(dest, MirrorDestination) and request.registries_conf is not None and not request.dry_run:
        mirrored = [o.item for o in outcomes if o.status in ("exported", "present")]
        path = os.path.abspath(request.registries_conf)
        fsutil.write_atomic(
            path, dest.registries_conf(mirrored, insecure=request.copier.dest.tls_verify is False)
        )
        result.registries_conf = request.registries_conf
    return result
