"""bindimg's Quadlet reading against podman's real Quadlet generators (5.4.x and 5.8.x).

Every tree here is read twice, by the generator binary (tests/quadletgen.py) and by bindimg
(tests/quadletread.py), and compared unit by unit: service or not, the image it runs, pulls
or creates a volume from, and the images it mounts. bindimg reads each tree with the rules of
the generator's own podman version. Trees: fixed regression cases (each a disagreement found
here, with its exact outcome), the one-unit cases of test_list, and hypothesis-generated
batches of trees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Union

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.quadletgen import (
    NO_SERVICE,
    ROOTFUL_DIRS,
    Generator,
    Outcome,
    generators,
    outcome,
    run_dirs,
    run_root,
)
from tests.quadletread import COMPARED, read_dirs, read_root
from tests.test_list import ONE_UNIT


@dataclass(frozen=True)
class Link:
    """A symlink in a tree, to `target` (relative to the link's directory)."""

    target: str


Tree = dict[str, Union[str, Link]]  # path in the tree -> text or symlink


@pytest.fixture(scope="module")
def gens() -> list[Generator]:
    return generators()


def write_tree(base: Path, tree: Tree) -> None:
    for rel, content in tree.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Link):
            path.symlink_to(content.target)
        else:
            path.write_text(content, encoding="utf-8")


def unit_names(base: Path) -> set[str]:
    """Every unit file name anywhere in the tree (read or not, parsing or not)."""
    names = set()
    for _, dirs, files in os.walk(base):
        names.update(n for n in [*files, *dirs] if n.endswith(COMPARED))
    return names


Disagreement = tuple[str, str, Outcome, Outcome]  # generator, unit, generator's, bindimg's


def differences(gen: Generator, base: Path, mode: str) -> tuple[int, list[Disagreement]]:
    """(units compared, disagreements) of one generator on the tree at `base`."""
    if mode == "root":
        services, _ = run_root(gen, base)
        ours = read_root(base, gen.series)
    else:
        services, _ = run_dirs(gen, [base / d for d in ROOTFUL_DIRS])
        ours = read_dirs([base / d for d in ROOTFUL_DIRS], gen.series)
    names = unit_names(base)
    found = []
    for name in sorted(names):
        theirs, mine = outcome(name, services), ours.get(name, NO_SERVICE)
        if theirs != mine:
            found.append((gen.name, name, theirs, mine))
    return len(names), found


def outcomes(gen: Generator, base: Path, mode: str) -> dict[str, Outcome]:
    services, _ = run_root(gen, base) if mode == "root" else run_dirs(gen, [base / d for d in ROOTFUL_DIRS])
    return {name: outcome(name, services) for name in sorted(unit_names(base))}


# --- fixed cases: each disagreement the generators showed, with its exact outcome ------------

S, E, R = ROOTFUL_DIRS[2], ROOTFUL_DIRS[1], ROOTFUL_DIRS[0]
C = "[Container]\n"
A1, A2, A3 = "reg.io/o/a:1", "reg.io/o/a:2", "reg.io/o/a:3"


def svc(image: object = None, *mounts: str) -> Outcome:
    return Outcome(True, None if image is None else str(image), tuple(mounts))


