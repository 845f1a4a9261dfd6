"""The rendering step of `add`: the new bytes of every unit it collected, and the links.

`Collected` is what the collecting step (`bindimg.commands.add`) found: the bound images and
the units to write. `Renderer` pins each one to its resolved (or embedded) digest, adds the
storage arguments (and Pull=/Policy= for embedded units), checks that both parsers read the
pin back, and returns the `write.Plan`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from bindimg import pin, reference, storageconf
from bindimg.bootcini import parse_bootc
from bindimg.boundimages import Link, plan_link
from bindimg.embed import Prepared
from bindimg.podmanversion import NEWEST_RULES, Version
from bindimg.quadlet import (
    CONTAINER,
    IMAGE,
    KEY_GLOBAL_ARGS,
    KEY_IMAGE,
    KEY_POLICY,
    KEY_PULL,
    UnitFile,
    parse_quadlet,
)
from bindimg.resolve import Request
from bindimg.rootfs import Root
from bindimg.skopeo import RegistryOptions
from bindimg.store import Store
from bindimg.unitset import Source, UnitSet, search_dirs
from bindimg.write import Entry, Plan, changed_files


@dataclass
class Bound:
    """One image to pin and link: the unit that carries it and where its digest comes from."""

    dest: str  # host path the pinned unit is written to
    unit: str  # the unit as Quadlet names it, inside the root (an instance or alias symlink): the link
    source: Source  # the text that is pinned (the installed source, or dest itself)
    line: int  # physical line of Image=
    value: str  # Image= as found
    ref: reference.Reference
    origin: str  # what the provenance comment names
    request: Optional[Request]
    digest: Optional[str]
    companions: list[Source] = field(default_factory=list)  # containers that use it by name
    options: RegistryOptions = field(default_factory=RegistryOptions)
    flattened_from: Optional[str] = None  # the value is a flattened digest of this upstream one
    installed: Optional[tuple[str, str]] = None  # the installed unit's (flattened, upstream) digests
    offers: Optional[tuple[tuple[str, ...], str]] = None  # (platforms, media type), from the lock


class Collected:
    """The units `add` read: each bound image by destination, and the sources to write."""

    def __init__(self, root: Root, podman: Version = NEWEST_RULES) -> None:
        self.root = root
        self.units = UnitSet(search_dirs(root, podman=podman), root, podman)
        self.bound: dict[str, Bound] = {}
        self.writes: dict[str, Source] = {}  # dest -> source text to write (containers edited)

    def merged(self, dest: str, source: Source) -> UnitFile:
        return source.unit.merged([d.unit for d in self.units.dropins(os.path.basename(dest))])

    def dest_of(self, source: Source) -> str:
        return next(dest for dest, s in self.writes.items() if s is source)


class Renderer:
    """New bytes for collected units; `image_policy` is `--image-policy` (embedded units)."""

    def __init__(
        self, collected: Collected, storage_args: bool, image_policy: Optional[str], rootless: bool = False
    ) -> None:
        self.collected = collected
        self.storage_args = storage_args
        self.image_policy = image_policy
        self.rootless = rootless  # also register the embedded store for rootless podman

    def render(
        self,
        digests: Mapping[Request, str],
        prepared: Optional[Mapping[str, Prepared]] = None,
        store: Optional[Store] = None,
    ) -> Plan:
        """The new bytes of every unit; with `prepared` (dest -> image) and `store`, embedded."""
        texts = {dest: source.text for dest, source in self.collected.writes.items()}
        lines: dict[str, int] = {}
        entries_src: list[tuple[Bound, str]] = []
        for dest, bound in self.collected.bound.items():
            digest = digests[bound.request] if bound.request is not None else bound.digest
            assert digest is not None  # planned: either pinned, locked or requested
            origin = bound.origin
            if prepared is not None:
                image = prepared[dest]
                digest = image.digest
                origin = pin.Provenance(origin, image.upstream if image.flattened else None).text
            pinned = bound.ref.pinned(digest)
            texts[dest], lines[dest] = pin.pin(texts[dest], bound.line, pinned, origin)
            self.check_pinned(texts[dest], bound, pinned)
            entries_src.append((bound, pinned))
        if prepared is not None and store is not None:
            return self.render_embedded(texts, lines, entries_src, prepared, store)
        if self.storage_args:
            for dest, source in self.collected.writes.items():
                if not dest.endswith(".container"):
                    continue
                merged = self.collected.merged(dest, source)
                if pin.has_storage_arg(merged.lookup_all_args(CONTAINER, KEY_GLOBAL_ARGS)):
                    continue
                assignment = source.unit.lookup_last(CONTAINER, KEY_IMAGE)
                assert assignment is not None  # checked while planning
                texts[dest] = pin.add_storage_arg(texts[dest], lines.get(dest, assignment.line))
        files = changed_files(texts)
        links: list[Link] = []
        entries: list[Entry] = []
        kept: set[str] = set(files)
        for bound, pinned in entries_src:
            link = plan_link(self.collected.root, bound.unit)
            if not link.exists:
                links.append(link)
            touched = [bound.dest, *(self.collected.dest_of(c) for c in bound.companions)]
            kept.update((*touched, link.path))
            changed = not link.exists or any(path in files for path in touched)
            entries.append(
                Entry(bound.dest, bound.value, pinned, pinned.split("@", 1)[1], "logical", changed)
            )
        return Plan(files, links, entries, touched=kept)

    def render_embedded(
        self,
        texts: dict[str, str],
        lines: Mapping[str, int],
        entries_src: list[tuple[Bound, str]],
        prepared: Mapping[str, Prepared],
        store: Store,
    ) -> Plan:
        """Units that podman runs from the store, never from the network, and no links."""
        policy = self.image_policy
        for dest, source in self.collected.writes.items():
            group = CONTAINER if dest.endswith(".container") else IMAGE
            merged = self.collected.merged(dest, source)
            assignment = source.unit.lookup_last(group, KEY_IMAGE)
            assert assignment is not None  # checked while planning
            anchor = lines.get(dest, assignment.line)
            args = merged.lookup_all_args(group, KEY_GLOBAL_ARGS)
            if self.storage_args and not pin.has_storage_arg(args, store.inner, store.storage_keys):
                texts[dest] = pin.add_storage_arg(texts[dest], anchor, store.storage_arg)
                anchor += 1
            key, value = (KEY_PULL, "never") if group == CONTAINER else (KEY_POLICY, policy)
            if value is not None and (merged.lookup(group, key) or "").lower() != value:
                texts[dest] = pin.set_key(texts[dest], dest, group, key, value, anchor)
        if store.driver == "overlay":  # vfs reads no additionalimagestores
            for path, data in storageconf.registration(store.root, store.inner, self.rootless).items():
                texts[path] = data.decode()
        files = changed_files(texts)
        entries: list[Entry] = []
        for bound, pinned in entries_src:
            image = prepared[bound.dest]
            touched = [bound.dest, *(self.collected.dest_of(c) for c in bound.companions)]
            changed = image.source is not None or any(path in files for path in touched)
            entries.append(
                Entry(
                    bound.dest,
                    bound.value,
                    pinned,
                    image.digest,
                    "embedded",
                    changed,
                    flattened=image.flattened,
                    upstream_digest=image.upstream,
                )
            )
        return Plan(files, [], entries, touched={*files, *(b.dest for b, _ in entries_src)})

    @staticmethod
    def check_pinned(text: str, bound: Bound, pinned: str) -> None:
        """Both parsers must read the pinned value back; anything else is a bindimg bug."""
        group = IMAGE if bound.dest.endswith(".image") else CONTAINER
        quadlet_value = parse_quadlet(text, bound.dest).lookup(group, KEY_IMAGE)
        found = parse_bootc(text, bound.dest).get(group, {}).get(KEY_IMAGE)
        if quadlet_value != pinned or found is None or found.value != pinned:
            raise AssertionError(f"{bound.dest}: pinned text reads back as {quadlet_value!r}")
