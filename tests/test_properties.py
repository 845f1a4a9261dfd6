"""Property tests: the parsers, the pin edit and the reference grammar on generated input.

Units come from a small grammar (section headers, key=value lines, comments, continuations,
blank lines, LF/CRLF/lone CR, and Unicode drawn from every whitespace class the two parsers
disagree on), so that most examples are *almost* valid units, where the bugs live. The
properties are the invariants the SPEC rests on:

* the parsers fail only with their own errors (never IndexError & co.);
* decoding is lossless, so an edit that changes nothing re-encodes to the same bytes;
* pinning changes the value bytes and inserts one provenance line, nothing else (invariant 4);
* the two parsers agree exactly where the reference rules say they do (invariant 1);
* ``reference.parse`` answers any string with a Reference or a ReferenceError, in milliseconds.

Runs are deterministic (``derandomize``, no example database) so CI sees the same examples.
"""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from typing import Optional

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bindimg import pin, reference
from bindimg.bootcini import BootcParseError, parse_bootc
from bindimg.errors import InputError
from bindimg.pin import replace_value, value_span
from bindimg.quadlet import (
    QUADLET_WS,
    QuadletParseError,
    UnitDecodeError,
    decode_unit,
    parse_quadlet,
)
from bindimg.units import ImageSetting, UnitProblem, bound_value, image_reference, image_setting
from bindimg.unitset import Source, UnitSet
from tests.kit import budget

DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    deadline=timedelta(milliseconds=500),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

PINNED = "quay.io/p/pinned@sha256:" + "ab" * 32
PATH = "/u/app.container"

# Unicode White_Space: both parsers trim these at the ends of a line (Go TrimSpace, Rust trim).
UNICODE_WS = "\v\f\x85\xa0\u1680\u2000\u2007\u200a\u2028\u2029\u202f\u205f\u3000"
# Look like space, are not White_Space for either parser (Python's isspace takes the first two).
NOT_WS = "\x1c\x1f\u200b\ufeff\u180e"
SPECIAL = "#;\"'\\=[]%$@:/.-_ "
assert set(UNICODE_WS) <= set(QUADLET_WS)

chars = st.one_of(
    st.sampled_from(" \t" + UNICODE_WS + NOT_WS + SPECIAL),
    st.characters(codec="utf-8", exclude_characters="\n\r"),
    st.sampled_from("abcxyz019"),
)
line_text = st.text(chars, max_size=24)
ws = st.text(st.sampled_from(" \t" + UNICODE_WS), max_size=2)
ref_like = st.sampled_from(
    ["quay.io/o/a:1", f"quay.io/o/a@sha256:{'1' * 64}", "docker.io/library/x:2", "Image", "a.image", ""]
)
value = st.one_of(
    ref_like,
    line_text,
    st.builds(lambda v: f'"{v}"', ref_like),
    st.builds(lambda v, c, t: f"{v} {c}{t}", ref_like, st.sampled_from("#;"), line_text),
)
key = st.one_of(st.sampled_from(["Image", "Exec", "image", "GlobalArgs", "Description"]), line_text)
section = st.builds(
    lambda a, n, b: f"{a}[{n}]{b}",
    ws,
    st.one_of(st.sampled_from(["Container", "Image", "Unit", "Service", " Container"]), line_text),
    ws,
)
assignment = st.builds(lambda i, k, a, v, b: f"{i}{k}{a}={b}{v}", ws, key, ws, value, ws)
comment = st.builds(lambda i, c, t: f"{i}{c}{t}", ws, st.sampled_from("#;"), line_text)
continued = st.builds(lambda body: body + "\\", st.one_of(assignment, line_text))
line = st.one_of(section, assignment, comment, continued, ws, line_text)
eol = st.sampled_from(["\n", "\n", "\r\n", "\r"])


def join(lines: list[tuple[str, str]], final_eol: bool) -> str:
    text = "".join(body + end for body, end in lines)
    if lines and not final_eol:
        text = text[: -len(lines[-1][1])]
    return text


