"""Signals and secrets at rest: a run stopped by SIGTERM or SIGHUP is as clean as one stopped
by Ctrl-C, and no credential ever reaches a file, even for the instant of a look-up.

A `RUN` step's TMPDIR is the image's own /tmp: whatever a killed run leaves there ships in
the image. So each run here gets a private TMPDIR, and after the signal:

* the password is in no file under the test's directory (TMPDIR included), also while the
  look-up runs, and also after SIGKILL, which no clean-up can catch;
* no skopeo that bindimg started is still running (SIGTERM, SIGHUP, SIGINT sent to bindimg
  alone, not to its process group as a terminal's Ctrl-C is);
* TMPDIR holds nothing of the run, the root is exactly as before;
* the exit status says the signal: killed by it, after cleaning up;
* temporary data of SIGKILLed runs does not pile up: the next run removes it;
* no skopeo outlives a SIGKILLed bindimg either: the kernel kills it (a parent-death signal),
  and the next run takes out what the killed one left staged in the store, with no copy
  still writing there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bindimg import skopeo
from tests.faultkit import alive, command_of, descendants, wait_for
from tests.faultproxy import Delay, FaultProxy, Rule, fault_proxy
from tests.kit import QDIR, STORE, run_bindimg, snapshot
from tests.registry import PushedImages, Registry

USER, PASSWORD = "user", "s3cr3t-PASSWORD-lifetime"
CLEAN_SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
# How long the kernel may take to kill the skopeo of a SIGKILLed bindimg (it takes
# milliseconds; without the parent-death signal skopeo ran until the proxy's delay ended).
SKOPEO_DEATH = 5.0


@pytest.fixture
def blackhole() -> Iterator[str]:
    """host:port of a listener that never answers: a look-up there waits until its time-out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    tmpdir: Path
    skopeo: list[int]  # the skopeo processes seen before the signal

    def finish(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def orphans(self) -> list[int]:
        """The skopeo processes still running SKOPEO_DEATH seconds after bindimg ended
        (polled); killed, so that a failing test leaves none behind."""
        deadline = time.monotonic() + SKOPEO_DEATH
        while any(alive(p) for p in self.skopeo) and time.monotonic() < deadline:
            time.sleep(0.01)
        running = [p for p in self.skopeo if alive(p)]
        for pid in running:
            os.kill(pid, signal.SIGKILL)
        return running


def start(top: Path, *args: str, skopeo_verb: str) -> Started:
    """bindimg ARGS with a private TMPDIR, once a `skopeo VERB` of it runs."""
    tmpdir = top / "tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmpdir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bindimg", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )

    def running() -> list[int]:
        return [
            p
            for p in descendants(proc.pid)
            if command_of(p)[:1] == ["skopeo"] and skopeo_verb in command_of(p)
        ]

    wait_for(lambda: bool(running()) or proc.poll() is not None, 60, f"skopeo {skopeo_verb}")
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    return Started(proc, tmpdir, running())


def files_holding(top: Path, secret: str) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    if secret.encode() in handle.read():
                        found.append(path)
    return found


def leftovers(tmpdir: Path) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, n), tmpdir) for d, ds, fs in os.walk(tmpdir) for n in ds + fs
    )


@pytest.mark.parametrize("sig", [*CLEAN_SIGNALS, signal.SIGKILL], ids=lambda s: signal.Signals(s).name)
def test_creds_never_reach_a_file_even_when_the_lookup_is_killed(
    tmp_path: Path, blackhole: str, sig: signal.Signals
) -> None:
    """`--creds` during a look-up that hangs: nothing on disk holds the password, ever."""
    unit = tmp_path / "root" / QDIR / "app.container"
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Container]\nImage={blackhole}/o/app:1\n")
    run = start(
        tmp_path,
        *("add", "--root", str(tmp_path / "root"), "--creds", f"{USER}:{PASSWORD}", "--timeout", "60"),
        str(unit),
        skopeo_verb="inspect",
    )
    assert files_holding(tmp_path, PASSWORD) == []  # while skopeo holds the credentials
    code = run.finish(sig)
    assert files_holding(tmp_path, PASSWORD) == []
    assert run.orphans() == []
    if sig != signal.SIGKILL:  # and as clean as a Ctrl-C: skopeo gone, nothing left, the signal said
        assert code == -sig
        assert [p for p in run.skopeo if alive(p)] == []
        assert leftovers(run.tmpdir) == []


