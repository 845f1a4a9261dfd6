"""Invariant 7: no credential in any output — stdout, stderr, files bindimg writes, skopeo's argv.

The registry here demands credentials: a fault proxy in front of the test registry forwards
only requests that carry `user:s3cr3t-PASSWORD` as Basic auth (and the test checks that they
did reach it, so a clean output is not a look-up that never used them). The credentials come
in each way a user can give them: `--creds`, an auth file named by REGISTRY_AUTH_FILE or by
`--authfile` (holding the base64 token), and a `.image` unit's own `Creds=`. With each, `add`,
`lock` and `lint --remote` run in text and machine formats, verbose, when the look-up succeeds,
when the registry refuses the credentials (401) and when the tag does not exist.

What is checked after every run: the password, `user:password` and the base64 token are in
neither stream; no file that bindimg wrote holds them (the unit with `Creds=` and the auth file
hold them before and keep them, no more); TMPDIR is empty again; and skopeo, run through a
shim on PATH that records its argv (what `ps` shows), never got them on its command line, only
an auth file in memory (a memfd, never on disk). Internal errors with `-v` print a traceback:
two are forced in-process and their text is checked too.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer

from bindimg import cli, skopeo
from bindimg.commands import add as add_cmd
from bindimg.registry import Skopeo
from bindimg.resolve import Settings
from bindimg.skopeo import RegistryOptions
from tests.faultproxy import EchoUnauthorized, FaultProxy, RequireBasicAuth, Rule, fault_proxy
from tests.kit import QDIR, Run, run_bindimg
from tests.registry import PushedImages, Registry

USER, PASSWORD = "user", "s3cr3t-PASSWORD"
CREDS = f"{USER}:{PASSWORD}"
TOKEN = base64.b64encode(CREDS.encode()).decode()
SECRETS = (PASSWORD, CREDS, TOKEN)
FAST = ("--retry", "1", "--timeout", "5")
SOURCES = ("creds-option", "registry-auth-file", "authfile-option", "unit-creds")


def secret_counts(top: Path) -> dict[str, int]:
    """How many secrets each file under `top` holds (symlinks: their target text)."""
    counts: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                data = os.readlink(path).encode()
            elif os.path.isfile(path):
                data = Path(path).read_bytes()
            else:
                continue
            counts[os.path.relpath(path, top)] = sum(data.count(s.encode()) for s in SECRETS)
    return counts


@dataclass
class World:
    """The test's directory: units, an auth file, the skopeo shim and a private TMPDIR."""

    top: Path
    host: str
    source: str
    shim_log: Path
    tmpdir: Path
    env: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.top / "root"

    @property
    def qdir(self) -> Path:
        return self.root / QDIR

    @property
    def authfile(self) -> Path:
        return self.top / "auth" / "auth.json"

    def secret_args(self) -> list[str]:
        if self.source == "creds-option":
            return ["--creds", CREDS]
        if self.source == "authfile-option":
            return ["--authfile", str(self.authfile)]
        return []

    def write_units(self, tag: str = "1.0") -> list[str]:
        """app.image and multi.image (with `Creds=` when that is the source), web.container."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.qdir.mkdir(parents=True)
        creds = f"Creds={CREDS}\n" if self.source == "unit-creds" else ""
        texts = {
            "app.image": f"[Image]\nImage={self.host}/test/app:{tag}\n{creds}TLSVerify=false\n",
            "multi.image": f"[Image]\nImage={self.host}/test/multi:1.0\n{creds}TLSVerify=false\n",
            "web.container": "[Container]\nImage=app.image\nExec=/bin/true\n",
        }
        for name, text in texts.items():
            (self.qdir / name).write_text(text)
        return [str(self.qdir / name) for name in texts]

    def run(self, *args: str, expect: int) -> Run:
        """bindimg ARGS with the shim on PATH; then every output check."""
        before = secret_counts(self.top)
        done = run_bindimg(*args, env=self.env, cwd=self.top)
        self.runs.append(done)
        assert done.code == expect, f"{args}: {done.out}{done.err}"
        for secret in SECRETS:
            assert secret not in done.out, f"{args}: stdout has {secret!r}"
            assert secret not in done.err, f"{args}: stderr has {secret!r}"
        after = secret_counts(self.top)
        for path, count in after.items():
            assert count == before.get(path, 0), f"{args}: {path} now holds a secret"
        assert os.listdir(self.tmpdir) == [], f"{args}: temporary files left"
        return done

    def skopeo_calls(self) -> list[list[str]]:
        records = [p.read_bytes() for p in self.shim_log.glob("*.argv")]
        return [[a.decode() for a in r.split(b"\0")[:-1]] for r in records]

    def authfile_targets(self) -> list[str]:
        return [line for p in self.shim_log.glob("*.authfiles") for line in p.read_text().splitlines()]


SHIM = """#!/bin/sh
# Test shim: record the argv (what `ps` shows) and what each --authfile is, one file per
# call (calls run in parallel), then run the real skopeo. (The version check is not a call.)
[ "$1" = --version ] && exec REAL_SKOPEO "$@"
log="$BINDIMG_SHIM_LOG/$$"
for arg in "$@"; do
    case $arg in
    --authfile=*) readlink "${arg#--authfile=}" >>"$log.authfiles" ;;
    esac