unit_text = st.builds(join, st.lists(st.tuples(line, eol), max_size=14), st.booleans())
junk = st.sampled_from([b"\xff", b"\x00", b"\xef\xbb\xbf", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\r"])


@st.composite
def unit_bytes(draw: st.DrawFn) -> bytes:
    """A grammar unit, sometimes with raw bytes spliced in, sometimes pure noise."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    data = bytearray(draw(unit_text).encode())
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(junk)
    return bytes(data)


def setting_of(text: str) -> ImageSetting:
    """What `bindimg add` sees for an in-memory unit: no search dirs, so no drop-ins."""
    return image_setting(UnitSet([]), Source(PATH, text, parse_quadlet(text, PATH)), "app.container")


# --- the parsers never crash ------------------------------------------------------------------


@settings(DETERMINISTIC, max_examples=400)
@given(unit_bytes())
def test_parsers_fail_only_with_their_own_errors(data: bytes) -> None:
    try:
        text = decode_unit(data, PATH)
    except UnitDecodeError:
        return
    with contextlib.suppress(QuadletParseError):
        parse_quadlet(text, PATH)
    with contextlib.suppress(BootcParseError):
        parse_bootc(text, PATH)


@settings(DETERMINISTIC, max_examples=300)
@given(unit_text)
def test_every_check_add_makes_fails_only_with_a_one_line_input_error(text: str) -> None:
    """The whole read-side pipeline of `add`: an InputError (exit 2) or a bindable reference."""
    try:
        setting = setting_of(text)
        value = bound_value(setting)
        assert setting.assignment is not None
        image_reference(value, PATH, setting.assignment.line)
    except InputError as error:
        assert len(str(error).splitlines()) == 1, str(error)


# --- decoding is lossless ---------------------------------------------------------------------


@settings(DETERMINISTIC, max_examples=300)
@given(unit_bytes())
def test_decode_then_encode_is_byte_identical(data: bytes) -> None:
    try:
        text = decode_unit(data, PATH)
    except UnitDecodeError:
        return
    assert text.encode("utf-8") == data


@settings(DETERMINISTIC, max_examples=300)
@given(unit_text)
def test_rewriting_every_value_with_itself_changes_no_byte(text: str) -> None:
    try:
        unit = parse_quadlet(text, PATH)
    except QuadletParseError:
        return
    data = text.encode()
    for items in unit.groups.values():
        for item in items:
            if item.line != item.end_line or "\r" in item.value:
                continue  # replace_value refuses a CR (a lone one is no line break to Quadlet)
            start, end = value_span(text, item.line)
            assert replace_value(text, item.line, text[start:end]).encode() == data


# --- pin changes the value bytes and adds one line, nothing else ------------------------------

plain = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="#;\"'\\"),
    min_size=1,
    max_size=20,
)
ascii_ws = st.text(st.sampled_from(" \t"), max_size=2)
line_end = st.sampled_from(["\n", "\r\n"])  # a lone CR joins lines: few units would agree
# Lines bootc reads too (mostly), so that most generated units have an agreed Image=.
agreeable_line = st.one_of(
    st.builds(lambda n: f"[{n}]", st.sampled_from(["Container", "Unit", "Service", "Image"])),
    st.builds(
        lambda i, k, a, v, b: f"{i}{k}{a}={a}{v}{b}",
        ws,
        st.sampled_from(["Exec", "Description", "Image", "GlobalArgs"]),
        ascii_ws,
        st.one_of(ref_like, plain),
        ws,
    ),
    comment,
    ws,
)
image_line = st.builds(
    lambda i, a, v, b: f"{i}Image{a}={a}{v}{b}", ws, ascii_ws, st.one_of(ref_like, plain, line_text), ws
)


@st.composite
def agreeing_unit(draw: st.DrawFn) -> str:
    first = [(draw(st.sampled_from(["[Unit]", "[Container]"])), draw(line_end))]  # keys need a group
    before = draw(st.lists(st.tuples(agreeable_line, line_end), max_size=5))
    after = draw(st.lists(st.tuples(agreeable_line, line_end), max_size=5))
    middle = [("[Container]", draw(line_end)), (draw(image_line), draw(line_end))]
    return join(first + before + middle + after, draw(st.booleans()))


def agreed_line(text: str) -> Optional[tuple[int, str]]:
    """(line, value) when both parsers read the same single-line `Image=`, else None."""
    try:
        setting = setting_of(text)
        value = bound_value(setting)
    except InputError:
        return None
    assert setting.assignment is not None
    return setting.assignment.line, value


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode())


def _line_start(text: str, line: int) -> int:
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    return start


@settings(DETERMINISTIC, max_examples=300)
@given(agreeing_unit())
def test_pin_changes_only_the_value_and_adds_one_provenance_line(text: str) -> None:
    agreed = agreed_line(text)
    assume(agreed is not None and agreed[1] != PINNED)
    assert agreed is not None
    number, current = agreed
    # add pins only values that passed image_reference, and a reference has no CR in it
    # (a lone CR is no line break for either parser, so both can agree on one in a value).
    assume("\r" not in current)
    new, new_number = pin.pin(text, number, PINNED, current)

    old_b, new_b = text.encode(), new.encode()
    value_start, value_end = value_span(text, number)
    line_start = _line_start(text, number)
    replaced_from = line_start
    if pin.provenance_of(text, number) is not None:  # an old provenance line is replaced
        replaced_from = _line_start(text, number - 1)
    head = old_b[: _byte_offset(text, replaced_from)]
    tail = old_b[_byte_offset(text, value_end) :]
    assert new_b.startswith(head)
    assert new_b.endswith(tail)
    middle = new_b[len(head) : len(new_b) - len(tail)]
    inserted, newline, rest = middle.partition(b"\n")
    keep = old_b[_byte_offset(text, line_start) : _byte_offset(text, value_start)]
    assert rest == keep + PINNED.encode()
    indent = keep[: len(keep) - len(keep.decode().lstrip(QUADLET_WS.replace("\r", "")).encode())]
    assert inserted in (
        indent + f"{pin.PROVENANCE}{current}".encode(),
        indent + f"{pin.PROVENANCE}{current}\r".encode(),
    )
    assert newline == b"\n"

    # Both parsers read the pin back on the line pin() says, and a second pin changes nothing.
    assert agreed_line(new) == (new_number, PINNED)
    assert pin.pin(new, new_number, PINNED, current) == (new, new_number)


# --- the two parsers agree exactly where the reference rules say -----------------------------


NON_ASCII_WS = UNICODE_WS.replace("\v", "").replace("\f", "")
ascii_kv_ws = st.text(st.sampled_from(" \t\v\f"), max_size=2)
trailing_ws = st.text(st.sampled_from(UNICODE_WS + " \t"), min_size=1, max_size=3)
inline_comment = st.builds(
    lambda space, mark: f"{space}{mark}x", st.sampled_from(["", " "]), st.sampled_from("#;")
)
KINDS = [
    "plain",
    "trailing-unicode-ws",
    "single-quoted",
    "inline-comment",
    "double-quoted",
    "unicode-ws-after-equals",
    "continued",
]


@st.composite
def image_variant(draw: st.DrawFn) -> tuple[str, str, Optional[str]]:
    """(kind, unit text, the value both read, or None where the rules say they disagree)."""
    v = draw(plain)
    end = draw(line_end)
    kind = draw(st.sampled_from(KINDS))
    agreed: Optional[str] = None
    if kind == "plain":  # both trim ASCII space, tab, VT and FF after "="
        line, agreed = f"Image={draw(ascii_kv_ws)}{v}", v
    elif kind == "trailing-unicode-ws":  # Go TrimSpace and Rust trim drop the same set at the end
        line, agreed = f"Image={v}{draw(trailing_ws)}", v
    elif kind == "single-quoted":  # neither strips single quotes
        line, agreed = f"Image='{v}'", f"'{v}'"
    elif kind == "inline-comment":  # Quadlet keeps `# x` in the value, bootc cuts the line there
        line = f"Image={v}{draw(inline_comment)}"
    elif kind == "double-quoted":  # Quadlet strips one "…" pair, bootc keeps the quotes
        line = f'Image="{v}"'
    elif kind == "unicode-ws-after-equals":  # Quadlet's left trim is byte-wise ASCII, Rust's Unicode
        line = f"Image={draw(st.sampled_from(NON_ASCII_WS))}{v}"
    else:  # Quadlet joins the next line into the value; bootc errs on it (or reads a key)
        line = f"Image={v}\\{draw(line_end)}{draw(plain)}"
    return kind, f"[Container]{end}{line}{end}", agreed


@settings(DETERMINISTIC, max_examples=400)
@given(image_variant())
def test_parsers_agree_exactly_where_the_rules_say(variant: tuple[str, str, Optional[str]]) -> None:
    kind, text, agreed = variant
    setting = setting_of(text)
    if agreed is not None:
        assert bound_value(setting) == agreed, kind
        return
    try:
        bound_value(setting)
    except UnitProblem as problem:
        assert problem.kind in ("parser-disagreement", "bootc-parse-error"), kind
    else:
        raise AssertionError(f"{kind}: {text!r} was accepted as bound")


# --- the reference grammar -------------------------------------------------------------------

REF_ALPHABET = "abz09-._/:@+AZ"
reference_input = st.one_of(
    st.text(st.sampled_from(REF_ALPHABET), max_size=1100),
    st.text(max_size=300),
    st.builds(  # runs that a backtracking regex retries, then a character that fails the match
        lambda run, n, tail: run * n + tail,
        st.sampled_from(["a", "a-", "_.", "a.", "a/", "0:", "aB", "a__"]),
        st.integers(1, 600),
        st.sampled_from(["", "!", "-", "/", ":", "@", "A"]),
    ),
)


@settings(DETERMINISTIC, max_examples=500)
@given(reference_input)
def test_reference_parse_answers_any_string_fast(text: str) -> None:
    reference.classify(text)
    try:
        parsed = reference.parse(text)
    except reference.ReferenceError as error:
        assert str(error)
    else:
        assert parsed.source == text
    assert _best_of_3(text) < budget(0.05)  # a backtracking regex takes seconds here, not milliseconds


def _best_of_3(text: str) -> float:
    """Seconds of the fastest of three parses: one GC pause on a busy CI machine is no ReDoS."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        with contextlib.suppress(reference.ReferenceError):
            reference.parse(text)
        times.append(time.perf_counter() - start)
    return min(times)