@pytest.fixture
def slow_blobs(registry: Registry, images: PushedImages) -> Iterator[FaultProxy]:
    """The registry behind a proxy whose blob answers take a minute: a copy stays in progress."""
    with fault_proxy(registry.host) as proxy:
        proxy.add(Rule(Delay(60), path=r"/blobs/"))
        yield proxy


def embed_args(root: Path, proxy: FaultProxy, images: PushedImages) -> list[str]:
    unit = root / QDIR / "app.container"
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(f"[Container]\nImage={proxy.host}/{images.app.repo}@{images.app.digest}\n")
    return ["add", "--embed", "--no-tls-verify", "--retry", "0", "--root", str(root), str(unit)]


@pytest.mark.parametrize("sig", CLEAN_SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_embed_leaves_no_skopeo_no_temporary_data_and_the_root_as_it_was(
    tmp_path: Path, slow_blobs: FaultProxy, images: PushedImages, sig: signal.Signals
) -> None:
    """SIGTERM during `--embed` orphaned skopeo, which went on writing after bindimg exited,
    and left the fetched image in TMPDIR; Ctrl-C (SIGINT to the whole group) was clean."""
    root = tmp_path / "root"
    args = embed_args(root, slow_blobs, images)
    before = snapshot(root)
    run = start(tmp_path, *args, skopeo_verb="copy")
    code = run.finish(sig)
    assert code == -sig, (code, run.proc.stderr.read().decode() if run.proc.stderr else "")
    assert [p for p in run.skopeo if alive(p)] == []
    assert [p for p in descendants(run.proc.pid) if alive(p)] == []
    assert leftovers(run.tmpdir) == []
    assert snapshot(root) == before


def test_temporary_data_of_killed_runs_does_not_pile_up(
    tmp_path: Path, slow_blobs: FaultProxy, images: PushedImages
) -> None:
    """SIGKILL cannot be caught: what a killed run leaves in TMPDIR, the next run removes."""
    root = tmp_path / "root"
    args = embed_args(root, slow_blobs, images)
    for _ in range(2):
        killed = start(tmp_path, *args, skopeo_verb="copy")
        killed.finish(signal.SIGKILL)
        assert killed.orphans() == []
    assert leftovers(tmp_path / "tmp") != []  # what two killed runs left
    slow_blobs.set_rules()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run([sys.executable, "-m", "bindimg", *args], env=env, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert leftovers(tmp_path / "tmp") == []


def test_a_sigkilled_embed_takes_its_skopeo_along_and_the_next_run_undoes_what_it_staged(
    tmp_path: Path, slow_blobs: FaultProxy, images: PushedImages
) -> None:
    """SIGKILL (the OOM killer, a build's time-out) cannot be caught: skopeo went on copying
    into the store after bindimg was gone, racing with the next run that takes the killed
    run's staged image out. Now the kernel kills it with bindimg, and the next run finds
    the journal's image to remove and nothing still writing."""
    root = tmp_path / "root"
    args = embed_args(root, slow_blobs, images)
    run = start(tmp_path, *args, skopeo_verb="copy")
    assert run.finish(signal.SIGKILL) == -signal.SIGKILL
    assert run.orphans() == []
    assert [p for p in descendants(run.proc.pid) if alive(p)] == []
    name = f"{slow_blobs.host}/{images.app.repo}@{images.app.digest}"
    journal = root / STORE / "bindimg-staging.json"
    assert json.loads(journal.read_text()) == [name]  # staged before the copy started
    slow_blobs.set_rules()
    env = {**os.environ, "TMPDIR": str(run.tmpdir)}
    done = run_bindimg(*args, env=env)
    assert done.code == 0, done.err
    assert "removing 1 image an interrupted run left in the store" in done.err
    assert not journal.exists()
    stored = json.loads((root / STORE / "overlay-images/images.json").read_text())
    assert [image["names"] for image in stored] == [[name]]
    assert leftovers(run.tmpdir) == []


def test_a_sigkilled_export_takes_its_skopeo_along(
    tmp_path: Path, slow_blobs: FaultProxy, images: PushedImages
) -> None:
    """The same for `export`: no copy goes on writing into the destination."""
    unit = tmp_path / "root" / QDIR / "app.container"
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Container]\nImage={slow_blobs.host}/{images.app.repo}@{images.app.digest}\n")
    args = ["export", "--to", f"oci:{tmp_path / 'oci'}", "--no-tls-verify", "--retry", "0", str(unit)]
    run = start(tmp_path, *args, skopeo_verb="copy")
    assert run.finish(signal.SIGKILL) == -signal.SIGKILL
    assert run.orphans() == []


def test_the_launcher_starts_skopeo_only_while_bindimg_is_its_parent(tmp_path: Path) -> None:
    """setpriv sets the parent-death signal only once it runs: a bindimg killed before that
    has no child to signal, so the launcher's shell (its parent read after the prctl) must
    not start skopeo when its parent is not the pid bindimg gave it."""
    launcher = skopeo._launcher()
    assert launcher[:4] == (shutil.which("setpriv"), "--pdeathsig", "KILL", "--")  # util-linux 2.38
    ran = tmp_path / "ran"
    for parent, outcome in (("1", (1, b"", False)), (str(os.getpid()), (0, b"", True))):
        done = subprocess.run([*launcher, parent, "touch", str(ran)], capture_output=True, check=False)
        assert (done.returncode, done.stderr, ran.exists()) == outcome, parent


BUSYBOX_SETPRIV = "#!/bin/sh\necho \"setpriv: unrecognized option '--pdeathsig'\" >&2\nexit 1\n"


@pytest.mark.parametrize("setpriv", ["util-linux", "busybox", "none"])
def test_skopeo_runs_with_or_without_setpriv_and_v_shows_its_own_command_line(
    tmp_path: Path, images: PushedImages, setpriv: str
) -> None:
    """Where setpriv is missing or lacks --pdeathsig (busybox's), skopeo runs as a plain
    child: the run works the same, and -v says that a SIGKILL would leave skopeo running.
    Either way -v shows skopeo's command line, not the launcher's."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "skopeo").symlink_to(str(shutil.which("skopeo")))
    if setpriv == "util-linux":
        (bindir / "setpriv").symlink_to(str(shutil.which("setpriv")))
    elif setpriv == "busybox":
        (bindir / "setpriv").write_text(BUSYBOX_SETPRIV)
        (bindir / "setpriv").chmod(0o755)
    unit = tmp_path / "root" / QDIR / "app.container"
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Container]\nImage={images.app.by_digest}\n")
    oci = tmp_path / "oci"
    done = run_bindimg(
        *("export", "-v", "--to", f"oci:{oci}", "--no-tls-verify", str(unit)),
        env={**os.environ, "PATH": str(bindir)},
    )
    assert done.code == 0, done.err
    index = json.loads((oci / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [images.app.digest]
    said = {
        "util-linux": f"bindimg: skopeo runs under {bindir}/setpriv --pdeathsig KILL: it dies with bindimg",
        "busybox": "bindimg: no setpriv with --pdeathsig: a SIGKILLed bindimg would leave its skopeo running",
        "none": "bindimg: no setpriv with --pdeathsig: a SIGKILLed bindimg would leave its skopeo running",
    }[setpriv]
    lines = done.err.splitlines()
    assert lines.count(said) == 1, done.err
    commands = [line for line in lines if line.startswith("bindimg: skopeo ") and line != said]
    assert commands, done.err
    shown = ("bindimg: skopeo copy ", "bindimg: skopeo --")
    assert all(line.startswith(shown) for line in commands), commands