# (id, mode, tree, {unit: outcome under 5.4, or (5.4, 5.8) when the versions differ})
FIXED: list[tuple[str, str, Tree, dict[str, Union[Outcome, tuple[Outcome, Outcome]]]]] = [
    (
        # 5.6 changed the drop-in search: a unit's own foo.container.d (in /usr/share) now beats
        # a same-named generic container.d drop-in of a higher directory (/etc)
        "dropin-order-by-version",
        "root",
        {
            f"{S}/app.container": C + f"Image={A1}\n",
            f"{S}/app.container.d/10.conf": C + f"Image={A2}\n",
            f"{E}/container.d/10.conf": C + f"Image={A3}\n",
        },
        {"app.container": (svc(A3), svc(A2))},
    ),
    (
        # 5.8.2 strips one "…" pair; before, every leading and trailing quote
        "quotes-by-version",
        "dirs",
        {
            f"{S}/a.container": C + f'Image="{A1}\n',
            f"{S}/b.container": C + f'Image=""{A1}""\n',
            f"{S}/c.container": C + f'Image="{A1}"\n',
        },
        {
            "a.container": (svc(A1), svc(f'"{A1}')),
            "b.container": (svc(A1), svc(f'"{A1}"')),
            "c.container": svc(A1),
        },
    ),
    (
        # the rootful generator does not read /etc/containers/systemd/users (rootless units)
        "rootless-users-dir",
        "root",
        {
            f"{E}/users/app.container": C + f"Image={A1}\n",
            f"{E}/users/1000/web.container": C + f"Image={A1}\n",
            f"{S}/users/db.container": C + f"Image={A2}\n",
            f"{R}/users/run.container": C + f"Image={A3}\n",
        },
        {
            "app.container": NO_SERVICE,
            "web.container": NO_SERVICE,
            "db.container": svc(A2),
            "run.container": svc(A3),
        },
    ),
    (
        # a unit file Quadlet cannot parse drops every unit of its directory (they still count
        # as found: the same name lower down is not used), and the next file of its own name
        # is used instead (podman cmd/quadlet/main.go loadUnitsFromDir)
        "broken-unit-drops-its-directory",
        "root",
        {
            f"{E}/bad.container": C + "not a key\n",
            f"{E}/app.container": C + f"Image={A1}\n",
            f"{E}/ref.container": C + "Image=base.image\n",
            f"{S}/bad.container": C + f"Image={A2}\n",
            f"{S}/app.container": C + f"Image={A2}\n",
            f"{S}/base.image": "[Image]\nImage=reg.io/o/base:1\n",
            f"{S}/sub/web.container": C + "Image=base.image\n",
            f"{S}/sub/net.network": "[Network]\nbroken\n",
        },
        {
            "bad.container": svc(A2),
            "app.container": NO_SERVICE,
            "ref.container": NO_SERVICE,
            "base.image": svc("reg.io/o/base:1"),
            "web.container": NO_SERVICE,
        },
    ),
    (
        "image-and-rootfs",
        "dirs",
        {
            f"{S}/both.container": C + f"Image={A1}\nRootfs=/srv/root\n",
            f"{S}/rootfs.container": C + "Image=\nRootfs=/srv/root\n",
        },
        {"both.container": NO_SERVICE, "rootfs.container": svc()},
    ),
    (
        # what podman can never start counts as no service: a volume of image "", a container
        # whose .image yields no image (the generator writes `--rootfs ""`)
        "empty-images",
        "dirs",
        {
            f"{S}/v.volume": "[Volume]\nDriver=image\nImage=\n",
            f"{S}/w.volume": "[Volume]\nDriver=image\n",
            f"{S}/x.volume": "[Volume]\nImage=reg.io/o/x:1\n",
            f"{S}/tag-only.image": "[Image]\nImageTag=reg.io/o/t:1\n",
            f"{S}/app.container": C + "Image=tag-only.image\n",
            f"{S}/untagged.build": "[Build]\nFile=/srv/Containerfile\n",
            f"{S}/built.container": C + "Image=untagged.build\n",
        },
        {
            "v.volume": NO_SERVICE,
            "w.volume": NO_SERVICE,
            "x.volume": svc(),
            "tag-only.image": NO_SERVICE,
            "app.container": NO_SERVICE,
            "built.container": NO_SERVICE,
        },
    ),
    (
        "image-mounts",
        "dirs",
        {
            f"{S}/base.image": "[Image]\nImage=reg.io/o/base:1\n",
            f"{S}/app.container": C
            + f"Image={A1}\nMount=type=image,source=reg.io/o/m:1,destination=/m\n"
            + "Mount=type=bind,source=/srv,destination=/b type=image,src=base.image,dst=/n\n",
            f"{S}/notype.container": C + f"Image={A1}\nMount=source=/srv,destination=/b\n",
        },
        {
            "base.image": svc("reg.io/o/base:1"),
            "app.container": svc(A1, "reg.io/o/m:1", "reg.io/o/base:1"),
            "notype.container": (NO_SERVICE, svc(A1)),
        },
    ),
]


