"""Every `bindimg lint` finding id: a fixture that triggers it and a near miss that must not.

Each case asserts the complete list of findings (id, severity, path, line), so a rule that
fires too often, too rarely or on the wrong line fails here. Sources are linted from the
test's own working directory, so paths read as a user would see them (`q/app.container`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import pytest

from bindimg import lockfile, skopeo
from bindimg.commands.lint import lint_root, lint_sources
from bindimg.errors import ExternalError, InputError
from bindimg.findings import RULES
from bindimg.lockfile import LockEntry
from bindimg.resolve import Settings
from bindimg.rootfs import Root
from bindimg.rules import LockView, Remote
from tests.kit import BOUND, D1, D2, EMBED, QDIR, STORAGE, FakeRegistry, link, rows, store, write

Row = tuple[str, str, str, int]
PINNED = f"[Container]\nImage=quay.io/o/a@{D1}\n"


@pytest.fixture
def src(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path / "q"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r" / QDIR).mkdir(parents=True)
    return tmp_path / "r"


def lint_q(lock: Optional[LockView] = None) -> list[Row]:
    return rows(lint_sources(["q"], lock))


def lint_r() -> list[Row]:
    return rows(lint_root(Root("r"), "r"))


def bound(root: Path, name: str, text: str) -> None:
    write(root, f"{QDIR}/{name}", text)
    link(root, name, f"/{QDIR}/{name}")


def test_every_spec_id_has_a_rule() -> None:
    assert sorted(RULES) == sorted(
        [
            "parse-error",
            "bootc-parse-error",
            "parser-disagreement",
            "missing-image",
            "invalid-reference",
            "short-name",
            "floating-tag",
            "tag-and-digest",
            "non-canonical-name",
            "specifier",
            "unit-reference",
            "authfile-unsupported",
            "all-tags",
            "image-tag",
            "auto-update-conflict",
            "not-a-symlink",
            "dangling-link",
            "bad-extension",
            "extension-mismatch",
            "outside-search-path",
            "etc-target",
            "missing-storage-args",
            "embedded-missing",
            "embedded-may-pull",
            "storage-conf-without-store",
            "lock-missing",
            "lock-mismatch",
            "lock-stale",
            "duplicate-image",
            "digest-gone",
            "platform-missing",
            "unbound-image",
            "kube-yaml-unreadable",
            "composefs-ignores-bound",
        ]
    )


# --- one source unit at a time ------------------------------------------------------------

E, W = "error", "warning"
SOURCE_CASES = [
    # parse-error: Quadlet refuses a line that is no key, group or comment
    ("a.container", "[Container]\nImage\n", [("parse-error", E, 2)]),
    ("a.container", f"[Container]\n# Image\n{PINNED[12:]}", []),
    ("a.container", b"\xef\xbb\xbf" + PINNED.encode(), [("parse-error", E, 1)]),
    # bootc-parse-error: a continuation anywhere in a unit meant to be bound
    ("a.container", f"{PINNED}PodmanArgs=--a \\\n  --b\n", [("bootc-parse-error", E, 4)]),
    ("a.container", f"{PINNED}PodmanArgs=--a --b\n", []),
    ("a.volume", f"[Volume]\nDriver=image\nImage=quay.io/o/a@{D1}\nLabel=a \\\n  b=c\n", []),
    ("a.container", "[Container]\nImage=b.build\nPodmanArgs=--a \\\n  --b\n", [("unit-reference", E, 2)]),
    # parser-disagreement: quotes, inline comment
    ("a.container", f'[Container]\nImage="quay.io/o/a@{D1}"\n', [("parser-disagreement", E, 2)]),
    (
        "a.container",
        f"[Container]\nImage=quay.io/o/a@{D1} # pinned\n",
        [("invalid-reference", E, 2), ("parser-disagreement", E, 2)],
    ),
    ("a.container", f"[Container]\n  Image = quay.io/o/a@{D1}  \n", []),
    # missing-image
    ("a.container", "[Container]\nExec=true\n", [("missing-image", E, 1)]),
    ("a.container", "[Container]\nImage=\n", [("missing-image", E, 2)]),
    ("a.image", "[Image]\nPolicy=missing\n", [("missing-image", E, 1)]),
    ("a.container", "[Container]\nRootfs=/srv/root\n", []),
    ("a.volume", "[Volume]\nDriver=image\n", [("missing-image", E, 1)]),
    ("a.volume", "[Volume]\nDevice=/dev/sdb\n", []),
    # invalid-reference
    ("a.container", "[Container]\nImage=quay.io/O/a:1\n", [("invalid-reference", E, 2)]),
    ("a.container", "[Container]\nImage=quay.io/o/a@sha256:abc\n", [("invalid-reference", E, 2)]),
    ("a.container", PINNED, []),
    # short-name
    ("a.container", f"[Container]\nImage=alpine@{D1}\n", [("short-name", E, 2)]),
    ("a.container", f"[Container]\nImage=docker.io/library/alpine@{D1}\n", []),
    # floating-tag: a warning in sources without a lock
    ("a.container", "[Container]\nImage=quay.io/o/a:1\n", [("floating-tag", W, 2)]),
    ("a.image", "[Image]\nImage=quay.io/o/a\n", [("floating-tag", W, 2)]),
    ("a.container", "[Container]\nImage=docker-archive:/srv/a.tar\n", []),
    # tag-and-digest
    ("a.container", f"[Container]\nImage=quay.io/o/a:1@{D1}\n", [("tag-and-digest", E, 2)]),
    # non-canonical-name
    ("a.container", f"[Container]\nImage=docker.io/alpine@{D1}\n", [("non-canonical-name", E, 2)]),
    ("a.container", f"[Container]\nImage=index.docker.io/library/a@{D1}\n", [("non-canonical-name", E, 2)]),
    ("a.container", f"[Container]\nImage=docker://quay.io/o/a@{D1}\n", [("non-canonical-name", E, 2)]),
    (
        "a.container",
        "[Container]\nImage=quay.io/o/a@sha512:" + "a" * 128 + "\n",
        [("non-canonical-name", E, 2)],
    ),
    # specifier
    ("a.container", "[Container]\nImage=quay.io/o/a:%i\n", [("specifier", E, 2)]),
    ("a@.container", "[Container]\nImage=${REG}/o/a:1\n", [("specifier", E, 2)]),
    ("a@.container", f"{PINNED}Environment=A=%i\n", []),
    # unit-reference
    ("a.container", "[Container]\nImage=nope.image\n", [("unit-reference", E, 2)]),
    ("a.image", "[Image]\nImage=other.image\n", [("unit-reference", E, 2)]),
    # all-tags
    ("a.image", f"[Image]\nImage=quay.io/o/a@{D1}\nAllTags=true\n", [("all-tags", E, 3)]),
    ("a.image", f"[Image]\nImage=quay.io/o/a@{D1}\nAllTags=false\n", []),
    ("a.image", "[Image]\nImage=quay.io/o/a:1\nAllTags=yes\n", [("floating-tag", W, 2)]),
    # image-tag
    ("a.image", f"[Image]\nImage=quay.io/o/a@{D1}\nImageTag=quay.io/o/a:1\n", [("image-tag", W, 3)]),
    ("a.image", "[Image]\nImage=docker-archive:/srv/a.tar\nImageTag=quay.io/o/a:1\n", []),
    # auto-update-conflict
    ("a.container", f"{PINNED}AutoUpdate=registry\n", [("auto-update-conflict", W, 3)]),
    (
        "a.container",
        f"{PINNED}Label=x=1 io.containers.autoupdate=registry\n",
        [("auto-update-conflict", W, 3)],
    ),
    ("a.container", f"{PINNED}AutoUpdate=local\n", []),
    ("a.container", "[Container]\nImage=quay.io/o/a:1\nAutoUpdate=registry\n", [("floating-tag", W, 2)]),
]


@pytest.mark.parametrize(("name", "text", "expected"), SOURCE_CASES)
def test_source_unit(src: Path, name: str, text: str, expected: list[tuple[str, str, int]]) -> None:
    write(src, name, text)
    assert lint_q() == [(rule, severity, f"q/{name}", line) for rule, severity, line in expected]


# --- source rules that need several files ---------------------------------------------------


def test_parse_error_in_a_dropin_skips_only_the_dropin(src: Path) -> None:
    write(src, "a.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(src, "a.container.d/10-bad.conf", "[Container]\nbogus\n")
    assert lint_q() == [
        ("floating-tag", W, "q/a.container", 2),
        ("parse-error", E, "q/a.container.d/10-bad.conf", 2),
    ]


def test_image_set_by_a_dropin_disagrees_with_bootc(src: Path) -> None:
    write(src, "a.container", PINNED)
    write(src, "container.d/50-image.conf", f"[Container]\nImage=quay.io/o/b@{D2}\n")
    assert lint_q() == [("parser-disagreement", E, "q/container.d/50-image.conf", 2)]


def test_dropin_emptying_image_is_missing_image(src: Path) -> None:
    write(src, "a.container", PINNED)
    write(src, "a.container.d/10.conf", "[Container]\nImage=\n")
    path = "q/a.container.d/10.conf"
    assert lint_q() == [("missing-image", E, path, 2), ("parser-disagreement", E, path, 2)]


def test_dropin_argument_lints_the_units_it_applies_to(src: Path) -> None:
    write(src, "a.container", "[Container]\nImage=quay.io/o/a:1\n")
    write(src, "b.container", "[Container]\nImage=quay.io/o/b:1\n")
    dropin = write(src, "a.container.d/10.conf", "[Container]\nExec=true\n")
    assert rows(lint_sources([str(dropin.relative_to(src.parent))])) == [
        ("floating-tag", W, "q/a.container", 2)
    ]


def test_unit_reference_followed_is_clean(src: Path) -> None:
    write(src, "base.image", f"[Image]\nImage=quay.io/o/base@{D1}\n")
    write(src, "web.container", "[Container]\nImage=base.image\n")
    write(src, "job.container", "[Container]\nImage=job.build\n")
    write(src, "job.build", "[Build]\nImageTag=localhost/job:1\n")
    assert lint_q() == []


def test_auto_update_on_a_container_of_a_pinned_image_unit(src: Path) -> None:
    write(src, "base.image", f"[Image]\nImage=quay.io/o/base@{D1}\n")
    write(src, "web.container", "[Container]\nImage=base.image\nAutoUpdate=registry\n")
    assert lint_q() == [("auto-update-conflict", W, "q/web.container", 3)]


def test_duplicate_image(src: Path) -> None:
    write(src, "a.container", f"[Container]\nImage=quay.io/o/x@{D1}\n")
    write(src, "b.image", f"[Image]\nImage=quay.io/o/x@{D2}\n")
    write(src, "c.container", f"[Container]\nImage=quay.io/o/y@{D1}\n")
    assert lint_q() == [
        ("duplicate-image", W, "q/a.container", 2),
        ("duplicate-image", W, "q/b.image", 2),
    ]


def test_same_repository_at_one_digest_is_no_duplicate(src: Path) -> None:
    write(src, "a.container", f"[Container]\nImage=quay.io/o/x@{D1}\n")
    write(src, "b.image", f"[Image]\nImage=quay.io/o/x@{D1}\n")
    assert lint_q() == []


# --- lock ------------------------------------------------------------------------------------


def test_unlocked_tag_is_an_error_with_a_lock(src: Path) -> None:
    write(src, "a.container", "[Container]\nImage=quay.io/o/a:1\n")
    assert lint_q(LockView("bindimg.lock", {})) == [
        ("floating-tag", E, "q/a.container", 2),
        ("lock-missing", E, "q/a.container", 2),
    ]


def test_locked_tag_is_clean(src: Path) -> None:
    write(src, "a.container", "[Container]\nImage=quay.io/o/a:1\n")
    assert lint_q(LockView("bindimg.lock", {"quay.io/o/a:1": D1})) == []


def test_lock_mismatch_by_provenance_tag(src: Path) -> None:
    write(src, "a.container", f"[Container]\n# bindimg: pinned from quay.io/o/a:1\nImage=quay.io/o/a@{D2}\n")
    assert lint_q(LockView("bindimg.lock", {"quay.io/o/a:1": D1})) == [
        ("lock-mismatch", E, "q/a.container", 3)
    ]
    assert lint_q(LockView("bindimg.lock", {"quay.io/o/a:1": D2})) == []


def test_pinned_without_provenance_needs_no_lock_entry(src: Path) -> None:
    write(src, "a.container", PINNED)
    assert lint_q(LockView("bindimg.lock", {})) == []


def test_lock_stale_points_at_the_entry(src: Path) -> None:
    write(src, "a.container", "[Container]\nImage=quay.io/o/a:1\n")
    entries = {
        "quay.io/o/a:1": LockEntry(D1, "application/vnd.oci.image.index.v1+json", ("q/a.container",)),
        "quay.io/o/old:2": LockEntry(D2, "application/vnd.oci.image.index.v1+json", ()),
    }
    Path("bindimg.lock").write_text(lockfile.dumps(entries))
    lock = LockView.load("bindimg.lock")
    text = Path("bindimg.lock").read_text().split("\n")
    line = text.index('[images."quay.io/o/old:2"]') + 1
    assert lock.lines["quay.io/o/old:2"] == line
    assert lint_q(lock) == [("lock-stale", E, "bindimg.lock", line)]


# --- digest-gone (the registry is faked here; test_lint_cli.py asks a real one) ------------------

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
LIVE = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def fake_registry(transient: bool = False) -> tuple[Remote, list[str]]:
    """A Remote asking a fake registry that serves only LIVE; the references it was asked for."""

    def inspect_raw(ref: str) -> bytes:
        if ref.endswith(LIVE):
            return MANIFEST
        raise skopeo.SkopeoError("manifest unknown", transient=transient)

    client = FakeRegistry(inspect_raw)
    return Remote(settings=Settings(retry=0), client=client), client.asked


def test_digest_gone(src: Path) -> None:
    remote, asked = fake_registry()
    write(src, "a.container", f"[Container]\nImage=quay.io/o/a@{LIVE}\n")
    write(src, "b.container", f"[Container]\nImage=quay.io/o/b@{D1}\n")
    write(src, "c.container", "[Container]\nImage=quay.io/o/c:1\n")
    found = lint_sources(["q"], remote=remote)
    assert rows(found) == [("digest-gone", E, "q/b.container", 2), ("floating-tag", W, "q/c.container", 2)]
    assert "manifest unknown" in found[0].message
    assert sorted(asked) == [f"quay.io/o/a@{LIVE}", f"quay.io/o/b@{D1}"]


def test_unreachable_registry_is_no_finding_but_an_external_error(src: Path) -> None:
    remote, _ = fake_registry(transient=True)
    write(src, "b.container", f"[Container]\nImage=quay.io/o/b@{D1}\n")
    with pytest.raises(ExternalError, match="manifest unknown"):
        lint_sources(["q"], remote=remote)


def test_flattened_embedded_unit_is_checked_by_its_upstream_digest(root: Path) -> None:
    remote, asked = fake_registry()
    provenance = f"# bindimg: pinned from quay.io/o/e:1 (flattened from {LIVE})"  # as `add --embed` writes
    text = f"[Container]\n{provenance}\nImage=quay.io/o/e@{D2}\n{EMBED}\nPull=never\n"
    write(root, f"{QDIR}/e.container", text)
    store(root, f"quay.io/o/e@{D2}")
    assert rows(lint_root(Root("r"), "r", remote)) == []
    assert asked == [f"quay.io/o/e@{LIVE}"]


# --- an image root ---------------------------------------------------------------------------

QP = f"r/{QDIR}"
LINKS = f"r/{BOUND}"
GOOD = f"{PINNED}{STORAGE}\n"


def test_root_bound_units_clean(root: Path) -> None:
    bound(root, "app.container", GOOD)
    bound(root, "db.image", f"[Image]\nImage=quay.io/o/db@{D2}\n")
    write(root, f"{QDIR}/web.container", f"[Container]\nImage=db.image\n{STORAGE}\n")
    write(root, "etc/containers/systemd/loose.container", "[Container]\nImage=quay.io/o/l:1\n")
    # bootc never reads the loose unit: no binding rule, one coverage warning
    assert lint_r() == [("unbound-image", W, "r/etc/containers/systemd/loose.container", 2)]


def test_not_a_symlink(root: Path) -> None:
    write(root, f"{QDIR}/app.container", GOOD)
    write(root, f"{BOUND}/app.container", GOOD)
    assert lint_r() == [
        ("not-a-symlink", E, f"{LINKS}/app.container", 1),
        ("unbound-image", W, f"{QP}/app.container", 2),  # bootc binds nothing from a regular file
    ]


def test_dangling_link(root: Path) -> None:
    link(root, "app.container", f"/{QDIR}/gone.container")
    link(root, "loop.container", "loop.container")
    assert lint_r() == [
        ("dangling-link", E, f"{LINKS}/app.container", 1),
        ("dangling-link", E, f"{LINKS}/loop.container", 1),
    ]


def test_bad_extension(root: Path) -> None:
    bound(root, "app.kube", "[Kube]\nYaml=/srv/app.yml\n")
    write(root, "srv/app.yml", "apiVersion: v1\nkind: Pod\n")  # a YAML podman reads: no other finding
    bound(root, ".image", f"[Image]\nImage=quay.io/o/a@{D1}\n")
    assert lint_r() == [
        ("bad-extension", E, f"{LINKS}/.image", 1),
        ("bad-extension", E, f"{LINKS}/app.kube", 1),
    ]


def test_extension_mismatch(root: Path) -> None:
    write(root, f"{QDIR}/app.container", GOOD)
    link(root, "app.image", f"/{QDIR}/app.container")
    assert lint_r() == [("extension-mismatch", E, f"{LINKS}/app.image", 1)]


def test_relative_link_resolves_inside_the_root(root: Path) -> None:
    write(root, f"{QDIR}/app.container", GOOD)
    link(root, "app.container", "../../../share/containers/systemd/app.container")
    assert lint_r() == []


def test_outside_search_path(root: Path) -> None:
    write(root, "opt/app.container", GOOD)
    link(root, "app.container", "/opt/app.container")
    assert lint_r() == [("outside-search-path", W, f"{LINKS}/app.container", 1)]


def test_shadowed_link_target_is_outside_search_path(root: Path) -> None:
    write(root, "etc/containers/systemd/app.container", GOOD)
    bound(root, "app.container", GOOD)
    # bootc reads another file; the one systemd runs names the same image, so it is bound
    assert lint_r() == [("outside-search-path", E, f"{LINKS}/app.container", 1)]


def test_a_unit_that_fails_to_parse_takes_its_directory_down(root: Path) -> None:
    """As podman's generators do (tests/test_generators.py, broken-unit-drops-its-directory):
    no service is generated from /etc's units, and their names hide /usr/share's too."""
    write(root, "etc/containers/systemd/broken.container", "[Container]\nnot a key\n")
    write(root, "etc/containers/systemd/loose.container", "[Container]\nImage=quay.io/o/l:1\n")
    write(root, "etc/containers/systemd/app.container", GOOD)
    bound(root, "app.container", GOOD)
    assert lint_r() == [("parse-error", E, "r/etc/containers/systemd/broken.container", 2)]


def test_etc_target(root: Path) -> None:
    write(root, "etc/containers/systemd/app.container", GOOD)
    link(root, "app.container", "/etc/containers/systemd/app.container")
    assert lint_r() == [("etc-target", W, f"{LINKS}/app.container", 1)]


def test_authfile_unsupported(root: Path) -> None:
    bound(root, "a.image", f"[Image]\nImage=quay.io/o/a@{D1}\nAuthFile=/etc/a.json\n")
    write(root, f"{QDIR}/b.image", f"[Image]\nImage=quay.io/o/b@{D1}\nAuthFile=/etc/a.json\n")
    bound(root, "c.container", f"{GOOD}AuthFile=/etc/a.json\n")
    assert lint_r() == [
        ("authfile-unsupported", E, f"{QP}/a.image", 3),
        ("unbound-image", W, f"{QP}/b.image", 2),
    ]


def test_authfile_reported_even_when_bootc_stops_earlier(root: Path) -> None:
    bound(root, "a.image", "[Image]\nAuthFile=/etc/a.json\n")
    assert lint_r() == [
        ("missing-image", E, f"{QP}/a.image", 1),
        ("authfile-unsupported", E, f"{QP}/a.image", 2),
    ]


def test_bound_floating_tag_is_an_error(root: Path) -> None:
    bound(root, "app.container", f"[Container]\nImage=quay.io/o/a:1\n{STORAGE}\n")
    assert lint_r() == [("floating-tag", E, f"{QP}/app.container", 2)]


def test_linked_container_naming_a_unit(root: Path) -> None:
    write(root, f"{QDIR}/db.image", f"[Image]\nImage=quay.io/o/db@{D2}\n")
    bound(root, "web.container", f"[Container]\nImage=db.image\n{STORAGE}\n")
    assert lint_r() == [
        ("unbound-image", W, f"{QP}/db.image", 2),
        ("unit-reference", E, f"{QP}/web.container", 2),
    ]


def test_bound_specifier_and_bootc_parse_error(root: Path) -> None:
    bound(root, "a@.container", f"[Container]\nImage=quay.io/o/a:%i\n{STORAGE}\n")
    bound(root, "b.container", f"{GOOD}Exec=a \\\n  b\n")
    assert lint_r() == [
        ("specifier", E, f"{QP}/a@.container", 2),
        ("bootc-parse-error", E, f"{QP}/b.container", 5),
    ]


def test_missing_storage_args(root: Path) -> None:
    bound(root, "app.container", PINNED)
    bound(root, "db.image", f"[Image]\nImage=quay.io/o/db@{D2}\n")
    write(root, f"{QDIR}/web.container", "[Container]\nImage=db.image\n")
    write(root, f"{QDIR}/free.container", f"[Container]\nImage=quay.io/o/f@{D1}\n")
    assert lint_r() == [
        ("missing-storage-args", W, f"{QP}/app.container", 2),
        ("unbound-image", W, f"{QP}/free.container", 2),
        ("missing-storage-args", W, f"{QP}/web.container", 2),
    ]


def test_storage_args_from_a_dropin_count(root: Path) -> None:
    bound(root, "app.container", PINNED)
    write(root, f"{QDIR}/app.container.d/10-store.conf", f"[Container]\n{STORAGE}\n")
    assert lint_r() == []


def test_embedded_missing(root: Path) -> None:
    write(root, f"{QDIR}/e.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{EMBED}\nPull=never\n")
    store(root, f"quay.io/o/e@{D2}")
    assert lint_r() == [("embedded-missing", E, f"{QP}/e.container", 2)]


def test_storage_conf_without_store(root: Path) -> None:
    write(root, f"{QDIR}/e.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{EMBED}\nPull=never\n")
    store(root, f"quay.io/o/e@{D1}")
    conf = '[storage]\ndriver = "overlay"\n[storage.options]\nadditionalimagestores = ["/usr/lib/other"]\n'
    write(root, "etc/containers/storage.conf", conf)
    assert lint_r() == [("storage-conf-without-store", W, "r/etc/containers/storage.conf", 4)]
    write(root, "etc/containers/storage.conf", '[storage]\ndriver = "overlay"\n')
    assert lint_r() == [("storage-conf-without-store", W, "r/etc/containers/storage.conf", 1)]


def test_storage_conf_listing_the_store_or_no_embedded_unit(root: Path) -> None:
    conf = '[storage.options]\nadditionalimagestores = ["/usr/lib/other", "/usr/lib/containers/storage"]\n'
    write(root, "etc/containers/storage.conf", conf)
    write(root, f"{QDIR}/e.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{EMBED}\nPull=never\n")
    store(root, f"quay.io/o/e@{D1}")
    assert lint_r() == []
    (root / QDIR / "e.container").unlink()
    write(root, "etc/containers/storage.conf", "[storage]\n")
    assert lint_r() == []  # nothing embedded: nothing to miss


def test_embedded_unit_of_a_vfs_store(root: Path) -> None:
    vfs = "GlobalArgs=--storage-opt=vfs.imagestore=/usr/lib/containers/storage"
    write(root, f"{QDIR}/e.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{vfs}\nPull=never\n")
    store(root, f"quay.io/o/e@{D2}", driver="vfs")
    assert lint_r() == [("embedded-missing", E, f"{QP}/e.container", 2)]


def test_embedded_present_in_a_vfs_store(root: Path) -> None:
    write(root, f"{QDIR}/e.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{EMBED}\nPull=never\n")
    store(root, f"quay.io/o/e@{D1}", driver="vfs")
    assert lint_r() == []


def test_embedded_may_pull(root: Path) -> None:
    write(root, f"{QDIR}/a.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{EMBED}\n")
    write(root, f"{QDIR}/b.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{EMBED}\nPull=always\n")
    write(root, f"{QDIR}/c.image", f"[Image]\nImage=quay.io/o/e@{D1}\n{EMBED}\n")
    write(root, f"{QDIR}/d.image", f"[Image]\nImage=quay.io/o/e@{D1}\n{EMBED}\nPolicy=missing\n")
    store(root, f"quay.io/o/e@{D1}")
    assert lint_r() == [
        ("embedded-may-pull", W, f"{QP}/a.container", 2),
        ("embedded-may-pull", W, f"{QP}/b.container", 4),
        ("embedded-may-pull", W, f"{QP}/c.image", 2),
    ]


def test_embedded_floating_tag_is_an_error(root: Path) -> None:
    write(root, f"{QDIR}/e.container", f"[Container]\nImage=quay.io/o/e:1\n{EMBED}\nPull=never\n")
    store(root, "quay.io/o/e:1")
    assert lint_r() == [("floating-tag", E, f"{QP}/e.container", 2)]


def test_duplicate_bound_image(root: Path) -> None:
    bound(root, "a.container", f"[Container]\nImage=quay.io/o/x@{D1}\n{STORAGE}\n")
    bound(root, "b.image", f"[Image]\nImage=quay.io/o/x@{D2}\n")
    write(root, f"{QDIR}/c.container", f"[Container]\nImage=quay.io/o/x@{D2}\n")  # not bound
    assert lint_r() == [
        ("duplicate-image", W, f"{QP}/a.container", 2),
        ("duplicate-image", W, f"{QP}/b.image", 2),
    ]  # c.container is not bound, but b.image binds its image


def test_unit_that_fails_to_parse_yields_to_the_next_of_its_name(root: Path) -> None:
    write(root, "etc/containers/systemd/app.container", "[Container]\nImage\n")
    bound(root, "app.container", GOOD)
    assert lint_r() == [("parse-error", E, "r/etc/containers/systemd/app.container", 2)]


def test_units_in_a_symlinked_quadlet_directory_stay_inside_the_root(root: Path, tmp_path: Path) -> None:
    write(tmp_path, "opt/q/app.container", "[Container]\nImage=host:1\n")  # the host's, never read
    write(root, "opt/q/app.container", GOOD)
    (root / "etc/containers").mkdir(parents=True)
    (root / "etc/containers/systemd").symlink_to("/opt/q")
    assert lint_r() == [("unbound-image", W, "r/opt/q/app.container", 2)]  # read, from the root's /opt/q


def test_bound_unit_that_is_not_utf8(root: Path) -> None:
    write(
        root,
        f"{QDIR}/app.container",
        f"[Container]\nImage=quay.io/o/a@{D1}\nDescription=\xff\n".encode("latin-1"),
    )
    link(root, "app.container", f"/{QDIR}/app.container")
    assert lint_r() == [
        ("bootc-parse-error", E, f"{QP}/app.container", 3),
        ("parse-error", E, f"{QP}/app.container", 3),
    ]


def test_link_to_a_fifo_is_unreadable_input_not_a_hang(root: Path) -> None:
    os.mkfifo(root / QDIR / "app.container")
    link(root, "app.container", f"/{QDIR}/app.container")
    with pytest.raises(InputError, match="is a FIFO, not a unit file"):
        lint_r()


def test_flattened_embedded_unit_is_checked_against_the_lock_by_its_upstream_digest(src: Path) -> None:
    write(
        src,
        "e.container",
        f"[Container]\n# bindimg: pinned from quay.io/o/e:1 (flattened from {D1})\n"
        f"Image=quay.io/o/e@{D2}\n{EMBED}\nPull=never\n",
    )
    assert lint_q(LockView("bindimg.lock", {"quay.io/o/e:1": D1})) == []
    assert lint_q(LockView("bindimg.lock", {"quay.io/o/e:1": D2})) == [
        ("lock-mismatch", E, "q/e.container", 3)
    ]


def test_a_source_tree_has_no_store_to_miss_an_embedded_image(src: Path) -> None:
    write(src, "e.container", f"[Container]\nImage=quay.io/o/e@{D1}\n{EMBED}\nPull=never\n")
    assert lint_q() == []
