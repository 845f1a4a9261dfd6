"""Quadlet's reading of unit files (podman >= 5.4, 5.8.2 Lookup) and byte-exact edits."""

from __future__ import annotations

from typing import Optional

import pytest

from bindimg.errors import InputError
from bindimg.pin import insert_line, line_ending, line_prefix, remove_line, replace_value, value_span
from bindimg.quadlet import (
    QUADLET_WS,
    Assignment,
    QuadletParseError,
    UnitDecodeError,
    UnitFile,
    decode_unit,
    parse_quadlet,
    split_args,
)


def image(text: str, group: str = "Container") -> Optional[str]:
    return parse_quadlet(text, "t.container").lookup(group, "Image")


def parse_error(text: str) -> QuadletParseError:
    with pytest.raises(QuadletParseError) as caught:
        parse_quadlet(text, "t.container")
    return caught.value


# --- whitespace -------------------------------------------------------------------------------


def test_whitespace_set_is_go_unicode_isspace() -> None:
    expected = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680, 0x2028, 0x2029}
    expected |= set(range(0x2000, 0x200B)) | {0x202F, 0x205F, 0x3000}
    assert {ord(c) for c in QUADLET_WS} == expected
    assert len(QUADLET_WS) == len(expected)
    for c in "\x1c\x1d\x1e\x1f\u200b\ufeff":
        assert c not in QUADLET_WS


def test_unicode_whitespace_trimmed_around_line() -> None:
    text = "\u3000[Container]\u2003\n\u00a0Image=quay.io/a/b:1\u3000\u205f\n"
    unit = parse_quadlet(text, "t.container")
    assert unit.groups["Container"][0].value == "quay.io/a/b:1"


def test_file_separator_controls_are_not_trimmed() -> None:
    assert image("[Container]\nImage=quay.io/a/b:1\x1c\n") == "quay.io/a/b:1\x1c"
    err = parse_error("\x1c[Container]\n")
    assert err.line == 1


def test_leading_value_whitespace_is_ascii_only() -> None:
    unit = parse_quadlet("[Container]\nImage= \t\u3000x\n", "t.container")
    assert unit.groups["Container"][0].value == "\u3000x"


# --- lines, comments, groups --------------------------------------------------------------------


def test_basic_container() -> None:
    text = "[Unit]\nDescription=x\n\n[Container]\nImage=quay.io/a/b:1\n\n[Install]\nWantedBy=a\n"
    unit = parse_quadlet(text, "t.container")
    assert list(unit.groups) == ["Unit", "Container", "Install"]
    assert unit.lookup_last("Container", "Image") == Assignment(
        "t.container", "Container", "Image", "quay.io/a/b:1", 5, 5
    )
    assert unit.lookup("Container", "Image") == "quay.io/a/b:1"
    assert unit.lookup("Container", "Missing") is None
    assert unit.lookup("Nope", "Image") is None
    assert unit.lookup_last("Nope", "Image") is None


def test_comments_and_no_inline_comments() -> None:
    text = "# top\n; also\n[Container]\n  # indented\nImage=quay.io/x # comment ; too\n"
    assert image(text) == "quay.io/x # comment ; too"


def test_keys_are_case_sensitive() -> None:
    unit = parse_quadlet("[Container]\nimage=a\nImage=b\n", "t.container")
    assert unit.lookup("Container", "Image") == "b"
    assert unit.lookup("Container", "image") == "a"
    assert unit.lookup("container", "Image") is None


def test_key_value_split() -> None:
    unit = parse_quadlet("[Container]\nImage \t= \t a=b=c \n", "t.container")
    a = unit.groups["Container"][0]
    assert (a.key, a.value) == ("Image", "a=b=c")


def test_empty_value() -> None:
    assert image("[Container]\nImage=\n") == ""
    assert image("[Container]\nImage=   \n") == ""


def test_group_with_trailing_space_and_tab_ok() -> None:
    assert image("[Container] \t\nImage=x\n") == "x"
    # A header continued into a key line is one key line, before any group.
    err = parse_error("[Container] \\\nImage=x\n")
    assert (err.message, err.line) == ("key file does not start with a group", 2)


