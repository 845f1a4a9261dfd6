"""Hostile input catalogue: what `bindimg add` (and its `--lock`) does with input made to hurt.

Each case states the behaviour the SPEC asks for and checks it through the real command line:

* bad input exits 2 with ONE line, ``bindimg: error: <path>[:<line>]: <what>; <what to do>``,
  nothing on stdout, and the whole tree (decoys outside the root included) exactly as it was;
* input that both parsers read the same way is accepted, with only the documented bytes
  changed (SPEC invariant 4);
* nothing outside ``--root`` is read, written or named (invariant 6), whatever links say;
* no case hangs, crashes (exit 70) or takes more than a moment: adversarial sizes and regex
  bait are timed, the CLI as a whole (interpreter start included) and the parsers in-process.

No registry is needed: references are pinned already, or come from ``--lock FILE --frozen``.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from bindimg import lockfile, reference
from bindimg.bootcini import parse_bootc
from bindimg.errors import InputError, one_line
from bindimg.quadlet import parse_quadlet
from bindimg.unitset import MAX_UNIT_BYTES, read_text
from tests.kit import BOUND, D1, PINNED, QDIR, STORAGE, Run, budget, run_bindimg, snapshot, write

D9 = "sha256:" + "9" * 64  # only ever in decoys outside the root: must never show up
PROVENANCE = "# bindimg: pinned from "
DECOY = f"[Container]\nImage=quay.io/decoy/x@{D9}\n# DECOY-MARKER\n"
# A whole CLI run, interpreter start included, on input built to be slow.
CLI_BUDGET = 2.0
# One reference.parse call on regex bait.
PARSE_BUDGET = 0.05
# A run that does not finish by then is a hang (a FIFO opened for reading blocks forever).
HANG = 20.0


def bindimg(*args: str, prefix: tuple[str, ...] = (), timeout: Optional[float] = None) -> Run:
    """A hang fails the test within HANG seconds (stretched by the machine's load), never blocks it."""
    return run_bindimg(*args, prefix=prefix, timeout=budget(HANG) if timeout is None else timeout)


@dataclass
class Tree:
    """`tmp/root` (the image root) and `tmp/secret` (host files a link may try to reach)."""

    top: Path
    root: Path
    qdir: Path
    secret: Path

    def add(self, *args: str | Path, prefix: tuple[str, ...] = ()) -> Run:
        return bindimg("add", "--root", str(self.root), *(str(a) for a in args), prefix=prefix)

    def refused(
        self,
        *args: str | Path,
        named: Path | str,
        line: Optional[int] = None,
        needle: str,
        prefix: tuple[str, ...] = (),
    ) -> Run:
        """Exit 2, one line naming the file (and line), nothing written anywhere, no decoy named."""
        before = snapshot(self.top)
        run = self.add(*args, prefix=prefix)
        assert run.code == 2, run.output
        assert run.out == ""
        assert snapshot(self.top) == before
        lines = run.err.splitlines()
        assert len(lines) == 1, run.err
        where = one_line(f"{named}:{line}: " if line is not None else f"{named}: ")
        assert lines[0].startswith(f"bindimg: error: {where}"), lines[0]
        assert needle in lines[0], lines[0]
        self.assert_no_decoy(run)
        return run

    def accepted(self, *args: str | Path) -> Run:
        run = self.add(*args)
        assert (run.code, run.err) == (0, ""), run.output
        self.assert_no_decoy(run)
        return run

    def assert_no_decoy(self, run: Run) -> None:
        """Nothing outside the root was read into the output (its path, digest or marker)."""
        for secret in (str(self.secret), D9, "DECOY-MARKER", "quay.io/decoy"):
            assert secret not in run.output, run.output


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    root = tmp_path / "root"
    (root / QDIR).mkdir(parents=True)
    secret = tmp_path / "secret"
    write(secret, "app.container", DECOY)
    write(secret, "base.image", DECOY.replace("[Container]", "[Image]"))
    write(secret, "dropins/10-image.conf", DECOY)
    return Tree(tmp_path, root, root / QDIR, secret)


def pinned_unit(tree: Tree, name: str = "app.container", body: str = f"Image={PINNED}\n") -> Path:
    return write(tree.qdir, name, "[Container]\n" + body)


# --- 1. bytes that are not a text unit ----------------------------------------------------

HEAD = b"[Container]\n"
IMAGE = f"Image={PINNED}\n".encode()
BAD_BYTES = [
    # (id, file bytes, line, key phrase)
    ("garbage-png-header", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 3, "contains a NUL byte"),
    ("garbage-high-bytes", bytes(range(0x80, 0x100)), 1, "is not valid UTF-8 (byte 0x80)"),
    ("nul-in-value", HEAD + b"Image=quay.io/o/a\x00@" + D1.encode() + b"\n", 2, "contains a NUL byte"),
    ("nul-last-byte", HEAD + IMAGE + b"\x00", 3, "contains a NUL byte"),
    ("invalid-utf8-first-byte", b"\xff" + HEAD + IMAGE, 1, "is not valid UTF-8 (byte 0xff)"),
    ("invalid-utf8-in-comment", HEAD + b"# caf\xe9\n" + IMAGE, 2, "(byte 0xe9)"),
    ("invalid-utf8-in-value", HEAD + b"Image=quay.io/o/\xe4@" + D1.encode() + b"\n", 2, "(byte 0xe4)"),
    ("invalid-utf8-truncated-at-eof", HEAD + IMAGE + b"# caf\xc3", 3, "(byte 0xc3)"),
    ("overlong-encoded-slash", HEAD + b"Image=quay.io\xc0\xafo/a\n", 2, "(byte 0xc0)"),
    ("utf8-encoded-surrogate", HEAD + IMAGE + b"# \xed\xa0\x80\n", 3, "(byte 0xed)"),
    ("utf8-bom", b"\xef\xbb\xbf" + HEAD + IMAGE, 1, "byte-order mark; save it without BOM"),
    ("utf16-with-bom", (HEAD + IMAGE).decode().encode("utf-16"), 1, "contains a NUL byte"),
]


@pytest.mark.parametrize(
    ("data", "line", "needle"), [c[1:] for c in BAD_BYTES], ids=[c[0] for c in BAD_BYTES]
)
def test_bytes_that_are_not_utf8_text_are_refused(tree: Tree, data: bytes, line: int, needle: str) -> None:
    unit = write(tree.qdir, "app.container", data)
    tree.refused(unit, named=unit, line=line, needle=needle)


# --- 2. line endings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            f"[Container]\r\nImage=quay.io/o/a:1@{D1}\r\nExec=true\r\n",
            f"[Container]\r\n{PROVENANCE}quay.io/o/a:1@{D1}\r\nImage={PINNED}\r\n{STORAGE}\r\nExec=true\r\n",
            id="crlf-kept",
        ),
        pytest.param(
            f"[Container]\r\nImage=quay.io/o/a:1@{D1}\nExec=true\r\n",
            f"[Container]\r\n{PROVENANCE}quay.io/o/a:1@{D1}\nImage={PINNED}\n{STORAGE}\nExec=true\r\n",
            id="mixed-endings-inserted-lines-follow-the-image-line",
        ),
        pytest.param(
            f"[Container]\nImage=quay.io/o/a:1@{D1}",
            f"[Container]\n{PROVENANCE}quay.io/o/a:1@{D1}\nImage={PINNED}\n{STORAGE}",
            id="no-newline-at-eof",
        ),
    ],
)
def test_line_endings_are_accepted_and_kept(tree: Tree, before: str, after: str) -> None:
    unit = write(tree.qdir, "app.container", before)
    run = tree.accepted(unit)
    assert run.out == f"changed {unit} {PINNED}\n"
    assert unit.read_bytes() == after.encode()