done
printf '%s\\0' "$@" >"$log.argv"
exec REAL_SKOPEO "$@"
"""


@pytest.fixture
def gate(registry: Registry, images: PushedImages) -> Iterator[FaultProxy]:
    """The test registry behind a proxy that lets through only requests with the credentials."""
    with fault_proxy(registry.host) as proxy:
        proxy.add(Rule(RequireBasicAuth(USER, PASSWORD)))
        yield proxy


def make_world(top: Path, host: str, source: str) -> World:
    real = shutil.which("skopeo")
    assert real is not None
    bindir, tmpdir = top / "bin", top / "tmp"
    bindir.mkdir()
    tmpdir.mkdir()
    shim = bindir / "skopeo"
    shim.write_text(SHIM.replace("REAL_SKOPEO", real))
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
    env.update(
        PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
        TMPDIR=str(tmpdir),
        BINDIMG_SHIM_LOG=str(top / "skopeo-calls"),
        # skopeo's own default auth file lookups must not find another test's credentials
        XDG_RUNTIME_DIR=str(top / "xdg"),
        HOME=str(top / "home"),
    )
    world = World(top, host, source, top / "skopeo-calls", tmpdir, env)
    world.shim_log.mkdir()
    world.authfile.parent.mkdir()
    world.authfile.write_text(json.dumps({"auths": {host: {"auth": TOKEN}}}))
    world.authfile.chmod(0o600)
    if source == "registry-auth-file":
        env["REGISTRY_AUTH_FILE"] = str(world.authfile)
    return world


@pytest.mark.parametrize("source", SOURCES)
def test_no_secret_in_any_output(tmp_path: Path, gate: FaultProxy, source: str) -> None:
    world = make_world(tmp_path, gate.host, source)
    secret = world.secret_args()
    units = world.write_units()
    root = ["--root", str(world.root)]

    # Success: add pins (text, then the JSON of a second, unchanged run), lock, lint --remote.
    world.run("add", "-v", *root, *FAST, *secret, *units, expect=0)
    assert any(s.authorization == f"Basic {TOKEN}" for s in gate.requests(outcome="pass"))
    done = world.run("add", "-v", "--json", *root, *FAST, *secret, *units, expect=0)
    assert [e["changed"] for e in json.loads(done.out)["images"]] == [False, False]
    lock = str(tmp_path / "bindimg.lock")
    world.run("lock", "-v", "--lock", lock, *FAST, *secret, str(world.qdir), expect=0)
    world.run("lock", "-v", "--lock", lock, "--update", *FAST, *secret, str(world.qdir), expect=0)
    for fmt in ("text", "sarif"):  # json and github below, on failure
        world.run("lint", "-v", "--remote", "--format", fmt, *FAST, *secret, *root, expect=0)

    # The registry refuses the credentials (401 with a challenge), and its error message even
    # repeats the Authorization header it got: add, lock and lint --remote fail with exit 3
    # (refused credentials say nothing about the digests), and the token shows in none of it.
    gate.set_rules(Rule(EchoUnauthorized()))
    done = world.run("lint", "-v", "--remote", "--format", "json", *FAST, *secret, *root, expect=3)
    assert json.loads(done.out)["error"]["exit_code"] == 3
    world.run("lint", "-v", "--remote", "--format", "github", *FAST, *secret, *root, expect=3)
    world.run("lock", "-v", "--lock", lock, "--update", *FAST, *secret, str(world.qdir), expect=3)
    units = world.write_units()
    done = world.run("add", "-v", *root, *FAST, *secret, *units, expect=3)
    assert f": cannot resolve {gate.host}/test/app:1.0: " in done.err.splitlines()[-1]
    assert "unauthorized: authentication required, got Basic ***" in done.err
    world.run("add", "-v", "--json", *root, *FAST, *secret, *units, expect=3)
    refused = gate.requests(r"/manifests/", outcome="EchoUnauthorized")
    assert refused and all(s.authorization == f"Basic {TOKEN}" for s in refused)

    # An unknown tag, the credentials accepted again.
    gate.set_rules(Rule(RequireBasicAuth(USER, PASSWORD)))
    units = world.write_units(tag="no-such-tag")
    done = world.run("add", "-v", *root, *FAST, *secret, *units, expect=3)
    assert "manifest unknown" in done.err.splitlines()[-1]
    world.run("lock", "-v", "--lock", str(tmp_path / "other.lock"), *FAST, *secret, str(world.qdir), expect=3)

    # skopeo's command lines (what `ps` shows) never held a secret; every auth file (from
    # --creds, Creds=, --authfile or REGISTRY_AUTH_FILE) reached it as a memfd, never as a
    # file on disk, and nothing was left in TMPDIR.
    calls = world.skopeo_calls()
    assert len(calls) >= 20
    for argv in calls:
        look_up = argv[:2] in (["inspect", "--raw"], ["inspect", "--config"])  # --config: its platform
        assert look_up and not any(s in a for a in argv for s in SECRETS), argv
    authfiles = [a.split("=", 1)[1] for argv in calls for a in argv if a.startswith("--authfile=")]
    assert len(authfiles) == len(calls)
    assert all(re.fullmatch(r"/proc/self/fd/\d+", a) for a in authfiles), authfiles
    targets = world.authfile_targets()
    assert len(targets) == len(calls) and all(t.startswith("/memfd:bindimg-auth") for t in targets), targets
    assert os.listdir(world.tmpdir) == []


# --- internal errors: the traceback (-v) holds no secret either ----------------------------------


class QuotingRegistry(Skopeo):
    """The real skopeo registry with a bug: a failed look-up is raised as a RuntimeError that
    quotes skopeo's whole command line, as the skopeo on PATH (ARGV_SHIM) recorded it."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def inspect_raw(
        self, reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
    ) -> bytes:
        try:
            return super().inspect_raw(reference, options, timeout=timeout, secrets=secrets)
        except skopeo.SkopeoError:
            argv = ["skopeo", *(self.log / "argv").read_bytes().decode().split("\0")[:-1]]
            raise RuntimeError(f"cannot run {argv!r} with {options!r}") from None