@pytest.mark.parametrize(("mode", "tree", "expected"), [c[1:] for c in FIXED], ids=[c[0] for c in FIXED])
def test_fixed_case(
    gens: list[Generator],
    tmp_path: Path,
    mode: str,
    tree: Tree,
    expected: dict[str, Union[Outcome, tuple[Outcome, Outcome]]],
) -> None:
    write_tree(tmp_path, tree)
    for index, gen in enumerate(gens):
        want = {name: o[index] if isinstance(o, tuple) else o for name, o in expected.items()}
        assert outcomes(gen, tmp_path, mode) == want, gen.name
        assert differences(gen, tmp_path, mode)[1] == [], gen.name


# Not modelled: Quadlet refuses a unit with a key it does not know in its own group; bindimg
# does not check keys (README "Proven against podman's generators").
UNKNOWN_KEY = {"case-sensitive": "unsupported key 'image' in group 'Container'"}


@pytest.mark.parametrize(("case", "text"), [c[:2] for c in ONE_UNIT], ids=[c[0] for c in ONE_UNIT])
def test_one_unit_cases_of_test_list(gens: list[Generator], tmp_path: Path, case: str, text: str) -> None:
    # Exec= words follow the image on the command line; PodmanArgs= words, read the same way,
    # precede it, so the image stays the last argument
    write_tree(tmp_path, {f"{S}/app.container": text.replace("Exec=", "PodmanArgs=")})
    for gen in gens:
        if case in UNKNOWN_KEY:
            services, err = run_dirs(gen, [tmp_path / S])
            assert (services, UNKNOWN_KEY[case] in err) == ({}, True), gen.name
            continue
        compared, found = differences(gen, tmp_path, "dirs")
        assert (compared, found) == (1, []), gen.name


# --- generated trees ----------------------------------------------------------------------------

# Trees are drawn from precomputed line variants (one hypothesis choice per line, so that
# thousands of trees cost seconds); "tK-" in a line becomes the tree's own prefix.
REFS = ["reg.io/o/a:1", "quay.io/o/b@sha256:" + "1" * 64, "localhost/c", "d:2", "reg.io/o/e:%i"]
UNITS = [f"tK-{s}{e}" for s in ("a", "b-c", "none") for e in (".image", ".build")]
QUOTED = ['"R"', '"R', 'R"', '""R""', "'R'", "R # c", "R  ", "R ;x", "R\t"]
IMAGES = [*REFS, *UNITS, *(q.replace("R", r) for q in QUOTED for r in REFS[:3]), "", '""', '"tK-a.image"']
MOUNTS = [
    *(f"type=image,source={r},destination=/m" for r in [*REFS[:3], "tK-a.image", "tK-none.image"]),
    "type=image,src=tK-b-c.image,dst=/m,rw=false",
    f'"type=image,source={REFS[0]},destination=/m" type=tmpfs,destination=/t',
    "type=bind,source=/srv,destination=/b",
    "source=/srv,destination=/b",
    "",
]
ARGS = ["--env=A=1", '"a b" c', "x=\\x41", "A=1 B=2", "\\q", "", "--label=a=b"]
VALUES = {
    "Image": IMAGES,
    "ImageTag": IMAGES,
    "Driver": ["image", "image", "local", '"image"'],
    "File": ["/srv/Containerfile"],
    "Rootfs": ["/srv/root", ""],
    "Mount": MOUNTS,
}
KEYS = {
    "Container": ["Image", "Image", "Image", "PodmanArgs", "Environment", "Label", "Mount", "Rootfs"],
    "Image": ["Image", "Image", "ImageTag"],
    "Volume": ["Image", "Driver", "Driver"],
    "Build": ["ImageTag", "ImageTag", "File"],
}
GROUP_OF = {".container": "Container", ".image": "Image", ".volume": "Volume", ".build": "Build"}
OTHER_LINES = ["# Image=x", "; c", "  # c \\", "", "   ", "[Unit]", "[Service]", "[Install]"]


def _variants(group: str) -> list[str]:
    """Lines of a `group` section: assignments in every spacing, continued ones (with comment
    or blank lines inside), comments, blanks, other sections, and the section itself."""
    lines = [f"[{group}]", f"  [{group}] ", f"[{group}]", f"[{group}]", *OTHER_LINES]
    lines.append(f"{KEYS[group][-1]}=v \\")  # continued into whatever line follows
    for key in KEYS[group]:
        for i, value in enumerate(VALUES.get(key, ARGS)):
            eq, indent = ["=", " = ", "= ", "="][i % 4], ["", "  ", ""][i % 3]
            lines += [f"{indent}{key}{eq}{value}", f"{key}={value}"]
            if len(value) > 1:
                cut = 1 + i % (len(value) - 1)
                between = ["", "# c\n", "\n", ""][i % 4]
                lines.append(f"{key}={value[:cut]}\\\n{between}  {value[cut:]}")
    return lines