def test_group_header_variants() -> None:
    assert list(parse_quadlet("[ Container ]\n", "t").groups) == [" Container "]
    err = parse_error("[Container]\n[]\n")
    assert (err.message, err.line) == ("invalid group name: ", 2)
    err = parse_error("[a[b]\n")
    assert err.message == "invalid group name: a[b"
    err = parse_error("[a\x7fb]\n")
    assert err.message == "invalid group name: a\x7fb"
    err = parse_error("[a]b]\n")
    assert (
        err.message
        == "file contains line 1: “[a]b]” which is not a key-value pair, group, or comment"
    )


def test_group_header_with_comment_is_error() -> None:
    err = parse_error("[Unit]\nA=b\n[Container] # hi\nImage=x\n")
    assert err.line == 3
    assert err.message == (
        "file contains line 3: “[Container] # hi” which is not a key-value pair, group, or comment"
    )
    assert str(err) == "t.container:3: " + err.message
    assert isinstance(err, InputError)


def test_bare_word_is_error() -> None:
    err = parse_error("[Container]\n\nImage\n")
    assert err.line == 3
    assert err.message == (
        "file contains line 3: “Image” which is not a key-value pair, group, or comment"
    )


def test_equals_at_start_is_error() -> None:
    err = parse_error("[Container]\n  =v\n")
    assert (
        err.message == "file contains line 2: “=v” which is not a key-value pair, group, or comment"
    )


def test_key_before_group() -> None:
    err = parse_error("# c\n\nImage=quay.io/x\n[Container]\n")
    assert (err.message, err.line) == ("key file does not start with a group", 3)


def test_bom_is_error() -> None:
    err = parse_error("\ufeff[Container]\nImage=x\n")
    assert err.line == 1
    assert err.message == (
        "file contains line 1: “\ufeff[Container]” which is not a key-value pair, group, or comment"
    )


def test_comment_only_and_empty_files() -> None:
    assert parse_quadlet("", "t").groups == {}
    assert parse_quadlet("\n", "t").groups == {}
    assert parse_quadlet("# only\n", "t").groups == {}


def test_empty_group_is_kept() -> None:
    assert parse_quadlet("[Container]\n[Service]\nA=1\n", "t").groups["Container"] == []


def test_crlf_file() -> None:
    text = "[Container]\r\nImage=quay.io/a/b:1\r\nExec=a \\\r\n  b\r\n"
    unit = parse_quadlet(text, "t")
    assert unit.lookup("Container", "Image") == "quay.io/a/b:1"
    assert unit.groups["Container"][0].value == "quay.io/a/b:1"
    assert unit.groups["Container"][1].value == "a b"


def test_lone_cr_is_not_a_line_break() -> None:
    assert image("[Container]\nImage=a\rImage=b\n") == "a\rImage=b"
    err = parse_error("[Container]\rImage=x\n")
    assert (err.message, err.line) == ("key file does not start with a group", 1)


def test_trailing_newlines() -> None:
    # Only one trailing "\n" is removed: the extra blank line is line 3, a comment.
    unit = parse_quadlet("[Container]\nImage=x\n\n", "t")
    assert unit.groups["Container"][0].end_line == 2


# --- continuations --------------------------------------------------------------------------------


def test_continuation_with_comment_inside() -> None:
    text = "[Container]\nImage=quay.io/\\\n# comment\n; another\n  a/b:1\n"
    assert image(text) == "quay.io/a/b:1"
    a = parse_quadlet(text, "t").groups["Container"][0]
    assert (a.line, a.end_line) == (2, 5)


def test_blank_line_inside_continuation_is_skipped() -> None:
    unit = parse_quadlet("[Container]\nExec=a \\\n\nImage=quay.io/x\n", "t")
    assert unit.lookup("Container", "Image") is None
    assert unit.lookup("Container", "Exec") == "a Image=quay.io/x"
    a = unit.groups["Container"][0]
    assert (a.key, a.line, a.end_line) == ("Exec", 2, 4)


def test_continuation_joins_with_nothing() -> None:
    assert image("[Container]\nImage=quay.io/\\\n   foo:1\n") == "quay.io/foo:1"
    unit = parse_quadlet("[Container]\nExec=a \\\nb\n", "t")
    assert unit.lookup("Container", "Exec") == "a b"