class ReprRegistry(Skopeo):
    """A bug whose message shows the registry options (with the unit's Creds=)."""

    def inspect_raw(
        self, reference: str, options: RegistryOptions, *, timeout: float, secrets: tuple[str, ...] = ()
    ) -> bytes:
        assert options.creds == CREDS  # the unit's Creds= did arrive here
        raise ValueError(f"unexpected answer for {reference} with {options!r}")


ARGV_SHIM = """#!/bin/sh
# Test shim: the version check goes to the real skopeo; a call records its argv, what its
# --authfile is and what the private TMPDIR holds meanwhile, then fails as skopeo would.
[ "$1" = --version ] && exec REAL_SKOPEO "$@"
printf '%s\\0' "$@" >>"$BINDIMG_SHIM_LOG/argv"
for arg in "$@"; do
    case $arg in
    --authfile=*) readlink "${arg#--authfile=}" >>"$BINDIMG_SHIM_LOG/authfiles" ;;
    esac
done
ls -A "$BINDIMG_SHIM_TMP" >>"$BINDIMG_SHIM_LOG/tmp"
echo 'time="now" level=fatal msg="manifest unknown"' >&2
exit 1
"""


def _add(unit: Path, client: Skopeo, creds: str | None = None) -> int:
    """`bindimg add -v` of `unit` with `client`, in this process, inside the CLI's one error
    boundary (what prints a traceback with -v); the exit code."""
    out = cli.Output(verbose=True)
    with pytest.raises(typer.Exit) as exited, out.errors():
        root = str(unit.parents[4])
        add_cmd.run([str(unit)], root=root, registry=RegistryOptions(creds=creds), settings=Settings(retry=0),
                    client=client)  # fmt: skip
    return exited.value.exit_code