LINES = {group: _variants(group) for group in KEYS}


# Each strategy is built once: hypothesis spends more time on a new strategy object (its
# labels, its emptiness) than on drawing from it, and batches draw thousands of lines.
LINE_OF = {group: st.sampled_from(lines) for group, lines in LINES.items()}
FIRST_LINE_OF = {group: st.sampled_from(lines[:4]) for group, lines in LINES.items()}
ENDINGS = st.sampled_from(["\n", "\n", "", "\n\n"])


@st.composite
def unit_text(draw: st.DrawFn, group: str) -> str:
    """A unit or drop-in: comments, blanks, repeated keys and groups, continuations, spaces."""
    lines = [draw(FIRST_LINE_OF[group])]
    lines += draw(st.lists(LINE_OF[group], max_size=8))
    if draw(st.integers(0, 15)) == 0:
        lines.insert(draw(st.integers(1, len(lines))), "not a key")  # Quadlet rejects the file
    return "\n".join(lines) + draw(ENDINGS)


UNIT_TEXT = {group: unit_text(group) for group in KEYS}
STEMS = st.sampled_from(["a", "b-c", "b-c-d", "tpl@", "tpl@x", "alias"])
PLACES = ["", "sub/", "users/", "users/0/", "sub/x.d/"]
UNIT_PLACES, DROPIN_PLACES = st.sampled_from(PLACES), st.sampled_from(PLACES[:3])
LEVELS = st.sampled_from(["", "b-", "b-c-", "tpl@", "tpl@x", "a", "b-c", "alias"])
DROPIN_FILES = st.sampled_from(["10.conf", "20.conf", "B.conf", "a.conf", "x.txt"])
SEARCH_DIRS = st.sampled_from(ROOTFUL_DIRS)
UNIT_EXTS = st.sampled_from(list(GROUP_OF))
DROPIN_EXTS = st.sampled_from([".container", ".container", ".image", ".volume"])
GENERIC_EXTS = st.sampled_from([".container", ".image", ".volume"])


@st.composite
def tree(draw: st.DrawFn) -> Tree:
    """Units, drop-ins and symlinks whose names all start with `tK-` (`numbered` makes K)."""
    files: Tree = {}
    for _ in range(draw(st.integers(1, 5))):
        stem = draw(STEMS)
        ext = ".container" if "@" in stem else draw(UNIT_EXTS)
        where = draw(SEARCH_DIRS) + "/" + draw(UNIT_PLACES)
        name = f"tK-{stem}{ext}"
        if stem == "alias" or (stem == "tpl@x" and draw(st.booleans())):
            files[where + name] = Link(f"tK-{'a' if stem == 'alias' else 'tpl@'}{ext}")
        else:
            files[where + name] = draw(UNIT_TEXT[GROUP_OF[ext]])
    for _ in range(draw(st.integers(0, 4))):
        ext = draw(DROPIN_EXTS)
        dirname = f"tK-{draw(LEVELS)}{ext}.d"
        where = draw(SEARCH_DIRS) + "/" + draw(DROPIN_PLACES)
        files[where + dirname + "/" + draw(DROPIN_FILES)] = draw(UNIT_TEXT[GROUP_OF[ext]])
    return files


TREE = tree()


def numbered(files: Tree, k: int) -> Tree:
    """Tree `k` of a batch: `tK-` becomes `tk-` in every name, link and text."""
    prefix = f"t{k}-"

    def renamed(content: Union[str, Link]) -> Union[str, Link]:
        if isinstance(content, Link):
            return Link(content.target.replace("tK-", prefix))
        return content.replace("tK-", prefix)

    return {path.replace("tK-", prefix): renamed(content) for path, content in files.items()}