def test_continuation_after_trailing_whitespace_and_double_backslash() -> None:
    assert image("[Container]\nImage=quay.io/\\   \t\nfoo:1\n") == "quay.io/foo:1"
    # No escaped-backslash check: "\\" at the end still continues, one "\" is kept.
    assert image("[Container]\nImage=a\\\\\nb\n") == "a\\b"


def test_dangling_continuation_at_eof_is_dropped() -> None:
    unit = parse_quadlet("[Container]\nImage=x\nExec=true \\\n\n# c\n", "t")
    assert unit.lookup("Container", "Exec") is None
    assert [a.key for a in unit.groups["Container"]] == ["Image"]


def test_backslash_on_last_line_is_removed_and_parsed() -> None:
    unit = parse_quadlet("[Container]\nExec=a \\", "t")
    a = unit.groups["Container"][0]
    assert (a.value, a.line, a.end_line) == ("a ", 2, 2)
    assert unit.lookup("Container", "Exec") == "a"
    # A final "\n" is removed first, so the backslash line is still the last line.
    assert image("[Container]\nImage=quay.io/\\\n") == "quay.io/"
    # A continuation into the last line ending in "\" joins and is parsed.
    assert image("[Container]\nImage=quay.io/\\\nx:1\\") == "quay.io/x:1"


def test_continuation_of_group_line() -> None:
    assert image("[Cont\\\nainer]\nImage=x\n") == "x"


def test_lone_backslash_line_does_not_start_a_continuation() -> None:
    # "\" alone leaves nothing pending, so the next comment is an ordinary comment.
    unit = parse_quadlet("[Container]\n\\\n# c\nImage=x\n", "t")
    a = unit.groups["Container"][0]
    assert (a.value, a.line, a.end_line) == ("x", 4, 4)


def test_continuation_error_reports_last_physical_line() -> None:
    err = parse_error("[Container]\nfoo\\\n\nbar\n")
    assert err.line == 4
    assert err.message == (
        "file contains line 4: “foobar” which is not a key-value pair, group, or comment"
    )


# --- Lookup quoting -------------------------------------------------------------------------------


def test_single_quotes_kept() -> None:
    assert image("[Container]\nImage='localhost/imagename'\n") == "'localhost/imagename'"


def test_one_double_quote_pair_stripped() -> None:
    assert image('[Container]\nImage="quay.io/a/b:1"\n') == "quay.io/a/b:1"
    assert image('[Container]\nImage="quay.io/a/b:1"  \n') == "quay.io/a/b:1"
    assert image('[Container]\nImage=""x""\n') == '"x"'
    assert image('[Container]\nImage="a\n') == '"a'
    assert image('[Container]\nImage=a"\n') == 'a"'
    assert image('[Container]\nImage="\n') == '"'
    assert image('[Container]\nImage=""\n') == ""


def test_lookup_trims_trailing_unicode_whitespace() -> None:
    # Only reachable through a continuation: "\u3000" before the backslash survives the trim.
    unit = parse_quadlet("[Container]\nImage=x\u3000\\\n", "t")
    assert unit.groups["Container"][0].value == "x\u3000"
    assert unit.lookup("Container", "Image") == "x"


def test_repeat_and_group_merge_last_wins() -> None:
    text = "[Container]\nImage=a.io/1\n[Service]\nRestart=always\n[Container]\nImage=a.io/2\n"
    unit = parse_quadlet(text, "t")
    assert list(unit.groups) == ["Container", "Service"]
    assert unit.lookup("Container", "Image") == "a.io/2"
    last = unit.lookup_last("Container", "Image")
    assert last is not None and last.line == 6


# --- upstream fixtures, re-created from their description -------------------------------------


def test_fixture_comment_with_continuation() -> None:
    text = (
        "[Container]\n"
        "Image=localhost/\\\n"
        "# a comment in the middle of a continuation\n"
        "imagename:latest\n"
        "ContainerName=great\\\n"
        "; another comment style\n"
        "Name\n"
    )
    unit = parse_quadlet(text, "comment-with-continuation.container")
    assert unit.lookup("Container", "Image") == "localhost/imagename:latest"
    assert unit.lookup("Container", "ContainerName") == "greatName"


def test_fixture_quotes() -> None:
    text = '[Container]\nImage=localhost/imagename\nContainerName="RemoveQuotes"Name"\n'
    unit = parse_quadlet(text, "quotes.container")
    assert unit.lookup("Container", "ContainerName") == 'RemoveQuotes"Name'