def test_lone_cr_is_not_a_line_break(tree: Tree) -> None:
    """Quadlet splits on LF only: a classic-Mac file is one line that starts with `[Container]`."""
    unit = write(tree.qdir, "app.container", f"[Container]\rImage={PINNED}\r")
    tree.refused(unit, named=unit, line=1, needle="key file does not start with a group")


def test_lone_cr_inside_the_value_is_escaped_in_the_one_line_message(tree: Tree) -> None:
    unit = write(tree.qdir, "app.container", f"[Container]\nImage=quay.io/o/a\r@{D1}\n")
    run = tree.refused(unit, named=unit, line=2, needle="is not a valid image reference")
    assert "Image=quay.io/o/a\\r@sha256:" in run.err


def test_lone_cr_in_an_old_provenance_comment(tree: Tree) -> None:
    """This crashed (exit 70): the comment was taken as bindimg's and its CR written back."""
    odd = f"{PROVENANCE}quay.io/o/a:1\rjunk"
    unit = write(tree.qdir, "app.container", f"[Container]\n{odd}\nImage=quay.io/o/a:2@{D1}\n")
    tree.accepted(unit)
    assert unit.read_bytes() == (
        f"[Container]\n{odd}\n{PROVENANCE}quay.io/o/a:2@{D1}\nImage={PINNED}\n{STORAGE}\n".encode()
    )


