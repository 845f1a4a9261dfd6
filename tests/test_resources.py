"""Resources: every file handed to skopeo is checked as bindimg's own inputs are, and waits
between retries are bounded.

`AuthFile=/dev/zero` (or `--authfile` naming a FIFO or a device) made skopeo read without end,
at about 1 GB/s of memory. Now each auth file (`--authfile`, a `.image` unit's `AuthFile=`,
`REGISTRY_AUTH_FILE`) is read by bindimg as a regular file of at most 1 MiB, and the
certificates skopeo would read from a `--cert-dir` or `CertDir=` must be regular files too:
anything else is exit 2, one line naming the file, in a moment, before any network.

The back-off between retries (0.5 s, 1 s, 2 s …) is capped at 30 s: `--retry 20` waited days.
Linear time for `add` of 10,000 units is measured in bench/add_scale.py (speed is not
asserted in tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bindimg.resolve import MAX_BACKOFF_SECONDS, Settings, backoff, retrying
from bindimg.skopeo import SkopeoError
from tests.faultkit import refused
from tests.kit import QDIR, run_bindimg, snapshot

BUDGET = 10.0  # seconds: far more than a refusal takes, far less than reading /dev/zero for ever


def _special(tmp_path: Path, kind: str) -> Path:
    if kind == "dev-zero":
        return Path("/dev/zero")
    if kind == "fifo":
        os.mkfifo(tmp_path / "auth.fifo")
        return tmp_path / "auth.fifo"
    if kind == "directory":
        (tmp_path / "auth.d").mkdir()
        return tmp_path / "auth.d"
    big = tmp_path / "auth-big.json"
    with open(big, "wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    return big


KINDS = {
    "dev-zero": "is a character device, not a registry auth file",
    "fifo": "is a FIFO, not a registry auth file",
    "directory": "is a directory, not a registry auth file",
    "too-big": "larger than 1 MiB; not a registry auth file",
}


def _unit(tmp_path: Path, body: str = "") -> tuple[Path, Path]:
    root = tmp_path / "root"
    unit = root / QDIR / "app.image"
    unit.parent.mkdir(parents=True)
    # a registry nobody listens on: a check that came after the network would show as exit 3
    unit.write_text(f"[Image]\nImage=127.0.0.1:9/o/app:1\n{body}")
    return root, unit


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_authfile_option_that_is_no_regular_bounded_file_is_refused(tmp_path: Path, kind: str) -> None:
    root, unit = _unit(tmp_path)
    bad = _special(tmp_path, kind)
    before = snapshot(root)
    run = run_bindimg("add", "-q", "--root", str(root), "--authfile", str(bad), str(unit), timeout=BUDGET)
    refused(run, 2, bad, KINDS[kind])
    assert snapshot(root) == before


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_registry_auth_file_variable_that_is_no_regular_bounded_file_is_refused(
    tmp_path: Path, kind: str
) -> None:
    _, unit = _unit(tmp_path)
    bad = _special(tmp_path, kind)
    env = {**os.environ, "REGISTRY_AUTH_FILE": str(bad)}
    run = run_bindimg(
        "lock", "-q", "--lock", str(tmp_path / "bindimg.lock"), str(unit), env=env, timeout=BUDGET
    )
    refused(run, 2, bad, KINDS[kind])
    assert not (tmp_path / "bindimg.lock").exists()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_units_authfile_that_is_no_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """`AuthFile=` of a source `.image` unit, used by `lock` for its look-up. In a root, the
    path means the root's file: /dev/zero there is the root's own device node (if any)."""
    bad = _special(tmp_path, kind)
    _, unit = _unit(tmp_path, f"AuthFile={bad}\n")
    run = run_bindimg("lock", "-q", "--lock", str(tmp_path / "bindimg.lock"), str(unit), timeout=BUDGET)
    refused(run, 2, bad, KINDS[kind])


def test_a_certificate_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    root, unit = _unit(tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text("not read\n")
    os.mkfifo(certs / "client.key")
    run = run_bindimg("add", "-q", "--root", str(root), "--cert-dir", str(certs), str(unit), timeout=BUDGET)
    refused(run, 2, certs / "client.key", "is a FIFO, not a certificate")


def test_backoff_doubles_then_stays_at_the_cap() -> None:
    assert [backoff(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(10_000) == MAX_BACKOFF_SECONDS == 30.0


def test_twenty_retries_wait_minutes_not_days() -> None:
    """`retrying` with its sleep and call given (no monkeypatching): what --retry 20 waits."""
    waited: list[float] = []
    attempts = 0

    def hiccup() -> bytes:
        nonlocal attempts
        attempts += 1
        raise SkopeoError("connection refused", transient=True)

    with pytest.raises(RuntimeError, match=r"connection refused \(after 21 attempts\)"):
        retrying(
            Settings(retry=20),
            hiccup,
            lambda error, tries: RuntimeError(error.message + tries),
            waited.append,
        )
    assert attempts == 21
    assert sum(waited) == 0.5 + 1 + 2 + 4 + 8 + 16 + 14 * 30.0  # 451.5 s; uncapped: 6 days