@st.composite
def batch(draw: st.DrawFn) -> list[Tree]:
    """Trees merged into one root; sometimes with generic drop-ins that apply to all of them."""
    trees = [numbered(draw(TREE), k) for k in range(draw(st.integers(10, 20)))]
    if draw(st.integers(0, 3)) == 0:
        ext = draw(GENERIC_EXTS)
        path = f"{draw(SEARCH_DIRS)}/{ext[1:]}.d/{draw(DROPIN_FILES)}"
        trees.append(numbered({path: draw(UNIT_TEXT[GROUP_OF[ext]])}, 0))
    return trees


def explain(found: list[Disagreement], trees: list[Tree]) -> str:
    """Each disagreement with the tree of its unit (and the batch-wide drop-ins, if any)."""
    lines = []
    for gen, unit, theirs, mine in found[:5]:
        k = int(unit.split("-", 1)[0][1:])
        lines.append(f"{gen} {unit}: generator {theirs}, bindimg {mine}\n  tree {trees[k]!r}")
    if any(not any(f"/t{k}-" in p for p in t) for k, t in enumerate(trees)):
        lines.append(f"  batch-wide drop-ins: {trees[-1]!r}")
    return "\n".join(lines)


def test_generated_trees_agree(
    gens: list[Generator], tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Batches of 10-20 trees, each batch read as an image root and as QUADLET_UNIT_DIRS."""
    stats = {"trees": 0, "units": 0}

    @settings(
        derandomize=True,
        database=None,
        max_examples=130,
        deadline=timedelta(seconds=30),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        phases=[Phase.explicit, Phase.generate],  # a failure names its own small tree below
    )
    @given(batch())
    def check(trees: list[Tree]) -> None:
        base = tmp_path_factory.mktemp("batch")
        write_tree(base, {path: content for t in trees for path, content in t.items()})
        found: list[Disagreement] = []
        for gen in gens:
            for mode in ("root", "dirs"):
                compared, diff = differences(gen, base, mode)
                found += diff
                stats["units"] += compared
        stats["trees"] += len(trees)
        assert found == [], explain(found, trees)

    check()
    with capsys.disabled():
        versions = " and ".join(".".join(map(str, g.version)) for g in gens)
        print(
            f"\n[generators] {stats['trees']} generated trees ({stats['units']} unit readings) agree "
            f"with podman {versions} (read as --podman-version {' and '.join(g.series for g in gens)}), "
            "each tree read as a root and as QUADLET_UNIT_DIRS"
        )


def test_add_refuses_a_unit_the_rootful_generator_skips(tmp_path: Path) -> None:
    """Since bindimg reads the root as the rootful generator does, a unit under
    /etc/containers/systemd/users is in no Quadlet directory: `add` must refuse it rather than
    install a copy into /usr/share (a user's unit turned into a system one)."""
    unit = tmp_path / E / "users/1001/app.container"
    write_tree(tmp_path, {f"{E}/users/1001/app.container": C + f"Image=reg.io/o/a@sha256:{'1' * 64}\n"})
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    done = subprocess.run(
        [sys.executable, "-m", "bindimg", "add", "--root", str(tmp_path), str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"bindimg: error: {unit}: is a rootless Quadlet unit (a users/ directory): its user's podman "
        "runs the image from its own store, and bootc pulls bound images into the rootful one only; "
        "put it in /usr/share/containers/systemd to bind it\n"
    )
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_podman_version_option_chooses_the_rules(gens: list[Generator], tmp_path: Path) -> None:
    """`bindimg list --podman-version X.Y` reads the quotes-by-version case as the generator of
    that series does (each image is what its ExecStart= runs)."""
    tree, expected = next((c[2], c[3]) for c in FIXED if c[0] == "quotes-by-version")
    write_tree(tmp_path, tree)
    for index, gen in enumerate(gens):
        images = {n: o[index] if isinstance(o, tuple) else o for n, o in expected.items()}
        argv = ["list", "--json", "--podman-version", gen.series, str(tmp_path / S)]
        done = subprocess.run(
            [sys.executable, "-m", "bindimg", *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        assert (done.returncode, done.stderr) == (0, ""), gen.name
        listed = {os.path.basename(item["quadlet"]): item["image"] for item in json.loads(done.stdout)}
        assert listed == {n: o.image for n, o in images.items()}, gen.name