def test_fixture_emptyline() -> None:
    text = "[Container]\nImage=localhost/imagename\nExec=true \\\n\n# comment\n"
    unit = parse_quadlet(text, "emptyline.container")
    assert unit.lookup("Container", "Exec") is None
    assert unit.lookup("Container", "Image") == "localhost/imagename"


def test_fixture_line_continuation_whitespace() -> None:
    text = (
        "[Container]\n"
        "Image=localhost/imagename\n"
        "# Keep whitespace at the end of the following line\n"
        'Exec="/some/binary file" \\  \n'
        "    --arg1 \\\n"
        '    "arg 2"\n'
    )
    unit = parse_quadlet(text, "line-continuation-whitespace.container")
    # Exec is read raw (LookupLastArgs); Lookup's quote-pair rule would take the outer quotes.
    exec_line = unit.lookup_last("Container", "Exec")
    assert exec_line is not None
    assert exec_line.value == '"/some/binary file" --arg1 "arg 2"'
    assert unit.lookup("Container", "Exec") == '/some/binary file" --arg1 "arg 2'
    assert unit.lookup_all_args("Container", "Exec") == ["/some/binary file", "--arg1", "arg 2"]
    a = unit.groups["Container"][1]
    assert (a.line, a.end_line) == (4, 6)


# --- drop-ins -----------------------------------------------------------------------------------


def test_merged_dropins_last_wins() -> None:
    main = parse_quadlet("[Container]\nImage=quay.io/main:1\n", "foo.container")
    d10 = parse_quadlet("[Container]\nImage=quay.io/ten:1\n", "foo.container.d/10-a.conf")
    d20 = parse_quadlet(
        "[Service]\nRestart=always\n[Container]\nImage=quay.io/twenty:1\n", "20.conf"
    )
    d30 = parse_quadlet("[Unit]\nDescription=x\n", "30.conf")
    merged = main.merged([d10, d20, d30])
    assert merged.lookup("Container", "Image") == "quay.io/twenty:1"
    last = merged.lookup_last("Container", "Image")
    assert last is not None and (last.path, last.line) == ("20.conf", 4)
    assert list(merged.groups) == ["Container", "Service", "Unit"]
    assert merged.path == "foo.container"
    # The inputs are untouched.
    assert main.lookup("Container", "Image") == "quay.io/main:1"
    assert len(main.groups) == 1


def test_merged_empty_image_in_dropin() -> None:
    main = parse_quadlet("[Container]\nImage=quay.io/main:1\n", "foo.container")
    dropin = parse_quadlet("[Container]\nImage=\n", "x.conf")
    assert main.merged([dropin]).lookup("Container", "Image") == ""
    assert main.merged([]).groups == main.groups
    assert isinstance(main.merged([]), UnitFile)


# --- LookupAllArgs --------------------------------------------------------------------------------


def test_lookup_all_args_global_args() -> None:
    text = "[Container]\nGlobalArgs=--storage-opt=additionalimagestore=/usr/lib/bootc/storage\n"
    unit = parse_quadlet(text, "t")
    assert unit.lookup_all_args("Container", "GlobalArgs") == [
        "--storage-opt=additionalimagestore=/usr/lib/bootc/storage"
    ]
    assert unit.lookup_all_args("Container", "PodmanArgs") == []
    assert unit.lookup_all_args("Nope", "GlobalArgs") == []


def test_lookup_all_args_quoting_and_accumulation() -> None:
    text = (
        "[Container]\n"
        "PodmanArgs=--a 1\n"
        "PodmanArgs=\n"
        "PodmanArgs=--env \"X=a b\" 'c d'   e\\x41\\tz\n"
        'PodmanArgs=--label="k=v w" \\"q\n'
    )
    unit = parse_quadlet(text, "t")
    assert unit.lookup_all_args("Container", "PodmanArgs") == [
        "--env",
        "X=a b",
        "c d",
        "eA\tz",
        "--label=k=v w",
        '"q',
    ]


def test_split_args_escapes() -> None:
    assert split_args(r"a\sb \101 \u00e9 \U0001F600 \\ \' \n") == [
        "a b",
        "A",
        "\u00e9",
        "\U0001f600",
        "\\",
        "'",
        "\n",
    ]
    assert split_args(r"'in \"single\" quotes'") == ['in "single" quotes']
    assert split_args(r"\xff") == ["\u00ff"]
    assert split_args(r"\ud800") == ["\ufffd"]


