"""The podman version of a root, from package databases written by the real rpm and in dpkg's format."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bindimg.errors import InputError
from bindimg.podmanversion import ANY_PATCH, NEWEST, Podman, choose, detect, from_option
from bindimg.rootfs import Root
from tests.kit import snapshot, write

SPEC = """Name: {name}
Version: {version}
Release: 1.fc42
Epoch: 5
Summary: a package of the test rpm database
License: MIT
BuildArch: noarch
%description
test
%files
"""


def rpm_database(root: Path, dbdir: str, packages: dict[str, str], work: Path) -> Path:
    """An rpm sqlite database made by rpm itself: each package built and recorded (--justdb)."""
    dbpath = root / dbdir.lstrip("/")
    dbpath.mkdir(parents=True)
    subprocess.run(["rpm", "--dbpath", str(dbpath), "--initdb"], check=True)
    for name, version in packages.items():
        spec = write(work, f"SPECS/{name}.spec", SPEC.format(name=name, version=version))
        subprocess.run(
            ["rpmbuild", "--quiet", "--define", f"_topdir {work}", "-bb", str(spec)],
            check=True,
            capture_output=True,
        )
        built = work / "RPMS/noarch" / f"{name}-{version}-1.fc42.noarch.rpm"
        subprocess.run(
            ["rpm", "--dbpath", str(dbpath), "-i", "--justdb", "--nodeps", "--noscripts", str(built)],
            check=True,
            capture_output=True,
        )
    return dbpath / "rpmdb.sqlite"


def dpkg_status(root: Path, *paragraphs: str) -> Path:
    return write(root, "var/lib/dpkg/status", "\n".join(paragraphs))


def paragraph(package: str, version: str, status: str = "install ok installed") -> str:
    return (
        f"Package: {package}\nStatus: {status}\nPriority: optional\nVersion: {version}\n"
        "Description: a package\n continued description\n"
    )


@pytest.mark.parametrize("dbdir", ["/usr/lib/sysimage/rpm", "/var/lib/rpm"])
def test_rpm_database_of_the_root(tmp_path: Path, dbdir: str) -> None:
    root = tmp_path / "r"
    rpm_database(root, dbdir, {"podman-docker": "9.9.9", "podman": "5.5.2"}, tmp_path / "build")
    before = snapshot(root)
    assert detect(Root(str(root))) == Podman((5, 5, 2), "5.5.2", f"{dbdir}/rpmdb.sqlite")
    assert snapshot(root) == before  # opened immutable: no journal, no lock file


def test_rpm_database_without_podman_and_dpkg_fallback(tmp_path: Path) -> None:
    root = tmp_path / "r"
    rpm_database(root, "/usr/lib/sysimage/rpm", {"skopeo": "1.20.0"}, tmp_path / "build")
    assert detect(Root(str(root))) == NEWEST
    dpkg_status(root, paragraph("podman", "1:5.6.0~rc1+ds1-2"))
    assert detect(Root(str(root))) == Podman((5, 6, 0), "5.6.0", "/var/lib/dpkg/status")


def test_dpkg_status_only_counts_an_installed_podman(tmp_path: Path) -> None:
    root = tmp_path / "r"
    dpkg_status(
        root,
        paragraph("podman-docker", "9.9"),
        paragraph("podman", "4.3.1+ds1-8", "deinstall ok config-files"),
    )
    assert detect(Root(str(root))) == NEWEST
    dpkg_status(root, paragraph("podman-docker", "9.9"), paragraph("podman", "4.3.1+ds1-8+deb12u1+b3"))
    assert detect(Root(str(root))).describe() == "podman 4.3.1 (from /var/lib/dpkg/status)"


def test_a_full_status_file_is_read_to_its_end_and_only_a_package_field_counts(tmp_path: Path) -> None:
    root = tmp_path / "r"
    many = [paragraph(f"lib{i}", "1.0") for i in range(20000)]  # about 2.4 MB, as a desktop's
    mention = paragraph("podman-compose", "1.0").replace(" continued", " Package: podman\n continued")
    last = "package:   podman \nStatus: install ok installed\nVersion: 1:6.0.1+ds1-1\n"
    dpkg_status(root, *many, mention, paragraph("podman-docker", "9.9"), last)
    assert detect(Root(str(root))) == Podman((6, 0, 1), "6.0.1", "/var/lib/dpkg/status")


def test_damaged_or_hostile_databases_mean_newest_rules(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root, "usr/lib/sysimage/rpm/rpmdb.sqlite", b"SQLite format 3\0 but nothing after")
    os.makedirs(root / "var/lib")
    os.mkfifo(root / "var/lib/rpm")  # neither a database nor a directory of one
    outside = dpkg_status(tmp_path, paragraph("podman", "5.0.0"))
    os.makedirs(root / "var/lib/dpkg")
    os.symlink(f"/../../../..{outside}", root / "var/lib/dpkg/status")  # resolved inside the root
    assert detect(Root(str(root))) == NEWEST
    assert NEWEST.describe() == "podman version not found in the root: newest rules"
    assert NEWEST.as_json() == {"version": None, "source": "default"}


def test_the_option_wins_and_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "r"
    dpkg_status(root, paragraph("podman", "5.4.2+ds1-2"))
    # X.Y: the newest release of the series (5.8.2's quote rule applies to `5.8`)
    assert choose("5.8", Root(str(root))) == Podman((5, 8, ANY_PATCH), "5.8", "--podman-version")
    assert choose("5.8.1", None) == Podman((5, 8, 1), "5.8.1", "--podman-version")
    assert choose(None, Root(str(root))).version == (5, 4, 2)
    assert choose(None, None) == NEWEST
    assert from_option("6.0.1").describe() == "podman 6.0.1 (--podman-version)"
    for bad in ("5", "five.six", "5.6-rc1", "5.6.0.1", ""):
        with pytest.raises(InputError, match="--podman-version"):
            from_option(bad)