# --- 3. sizes made to be slow ---------------------------------------------------------------


def test_50_mb_unit_is_refused_by_its_size_unread(tree: Tree) -> None:
    unit = write(tree.qdir, "app.container", HEAD + IMAGE + b"# " + b"x" * (50 * 1024 * 1024) + b"\n")
    run = tree.refused(unit, named=unit, needle="larger than 16 MiB; not a unit file")
    assert run.seconds < budget(CLI_BUDGET)


def test_oversized_unit_costs_no_memory(tmp_path: Path) -> None:
    """The size is checked before reading: refusing 50 MB allocates next to nothing."""
    unit = write(tmp_path, "big.container", b"#" * (MAX_UNIT_BYTES * 3))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="larger than 16 MiB"):
            read_text(str(unit))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


CONTINUED = [
    pytest.param(
        HEAD + IMAGE + b"Exec=/bin/echo \\\n" + b"  arg \\\n" * 10_000 + b"  end\n", 4, id="exec-continued"
    ),
    pytest.param(
        HEAD + b"Image=quay.io/o/\\\n" + b"a\\\n" * 10_000 + b"@" + D1.encode() + b"\n", 3, id="image"
    ),
]


@pytest.mark.parametrize(("data", "line"), CONTINUED)
def test_10000_continuation_lines_answer_at_once(tree: Tree, data: bytes, line: int) -> None:
    text = data.decode()
    start = time.perf_counter()
    parse_quadlet(text, "x.container")
    quadlet_seconds = time.perf_counter() - start
    with pytest.raises(InputError):
        parse_bootc(text, "x.container")
    assert quadlet_seconds < budget(0.25)
    unit = write(tree.qdir, "app.container", data)
    run = tree.refused(unit, named=unit, line=line, needle="bootc cannot read this unit (Incorrect syntax")
    assert run.seconds < budget(CLI_BUDGET)


def test_very_long_line_elsewhere_is_kept_byte_for_byte(tree: Tree) -> None:
    description = "Description=" + "x" * (1024 * 1024)
    unit = write(tree.qdir, "app.container", f"[Container]\n{description}\nImage={PINNED}\n")
    run = tree.accepted(unit)
    assert run.seconds < budget(CLI_BUDGET)
    assert unit.read_text() == f"[Container]\n{description}\nImage={PINNED}\n{STORAGE}\n"


def test_very_long_line_without_equals_gives_a_short_message(tree: Tree) -> None:
    unit = write(tree.qdir, "app.container", f"[Container]\nImage={PINNED}\n{'x' * 1024 * 1024}\n")
    run = tree.refused(unit, named=unit, line=3, needle="(1048576 characters)")
    assert "which is not a key-value pair" in run.err
    assert len(run.err) < 600


def test_one_megabyte_image_value_gives_a_short_message(tree: Tree) -> None:
    unit = write(tree.qdir, "app.container", f"[Container]\nImage=quay.io/{'a' * 1024 * 1024}\n")
    run = tree.refused(unit, named=unit, line=2, needle="reference is too long (1048584 characters)")
    assert run.seconds < budget(CLI_BUDGET)
    assert len(run.err) < 600


# --- 4. links, loops and files that are not files -----------------------------------------


def test_unit_symlink_loop(tree: Tree) -> None:
    unit = tree.qdir / "app.container"
    os.symlink("app.container", unit)
    tree.refused(unit, named=unit, needle="too many levels of symbolic links (a loop?); fix the links")


def test_quadlet_dir_symlink_cycle(tree: Tree) -> None:
    containers = tree.root / "usr/share/containers"
    os.rmdir(tree.qdir)
    os.symlink("systemd2", containers / "systemd")
    os.symlink("/usr/share/containers/systemd", containers / "systemd2")
    src = write(tree.top, "src/app.container", f"[Container]\nImage={PINNED}\n")
    tree.refused(src, named=tree.qdir, needle="too many levels of symbolic links")


def test_dropin_dir_symlink_loop(tree: Tree) -> None:
    unit = pinned_unit(tree)
    os.symlink("app.container.d", tree.qdir / "app.container.d")
    tree.refused(unit, named=tree.qdir / "app.container.d", needle="too many levels of symbolic links")