def test_split_args_rejections_and_relaxations() -> None:
    assert split_args(r"a \q b") is None  # unknown escape: the whole value is skipped
    assert split_args(r"\x00") is None
    assert split_args(r"\x4") is None
    assert split_args(r"\400") is None
    assert split_args(r"\U00110000") is None
    assert split_args("a\\") == ["a"]  # trailing backslash eaten
    assert split_args('"a b') == ["a b"]  # unbalanced quote accepted
    assert split_args("") == []
    assert split_args("  \t ") == []
    assert split_args("a\0b c") == ["a"]
    # podman's Go port stops at an empty word; later words are lost.
    assert split_args('a "" b') == ["a"]
    assert split_args('a ""x b') == ["a", "x", "b"]


def test_lookup_all_args_skips_rejected_value() -> None:
    text = "[Container]\nPodmanArgs=--a\nPodmanArgs=\\q\nPodmanArgs=--b\n"
    assert parse_quadlet(text, "t").lookup_all_args("Container", "PodmanArgs") == ["--a", "--b"]


# --- decoding -----------------------------------------------------------------------------------


def test_decode_roundtrip() -> None:
    data = "[Container]\r\nImage=quay.io/é/x:1 \u3000\n# ü\n".encode()
    text = decode_unit(data, "t")
    assert text.encode("utf-8") == data


def test_decode_bom() -> None:
    with pytest.raises(UnitDecodeError) as caught:
        decode_unit(b"\xef\xbb\xbf[Container]\n", "a.container")
    assert str(caught.value) == (
        "a.container:1: starts with a UTF-8 byte-order mark; save it without BOM"
    )
    assert isinstance(caught.value, InputError)


def test_decode_nul() -> None:
    with pytest.raises(UnitDecodeError) as caught:
        decode_unit(b"[Container]\nImage=x\n\x00\n", "a.container")
    assert caught.value.line == 3
    assert str(caught.value) == "a.container:3: contains a NUL byte; not a text unit file"


def test_decode_invalid_utf8_line_number() -> None:
    with pytest.raises(UnitDecodeError) as caught:
        decode_unit(b"[Container]\r\nA=1\r\nImage=caf\xe9\r\n", "a.container")
    assert caught.value.line == 3
    assert str(caught.value) == "a.container:3: is not valid UTF-8 (byte 0xe9); save it as UTF-8"
    with pytest.raises(UnitDecodeError) as caught:
        decode_unit(b"\xed\xa0\x80\n", "a")  # an encoded surrogate is not UTF-8 either
    assert caught.value.line == 1


# --- editing ------------------------------------------------------------------------------------

NEW = "quay.io/a/b@sha256:" + "0" * 64


def edit(data: bytes, line: int) -> bytes:
    return replace_value(decode_unit(data, "t"), line, NEW).encode("utf-8")


def test_replace_value_lf() -> None:
    data = b"[Container]\nImage=quay.io/a/b:1\nExec=x\n"
    assert edit(data, 2) == b"[Container]\nImage=" + NEW.encode() + b"\nExec=x\n"


def test_replace_value_crlf() -> None:
    data = b"[Container]\r\nImage=quay.io/a/b:1\r\n"
    assert edit(data, 2) == b"[Container]\r\nImage=" + NEW.encode() + b"\r\n"


def test_replace_value_indented_and_spaced() -> None:
    data = b"[Container]\n\t  Image = \tquay.io/a/b:1\n"
    assert edit(data, 2) == b"[Container]\n\t  Image = \t" + NEW.encode() + b"\n"


def test_replace_value_keeps_trailing_whitespace() -> None:
    data = b"[Container]\r\nImage=x   \t\r\n"
    assert edit(data, 2) == b"[Container]\r\nImage=" + NEW.encode() + b"   \t\r\n"


def test_replace_value_last_line_without_newline() -> None:
    data = b"[Container]\nImage=x"
    assert edit(data, 2) == b"[Container]\nImage=" + NEW.encode()


