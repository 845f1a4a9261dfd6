"""bootc's reading of quadlets (tini 1.3.0 semantics)."""

from __future__ import annotations

import pytest

from bindimg.bootcini import BootcParseError, BootcValue, parse_bootc
from bindimg.errors import InputError


def parse_error(text: str) -> BootcParseError:
    with pytest.raises(BootcParseError) as caught:
        parse_bootc(text, "a.container")
    return caught.value


def test_basic() -> None:
    doc = parse_bootc("[Unit]\nDescription=x y\n\n[Container]\nImage=quay.io/a/b:1\n", "t")
    assert doc == {
        "Unit": {"Description": BootcValue("x y", 2)},
        "Container": {"Image": BootcValue("quay.io/a/b:1", 5)},
    }


def test_inline_comments_cut_the_value() -> None:
    doc = parse_bootc("[Container]\nImage=quay.io/a/b:1 # pinned\nExec=a;b\n", "t")
    assert doc["Container"]["Image"] == BootcValue("quay.io/a/b:1", 2)
    assert doc["Container"]["Exec"] == BootcValue("a", 3)
    # A "#" inside what Quadlet sees as the value still starts a comment here.
    doc = parse_bootc("[Container]\nImage=quay.io/a/b:1#x\n", "t")
    assert doc["Container"]["Image"].value == "quay.io/a/b:1"


def test_comment_lines_and_cut_key() -> None:
    doc = parse_bootc("# c\n; c\n[Container] ; section comment\n  # x=y\nImage=a\n", "t")
    assert doc == {"Container": {"Image": BootcValue("a", 5)}}
    # Everything after the comment char goes, including "=": a bare word remains.
    err = parse_error("[Container]\nImage#=x\n")
    assert (err.message, err.line) == ("Incorrect syntax at line 2", 2)


def test_quotes_kept_and_no_escapes() -> None:
    doc = parse_bootc("[Container]\nImage=\"quay.io/a/b:1\"\nA='x'\nB=a\\tb\n", "t")
    assert doc["Container"]["Image"].value == '"quay.io/a/b:1"'
    assert doc["Container"]["A"].value == "'x'"
    assert doc["Container"]["B"].value == "a\\tb"


def test_continuation_line_is_an_error() -> None:
    err = parse_error("[Container]\nImage=quay.io/a/b:1\nPodmanArgs=--a \\\n  --b\n")
    assert err.message == "Incorrect syntax at line 4"
    assert err.line == 4
    assert str(err) == "a.container:4: Incorrect syntax at line 4"
    assert isinstance(err, InputError)


def test_continuation_with_equals_becomes_a_bogus_key() -> None:
    doc = parse_bootc("[Container]\nPodmanArgs=--a \\\n  --env=A=B\n", "t")
    assert doc["Container"] == {
        "PodmanArgs": BootcValue("--a \\", 2),
        "--env": BootcValue("A=B", 3),
    }


def test_section_names() -> None:
    doc = parse_bootc("[ Image ]\nImage=a\n[[abc]]\nk=v\n[]\nz=1\n", "t")
    assert doc == {
        " Image ": {"Image": BootcValue("a", 2)},
        "abc": {"k": BootcValue("v", 4)},
        "": {"z": BootcValue("1", 6)},
    }


def test_section_syntax_error() -> None:
    err = parse_error("[Container\nImage=a\n")
    assert (err.message, err.line) == ("Incorrect section syntax at line 1", 1)
    err = parse_error("[Unit]\n[Container] x\n")
    assert err.message == "Incorrect section syntax at line 2"
    # "[x=y" starts with "[", so it is a section error, not a key.
    assert parse_error("[x=y\n").message == "Incorrect section syntax at line 1"


def test_key_before_section() -> None:
    doc = parse_bootc("Image=a\n[Container]\nImage=b\n", "t")
    assert doc == {"": {"Image": BootcValue("a", 1)}, "Container": {"Image": BootcValue("b", 3)}}


def test_header_alone_creates_no_section() -> None:
    assert parse_bootc("[Container]\n", "t") == {}
    assert parse_bootc("", "t") == {}


def test_bom_is_an_error() -> None:
    err = parse_error("\ufeff[Container]\nImage=a\n")
    assert (err.message, err.line) == ("Incorrect syntax at line 1", 1)


def test_empty_key() -> None:
    err = parse_error("[Container]\n\n  = x\n")
    assert (err.message, err.line) == ("Key is empty at line 3", 3)
    assert parse_error("[C]\n=\n").message == "Key is empty at line 2"


def test_empty_value() -> None:
    doc = parse_bootc("[Container]\nImage=\nA = ; c\n", "t")
    assert doc["Container"] == {"Image": BootcValue("", 2), "A": BootcValue("", 3)}


def test_crlf_and_lone_cr() -> None:
    doc = parse_bootc("[Container]\r\nImage=quay.io/a/b:1\r\n", "t")
    assert doc == {"Container": {"Image": BootcValue("quay.io/a/b:1", 2)}}
    doc = parse_bootc("[Container]\nImage=a\rB=c\n", "t")
    assert doc["Container"] == {"Image": BootcValue("a\rB=c", 2)}
    doc = parse_bootc("[Container]\nImage=a\r", "t")
    assert doc["Container"]["Image"].value == "a"


def test_unicode_whitespace_trim() -> None:
    doc = parse_bootc("\u3000[Container]\u00a0\nImage\u2003=\u3000x\u205f\nB=y\x1c\n", "t")
    assert doc["Container"]["Image"].value == "x"
    assert doc["Container"]["B"].value == "y\x1c"


def test_repeats_merge_and_last_wins() -> None:
    text = "[Container]\nImage=a.io/1\nA=1\n[Service]\nRestart=always\n[Container]\nImage=a.io/2\n"
    doc = parse_bootc(text, "t")
    assert doc["Container"] == {"Image": BootcValue("a.io/2", 7), "A": BootcValue("1", 3)}
    assert doc["Service"] == {"Restart": BootcValue("always", 5)}


def test_case_sensitive() -> None:
    doc = parse_bootc("[container]\nimage=a\n[Container]\nImage=b\n", "t")
    assert doc["container"]["image"].value == "a"
    assert doc["Container"]["Image"].value == "b"


def test_split_at_first_equals() -> None:
    doc = parse_bootc("[Container]\nEnvironment = A=B = C \n", "t")
    assert doc["Container"]["Environment"].value == "A=B = C"