def test_bound_images_d_symlink_loop(tree: Tree) -> None:
    unit = pinned_unit(tree)
    (tree.root / "usr/lib/bootc").mkdir(parents=True)
    os.symlink("bound-images.d", tree.root / BOUND)
    tree.refused(unit, named=tree.root / BOUND, needle="too many levels of symbolic links")


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-dotdot", "absolute-host-path"])
def test_bound_images_d_linked_outside_the_root_stays_inside(tree: Tree, absolute: bool) -> None:
    unit = pinned_unit(tree)
    (tree.root / "usr/lib/bootc").mkdir(parents=True)
    # On the host both targets are tmp/secret; inside the root they name root/secret and
    # root/<tmp>/secret, which is where bootc (RESOLVE_IN_ROOT) looks.
    os.symlink(str(tree.secret) if absolute else "../../../../secret", tree.root / BOUND)
    outside = snapshot(tree.secret)
    tree.accepted(unit)
    assert snapshot(tree.secret) == outside
    inside = tree.root / (str(tree.secret).lstrip("/") if absolute else "secret")
    assert os.readlink(inside / "app.container") == f"/{QDIR}/app.container"


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-dotdot", "absolute-host-path"])
def test_unit_linked_outside_the_root_is_not_read(tree: Tree, absolute: bool) -> None:
    unit = tree.qdir / "app.container"
    os.symlink(
        str(tree.secret / "app.container") if absolute else "../../../../../secret/app.container", unit
    )
    tree.refused(unit, named=unit, needle="no such unit file")


def test_unit_linked_with_dotdot_resolves_to_the_file_inside_the_root(tree: Tree) -> None:
    unit = tree.qdir / "app.container"
    os.symlink("../../../../../secret/app.container", unit)
    inside = write(tree.root, "secret/app.container", f"[Container]\nImage={PINNED}\n")
    outside = snapshot(tree.secret)
    run = tree.accepted(unit)
    assert run.out == f"changed {inside} {PINNED}\n"
    assert inside.read_text() == f"[Container]\nImage={PINNED}\n{STORAGE}\n"
    assert os.readlink(unit) == "../../../../../secret/app.container"
    assert snapshot(tree.secret) == outside


def test_unit_installed_onto_a_link_that_points_outside(tree: Tree) -> None:
    """A source outside the root is installed; the link already at its name is followed in-root."""
    src = write(tree.top, "src/app.container", f"[Container]\nImage={PINNED}\n")
    os.symlink("../../../../../secret/app.container", tree.qdir / "app.container")
    outside = snapshot(tree.secret)
    run = tree.accepted(src, "--dry-run")
    assert f"--- /dev/null\n+++ {tree.root}/secret/app.container\n" in run.out
    tree.accepted(src)
    assert snapshot(tree.secret) == outside
    assert (tree.root / "secret/app.container").read_text() == f"[Container]\nImage={PINNED}\n{STORAGE}\n"


def test_dropin_dir_linked_outside_the_root_is_not_read(tree: Tree) -> None:
    unit = pinned_unit(tree)
    os.symlink("../../../../../secret/dropins", tree.qdir / "app.container.d")
    run = tree.accepted(unit)
    assert run.out == f"changed {unit} {PINNED}\n"


def test_dropin_linked_outside_the_root_is_not_read(tree: Tree) -> None:
    unit = pinned_unit(tree)
    link = tree.qdir / "app.container.d/10-image.conf"
    link.parent.mkdir()
    os.symlink("../../../../../../secret/dropins/10-image.conf", link)
    tree.refused(unit, named=link, needle="no such file (a dangling symlink?); fix or remove it")


def test_image_unit_linked_outside_the_root_is_not_read(tree: Tree) -> None:
    unit = write(tree.qdir, "app.container", "[Container]\nImage=base.image\n")
    os.symlink("../../../../../secret/base.image", tree.qdir / "base.image")
    tree.refused(unit, named=unit, line=2, needle="names a unit that is in no Quadlet directory")


def test_unit_that_is_a_directory(tree: Tree) -> None:
    unit = tree.qdir / "app.container"
    unit.mkdir()
    tree.refused(unit, named=unit, needle="is a directory, not a unit file; make it a regular file")


def test_unit_that_is_a_fifo_is_refused_unopened(tree: Tree) -> None:
    unit = tree.qdir / "app.container"
    os.mkfifo(unit)
    run = tree.refused(unit, named=unit, needle="is a FIFO, not a unit file; make it a regular file")
    assert run.seconds < budget(CLI_BUDGET)