def test_replace_value_empty_and_quoted() -> None:
    assert edit(b"[Container]\nImage=\r\n", 2) == b"[Container]\nImage=" + NEW.encode() + b"\r\n"
    assert edit(b"[Container]\nImage=  \n", 2) == b"[Container]\nImage=" + NEW.encode() + b"  \n"
    quoted = b'[Container]\nImage="x"\n'
    assert edit(quoted, 2) == b"[Container]\nImage=" + NEW.encode() + b"\n"


def test_value_span() -> None:
    text = "[Container]\n  Image = ab \r\n"
    assert value_span(text, 2) == (22, 24)
    assert text[22:24] == "ab"
    with pytest.raises(ValueError):
        value_span(text, 1)
    with pytest.raises(ValueError):
        value_span(text, 3)
    with pytest.raises(ValueError):
        value_span(text, 0)
    with pytest.raises(ValueError):
        replace_value(text, 2, "a\nb")


def test_replace_value_is_what_quadlet_reads() -> None:
    text = "[Container]\n Image =\tquay.io/x:1 \u3000\n"
    edited = replace_value(text, 2, NEW)
    assert parse_quadlet(edited, "t").lookup("Container", "Image") == NEW


def test_line_prefix_and_ending() -> None:
    text = "[Container]\r\n  \tImage=x\nA=1"
    assert line_prefix(text, 1) == ""
    assert line_prefix(text, 2) == "  \t"
    assert line_ending(text, 1) == "\r\n"
    assert line_ending(text, 2) == "\n"
    assert line_ending(text, 3) == ""
    assert line_prefix("  \r\n", 1) == "  "


def test_insert_line_before_crlf_indented() -> None:
    data = b"[Container]\r\n  Image=x\r\n  Exec=y\r\n"
    text = decode_unit(data, "t")
    out = insert_line(text, 2, "# pinned by bindimg", like=2).encode()
    assert out == b"[Container]\r\n  # pinned by bindimg\r\n  Image=x\r\n  Exec=y\r\n"


def test_insert_line_append_after_final_newline() -> None:
    text = "[Container]\r\n  Image=x\r\n"
    out = insert_line(text, 3, "A=1", like=2)
    assert out == "[Container]\r\n  Image=x\r\n  A=1\r\n"


def test_insert_line_append_after_line_without_newline() -> None:
    text = "[Container]\r\n  Image=x"
    assert insert_line(text, 3, "A=1", like=1) == "[Container]\r\n  Image=x\r\nA=1\r\n"
    # Styled like the final line, the new final line also has no newline.
    assert insert_line(text, 3, "A=1", like=2) == "[Container]\r\n  Image=x\r\n  A=1"
    assert insert_line("[C]", 2, "A=1", like=1) == "[C]\nA=1"


def test_insert_line_before_with_like_last_line() -> None:
    text = "[Container]\r\n\tImage=x"
    assert insert_line(text, 2, "A=1", like=2) == "[Container]\r\n\tA=1\r\n\tImage=x"


def test_insert_line_errors() -> None:
    text = "[C]\nA=1\n"
    with pytest.raises(ValueError):
        insert_line(text, 4, "x", like=1)
    with pytest.raises(ValueError):
        insert_line(text, 0, "x", like=1)
    with pytest.raises(ValueError):
        insert_line(text, 1, "x", like=3)
    with pytest.raises(ValueError):
        insert_line(text, 1, "x\ny", like=1)


def test_remove_line() -> None:
    text = "[C]\r\nA=1\r\nB=2\r\n"
    assert remove_line(text, 2) == "[C]\r\nB=2\r\n"
    assert remove_line(text, 3) == "[C]\r\nA=1\r\n"
    assert remove_line("[C]\nA=1", 2) == "[C]\n"
    with pytest.raises(ValueError):
        remove_line(text, 4)


def test_edits_keep_every_other_byte() -> None:
    data = "# é\r\n[Container]\r\n\tImage = old:1  \r\n; ü\r\n".encode()
    text = decode_unit(data, "t")
    edited = insert_line(replace_value(text, 3, NEW), 3, "# pin", like=3)
    assert (
        edited.encode()
        == ("# é\r\n[Container]\r\n\t# pin\r\n\tImage = " + NEW + "  \r\n; ü\r\n").encode()
    )
    assert remove_line(edited, 3).encode() == data.replace(b"old:1", NEW.encode())