@pytest.fixture
def pinned_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A root with a unit whose tag needs a look-up; a private tempfile directory."""
    qdir = tmp_path / "root" / QDIR
    qdir.mkdir(parents=True)
    unit = qdir / "app.image"
    unit.write_text(f"[Image]\nImage=registry.example/org/app:1\nCreds={CREDS}\n")
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(private))
    return unit, private


def _assert_traceback_clean(err: str, out: str) -> None:
    assert "Traceback (most recent call last)" in err
    assert err.splitlines()[-1].startswith("bindimg: internal error: ")
    for secret in SECRETS:
        assert secret not in err and secret not in out


def test_traceback_of_a_failing_skopeo_call_holds_no_secret(
    pinned_root: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error that quotes skopeo's whole command line and its arguments: argv carries only
    the memfd's /proc path, and nothing is on disk, before or after the failure."""
    unit, private = pinned_root
    real = shutil.which("skopeo")
    assert real is not None
    bindir, log = private.parent / "bin", private.parent / "skopeo-calls"
    bindir.mkdir()
    log.mkdir()
    (bindir / "skopeo").write_text(ARGV_SHIM.replace("REAL_SKOPEO", real))
    (bindir / "skopeo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("BINDIMG_SHIM_LOG", str(log))
    monkeypatch.setenv("BINDIMG_SHIM_TMP", str(private))
    code = _add(unit, QuotingRegistry(log), creds=CREDS)
    out, err = capsys.readouterr()
    assert code == 70
    authfiles = (log / "authfiles").read_text().splitlines()  # one skopeo call, one auth file
    assert len(authfiles) == 1 and authfiles[0].startswith("/memfd:bindimg-auth"), authfiles
    assert (log / "tmp").read_text() == ""
    assert "RuntimeError: cannot run ['skopeo', 'inspect', '--raw'" in err
    _assert_traceback_clean(err, out)
    assert os.listdir(private) == []


def test_traceback_that_prints_the_registry_options_holds_no_secret(
    pinned_root: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug whose message shows the options object (with the unit's Creds=): repr hides them."""
    unit, _ = pinned_root
    code = _add(unit, ReprRegistry())
    out, err = capsys.readouterr()
    assert code == 70
    assert "ValueError: unexpected answer for registry.example/org/app:1 with RegistryOptions(" in err
    _assert_traceback_clean(err, out)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (f"unauthorized: got Basic {TOKEN}", "unauthorized: got Basic ***"),
        ("denied: bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln, retry", "denied: bearer ***, retry"),
        (f"{CREDS} and {PASSWORD}", "*** and ***"),
        ("Basic authentication required", "Basic authentication required"),  # words stay
        ("Bearer token expired; basic realm missing", "Bearer token expired; basic realm missing"),
    ],
)
def test_redaction_of_known_secrets_and_echoed_authorization_values(text: str, redacted: str) -> None:
    assert skopeo._redact(text, skopeo._secrets(RegistryOptions(creds=CREDS))) == redacted


def test_a_creds_line_quadlet_cannot_read_is_not_echoed(tmp_path: Path) -> None:
    """`Creds user:pass` (a typo for `Creds=`) is still a password: the parse error hides it."""
    unit = tmp_path / "root/usr/share/containers/systemd/app.image"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Image]\nImage=quay.io/o/a:1\nCreds user:s3cr3t-PASSWORD\n")
    add = run_bindimg("add", "--root", str(tmp_path / "root"), "-v", str(unit))
    lint = run_bindimg("lint", "--format", "json", str(unit.parent))
    assert add.code == 2
    assert add.err == (
        "podman version not found in the root: newest rules\n"  # what -v says first
        f"bindimg: error: {unit}:3: file contains line 3: \u201c(not shown: it may hold credentials)\u201d "
        "which is not a key-value pair, group, or comment\n"
    )
    assert lint.code == 1
    for text in (add.out, add.err, lint.out, lint.err):
        assert "s3cr3t-PASSWORD" not in text


def test_a_skopeo_that_cannot_be_run_is_exit_3(tmp_path: Path) -> None:
    fake = tmp_path / "bin/skopeo"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o644)  # present on PATH, not executable
    unit = tmp_path / "root/usr/share/containers/systemd/app.container"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Container]\nImage=quay.io/o/a:1\n")
    env = {**os.environ, "PATH": str(fake.parent)}  # the only skopeo there is
    done = run_bindimg("add", "--root", str(tmp_path / "root"), "--retry", "0", str(unit), env=env)
    assert done.code == 3
    assert done.err.splitlines()[-1] == (
        "bindimg: error: cannot run skopeo: Permission denied; check the skopeo on PATH"
    )


def test_dry_run_diff_shows_no_creds(tmp_path: Path) -> None:
    """The diff's context held a `.image` unit's `Creds=user:password` line as it is."""
    qdir = tmp_path / "root" / QDIR
    qdir.mkdir(parents=True)
    digest = "sha256:" + "1" * 64
    unit = qdir / "app.image"
    unit.write_text(f"[Image]\nCreds={CREDS}\nImage=docker.io/o/app:1@{digest}\n Creds = {CREDS}\n")
    container = qdir / "app.container"
    container.write_text("[Container]\nImage=app.image\n")
    done = run_bindimg("add", "--dry-run", "--root", str(tmp_path / "root"), str(container))
    assert done.code == 0, done.err
    assert f"\n Creds=***\n-Image=docker.io/o/app:1@{digest}\n" in done.out
    assert "\n  Creds =***\n" in done.out
    for secret in SECRETS:
        assert secret not in done.output