def test_dropin_that_is_a_fifo_is_refused_unopened(tree: Tree) -> None:
    """This one hung: drop-ins were opened for reading without looking at their type."""
    unit = pinned_unit(tree)
    fifo = tree.qdir / "app.container.d/10-image.conf"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    tree.refused(unit, named=fifo, needle="is a FIFO, not a unit file")


@pytest.mark.parametrize(
    ("make", "kind"), [(os.mkfifo, "a FIFO"), (os.mkdir, "a directory")], ids=["fifo", "directory"]
)
def test_install_destination_that_is_not_a_file(tree: Tree, make: Callable[[Path], None], kind: str) -> None:
    """These hung (FIFO) or crashed (exit 70): the file an install replaces was opened blindly."""
    src = write(tree.top, "src/app.container", f"[Container]\nImage={PINNED}\n")
    make(tree.qdir / "app.container")
    tree.refused(src, named=tree.qdir / "app.container", needle=f"is {kind}, not a unit file; remove it")


def test_unit_that_is_a_socket(tree: Tree) -> None:
    unit = tree.qdir / "app.container"
    cwd = os.getcwd()
    os.chdir(tree.qdir)  # a socket path has at most 107 bytes; the pytest tmp path may not fit
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind("app.container")
            tree.refused(unit, named=unit, needle="is a socket, not a unit file")
    finally:
        os.chdir(cwd)


def test_unit_that_is_a_character_device(tree: Tree) -> None:
    unit = tree.qdir / "app.container"
    try:
        os.mknod(unit, 0o644 | stat.S_IFCHR, os.makedev(1, 5))  # what /dev/zero is
    except PermissionError:
        pytest.skip("mknod is not permitted here (test_unit_linked_to_dev_zero covers the link)")
    tree.refused(unit, named=unit, needle="is a character device, not a unit file")


def test_unit_linked_to_dev_zero_resolves_inside_the_root(tree: Tree) -> None:
    unit = tree.qdir / "app.container"
    os.symlink("/dev/zero", unit)  # inside the root: ROOT/dev/zero, which does not exist
    tree.refused(unit, named=unit, needle="no such unit file")


def test_source_outside_the_root_linked_to_dev_zero(tree: Tree) -> None:
    """Outside the root, host links apply: /dev/zero itself, refused by type before any read."""
    src = tree.top / "src/app.container"
    src.parent.mkdir()
    os.symlink("/dev/zero", src)
    tree.refused(src, named=src, needle="is a character device, not a unit file")


def _without_dac_override() -> tuple[str, ...]:
    """A prefix that runs bindimg as root minus the capabilities that let root read anything."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is missing: root reads a chmod 000 file")
    return (setpriv, "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all")


def test_unreadable_unit(tree: Tree) -> None:
    """Tests run as root, which reads a chmod 000 file: run bindimg without CAP_DAC_OVERRIDE."""
    prefix = _without_dac_override()
    unit = pinned_unit(tree)
    unit.chmod(0)
    tree.refused(unit, named=unit, needle="cannot read: Permission denied", prefix=prefix)


def test_unreadable_dropin_dir(tree: Tree) -> None:
    """This crashed (exit 70): only a missing drop-in directory was expected."""
    prefix = _without_dac_override()
    unit = pinned_unit(tree)
    dropins = tree.qdir / "app.container.d"
    dropins.mkdir()
    dropins.chmod(0)
    tree.refused(
        unit, named=dropins, needle="cannot read: Permission denied; fix its permissions", prefix=prefix
    )


# --- 5. lock files ----------------------------------------------------------------------------


def lock_refused(tree: Tree, lock: Path, *, line: Optional[int], needle: str) -> None:
    unit = write(tree.qdir, "app.container", "[Container]\nImage=quay.io/o/a:1\n")
    tree.refused("--lock", lock, "--frozen", unit, named=lock, line=line, needle=needle)


def entries(count: int) -> str:
    return "".join(
        f'[images."quay.io/o/n{i}:1"]\ndigest = "{D1}"\nmedia-type = "x"\nused-by = ["a.container"]\n\n'
        for i in range(count)
    )


LOCK_HEAD = f"# {lockfile.HEADER}\nversion = 1\n\n"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        pytest.param(
            f'# {lockfile.HEADER}\nversion = 2\n\n[images."quay.io/o/a:1"]\ndigest = "{D1}"\n',
            2,
            "lock file version 2 is not supported (this bindimg reads version 1)",
            id="future-version",
        ),
        pytest.param(
            f'version = 1\n[images."quay.io/o/a:1"\ndigest = "{D1}"\n', 2, "is not valid TOML", id="bad-toml"
        ),
        pytest.param(
            f'version = 1\n[images."quay.io/o/a:1"]\ndigest = "{D1}"\ndigest = "{D1}"\n',
            None,
            'is not valid TOML (Key "digest" already exists.)',
            id="duplicate-key",
        ),
        pytest.param(
            LOCK_HEAD + entries(5000) + '[images."quay.io/o/bad:1"]\ndigest = "sha256:abc"\n',
            3 + 5 * 5000 + 1,
            "images.'quay.io/o/bad:1': digest must be sha256:<64 lower-case hex>",
            id="5000-entries-then-a-bad-one",
        ),
        pytest.param(
            LOCK_HEAD + '[images."docker.io/alpine:3"]\ndigest = "' + D1 + '"\n',
            4,
            "not a canonical tag reference (expected 'docker.io/library/alpine:3')",
            id="non-canonical-key",
        ),
    ],
)
def test_damaged_lock_is_refused(tree: Tree, text: str, line: Optional[int], needle: str) -> None:
    lock = write(tree.top, "bindimg.lock", text)
    lock_refused(tree, lock, line=line, needle=needle)


def test_lock_not_utf8(tree: Tree) -> None:
    lock = write(tree.top, "bindimg.lock", "version = 1\n".encode("utf-16"))
    lock_refused(tree, lock, line=None, needle="is not UTF-8 text; regenerate it with `bindimg lock`")


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        pytest.param(os.mkfifo, "is a FIFO, not a lock file", id="fifo"),
        pytest.param(os.mkdir, "is a directory, not a lock file", id="directory"),
        pytest.param(
            lambda p: os.symlink("/dev/zero", p), "is a character device, not a lock file", id="dev-zero"
        ),
    ],
)
def test_lock_that_is_not_a_file(tree: Tree, make: Callable[[Path], None], needle: str) -> None:
    lock = tree.top / "bindimg.lock"
    make(lock)
    lock_refused(tree, lock, line=None, needle=needle)


def test_lock_with_5000_entries_is_read_in_linear_time(tree: Tree) -> None:
    lock = write(
        tree.top, "bindimg.lock", LOCK_HEAD + entries(5000) + f'[images."quay.io/o/a:1"]\ndigest = "{D1}"\n'
    )
    unit = write(tree.qdir, "app.container", "[Container]\nImage=quay.io/o/a:1\n")
    run = tree.accepted("--lock", lock, "--frozen", unit)
    assert run.out == f"changed {unit} {PINNED}\n"
    assert run.seconds < budget(10)  # tomlkit parses some 3,000 entries a second; this was minutes


def test_lock_entries_are_checked_without_a_scan_per_entry() -> None:
    """20,000 entries checked in well under a second: a line search per entry made it quadratic."""
    text = LOCK_HEAD + entries(20_000)
    document = {
        "version": 1,
        "images": {
            f"quay.io/o/n{i}:1": {"digest": D1, "media-type": "x", "used-by": ["a.container"]}
            for i in range(20_000)
        },
    }
    start = time.perf_counter()
    assert len(lockfile._entries(document, text, "bindimg.lock")) == 20_000
    assert time.perf_counter() - start < budget(1.0)


# --- 6. references built to make a backtracking regex explode --------------------------------

REGEX_BAIT = [
    # Small ones first: with c/image's literal `[-]*` separator these already take seconds.
    pytest.param("a" * 26 + "!", id="a*26+!"),
    pytest.param("quay.io/" + "a" * 26 + "!", id="quay.io/a*26+!"),
    pytest.param("a" * 5000 + "!", id="a*5000+!"),
    pytest.param("a" * 1000 + "!", id="a*1000+!"),
    pytest.param("a-" * 5000, id="a-*5000"),
    pytest.param("a-" * 500, id="a-*500"),
    pytest.param("a" + "_." * 3000, id="a+_.*3000"),
    pytest.param("a" + "_." * 500, id="a+_.*500"),
    pytest.param(".".join(["a"] * 3000) + "/x", id="domain-labels*3000"),
    pytest.param(".".join(["ab-"] * 250) + "/x", id="domain-labels-ending-in-dash"),
    pytest.param("quay.io/" + "a-" * 500 + "!", id="path-separators-then-bang"),
    pytest.param("quay.io/" + "a/" * 400 + "!", id="path-components-then-bang"),
    pytest.param("quay.io/a:" + "a" * 1000 + "!", id="long-tag"),
    pytest.param("quay.io/a@" + "a+" * 300 + "!", id="digest-algorithm-chain"),
    pytest.param("quay.io/a@sha256:" + "f" * 900 + "g", id="long-digest-hex"),
    pytest.param("quay.io/" + "aB-" * 300, id="upper-case-retry"),
    pytest.param("a" * (1024 * 1024), id="1MB"),
]


@pytest.mark.parametrize("value", REGEX_BAIT)
def test_regex_bait_is_refused_in_milliseconds(value: str) -> None:
    times = []
    for _ in range(3):  # the best of three: a GC pause on a busy machine is no ReDoS
        start = time.perf_counter()
        with pytest.raises(reference.ReferenceError):
            reference.parse(value)
        times.append(time.perf_counter() - start)
    assert min(times) < budget(PARSE_BUDGET)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        pytest.param("a" * 5000 + "!", "reference is too long (5001 characters)", id="a*5000+!"),
        pytest.param("a-" * 5000, "reference is too long (10000 characters)", id="a-*5000"),
        pytest.param("a" + "_." * 3000, "reference is too long (6001 characters)", id="a+_.*3000"),
        pytest.param(".".join(["a"] * 3000) + "/x", "reference is too long", id="domain-labels*3000"),
        pytest.param(
            "quay.io/" + "a-" * 500 + "!", "invalid reference format", id="path-separators-then-bang"
        ),
        pytest.param(".".join(["ab-"] * 250) + "/x", "invalid reference format", id="labels-ending-in-dash"),
        pytest.param("quay.io/" + "a" * 1000, "must not be more than 255 characters", id="name-too-long"),
    ],
)
def test_regex_bait_through_the_cli(tree: Tree, value: str, needle: str) -> None:
    unit = write(tree.qdir, "app.container", f"[Container]\nImage={value}\n")
    run = tree.refused(unit, named=unit, line=2, needle=needle)
    assert run.seconds < budget(CLI_BUDGET)
    assert len(run.err) < 600


# --- 7. look-alikes, case and whitespace classes ---------------------------------------------


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        pytest.param("Image=quay.io/\u0430pp:1", "invalid reference format", id="cyrillic-a-in-path"),
        pytest.param("Image=qu\u0430y.io/app:1", "invalid reference format", id="cyrillic-a-in-domain"),
        pytest.param("Image=quay.io/App:1", "repository name must be lowercase", id="upper-case-path"),
        pytest.param(
            f"Image=quay.io/o/a@sha256:{'A' * 64}", "invalid checksum digest format", id="upper-hex"
        ),
        pytest.param(f"Image={PINNED}\u200b", "invalid reference format", id="zero-width-space-is-no-space"),
        pytest.param(f"Image=\u00a0{PINNED}", "but bootc reads", id="nbsp-after-equals-parsers-disagree"),
        pytest.param(f"Image=\u3000{PINNED}", "but bootc reads", id="ideographic-space-after-equals"),
        pytest.param(f'Image="{PINNED}"', "but bootc reads '\"quay.io", id="quoted"),
        pytest.param(f"Image={PINNED} ;x", "but bootc reads 'quay.io/o/a@", id="inline-semicolon"),
    ],
)
def test_look_alikes_and_disagreements_are_refused(tree: Tree, line: str, needle: str) -> None:
    unit = write(tree.qdir, "app.container", f"[Container]\n{line}\n")
    tree.refused(unit, named=unit, line=2, needle=needle)


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(f"Image={PINNED}\u00a0", id="trailing-nbsp"),
        pytest.param(f"Image={PINNED}\u3000", id="trailing-ideographic-space"),
        pytest.param(f"Image={PINNED}\u0085", id="trailing-next-line"),
        pytest.param(f"Image=\t{PINNED}", id="tab-before-value"),
        pytest.param(f"  Image \t= {PINNED} \t", id="spaces-and-tabs-around"),
        pytest.param(f"Image=QUAY.IO/o/a@{D1}", id="upper-case-domain-is-valid"),
    ],
)
def test_whitespace_both_parsers_trim_is_accepted_and_kept(tree: Tree, line: str) -> None:
    """Go's TrimSpace and Rust's trim drop the same Unicode spaces at the ends: they agree."""
    unit = write(tree.qdir, "app.container", f"[Container]\n{line}\n")
    tree.accepted(unit)
    indent = line[: len(line) - len(line.lstrip())]
    assert unit.read_text() == f"[Container]\n{line}\n{indent}{STORAGE}\n"


def test_tag_replaced_between_unicode_spaces(tree: Tree) -> None:
    unit = write(tree.qdir, "app.container", f"[Container]\nImage=\tquay.io/o/a:1@{D1}\u3000\n")
    tree.accepted(unit)
    assert unit.read_text() == (
        f"[Container]\n{PROVENANCE}quay.io/o/a:1@{D1}\nImage=\t{PINNED}\u3000\n{STORAGE}\n"
    )


def test_repeated_container_section_last_image_wins(tree: Tree) -> None:
    text = f"[Container]\nImage=quay.io/o/first@{D1}\nExec=x\n[Container]\nImage={PINNED}\n"
    unit = write(tree.qdir, "app.container", text)
    run = tree.accepted(unit)
    assert run.out == f"changed {unit} {PINNED}\n"
    assert unit.read_text() == text + STORAGE + "\n"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"[Container]\nimage={PINNED}\n", id="lower-case-key"),
        pytest.param(f"[Container]\nIMAGE={PINNED}\n", id="upper-case-key"),
        pytest.param(f"[Service]\nImage={PINNED}\n[Container]\nExec=x\n", id="image-in-service"),
        pytest.param(f"[container]\nImage={PINNED}\n", id="lower-case-section"),
        pytest.param(f"[ Container ]\nImage={PINNED}\n", id="spaces-inside-brackets"),
    ],
)
def test_image_not_where_both_parsers_look(tree: Tree, text: str) -> None:
    unit = write(tree.qdir, "app.container", text)
    tree.refused(unit, named=unit, needle="no Image= in [Container]; add one")


# --- 8. file names ---------------------------------------------------------------------------


def test_unit_name_with_spaces(tree: Tree) -> None:
    unit = pinned_unit(tree, "my app.container")
    run = tree.accepted(unit)
    assert run.out == f"changed {unit} {PINNED}\n"
    assert os.readlink(tree.root / BOUND / "my app.container") == f"/{QDIR}/my app.container"


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        pytest.param("a\nb.container", "a\\nb.container", id="newline"),
        pytest.param("a\rb.container", "a\\rb.container", id="carriage-return"),
        pytest.param("a\u2028b.container", "a\\u2028b.container", id="line-separator"),
        pytest.param(os.fsdecode(b"a\xffb.container"), "a\\xffb.container", id="non-utf8-byte"),
    ],
)
def test_unit_name_that_would_break_the_line_is_escaped(tree: Tree, name: str, shown: str) -> None:
    unit = write(tree.qdir, name, "[Container]\nImage=quay.io/o/a:1\n")
    run = tree.refused("--frozen", unit, named=unit, line=2, needle="is neither pinned nor in the lock file")
    assert f"{tree.qdir}/{shown}:2: " in run.err


def test_dropin_with_a_non_utf8_name_is_ordered_by_bytes(tree: Tree) -> None:
    """This crashed (exit 70): drop-in names were sorted with str.encode, which rejects them."""
    unit = pinned_unit(tree)
    write(tree.qdir, os.fsdecode(b"app.container.d/\xff.conf"), "[Container]\nExec=true\n")
    write(tree.qdir, "app.container.d/a.conf", "[Container]\nExec=false\n")
    run = tree.accepted(unit)
    assert run.out == f"changed {unit} {PINNED}\n"


# --- 9. many units ---------------------------------------------------------------------------


def test_1000_units_on_one_command_line(tree: Tree) -> None:
    units = [pinned_unit(tree, f"u{i}.container", f"Image=quay.io/o/u{i}@{D1}\n") for i in range(1000)]
    run = tree.accepted(*units)
    assert run.out.count("\nchanged ") == 999
    assert run.seconds < budget(30)
    assert len(os.listdir(tree.root / BOUND)) == 1000


def test_1000_units_and_one_bad_one_write_nothing(tree: Tree) -> None:
    units = [pinned_unit(tree, f"u{i}.container", f"Image=quay.io/o/u{i}@{D1}\n") for i in range(1000)]
    bad = pinned_unit(tree, "zz.container", "Image=quay.io/o/zz:1\n")
    run = tree.refused("--frozen", *units, bad, named=bad, line=2, needle="is neither pinned nor in the lock")
    assert run.seconds < budget(30)
