"""Text operations and unit conversions: laws as hypothesis properties, pycrdt as the oracle
for byte offsets, and the error messages a client gets for a bad op."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.text.ops import (
    Op,
    OpError,
    apply,
    base_length,
    check,
    compose,
    diff,
    invert,
    normalize,
    rebase,
    target_length,
    transform,
    transform_position,
    transform_positions,
)
from collab.text.positions import (
    cp_to_utf8,
    cp_to_utf16,
    delta_to_op,
    op_to_utf8_steps,
    utf8_to_cp,
    utf16_to_cp,
)

# Pieces of text that break unit arithmetic: astral emoji, a ZWJ family, a skin tone, a
# flag (two regional indicators), CJK, a combining accent, CRLF, and plain ASCII.
ATOMS = ["a", "b", " ", "\r\n", "😀", "👨‍👩‍👧", "👍🏽", "🇫🇷", "中", "文", "e\u0301", "é"]

texts = st.lists(st.sampled_from(ATOMS), max_size=12).map("".join)
inserts = st.lists(st.sampled_from(ATOMS), min_size=1, max_size=4).map("".join)


@st.composite
def op_on(draw: st.DrawFn, text: str) -> Op:
    """A random op spanning `text` (code points; it may cut a grapheme, never a code point)."""
    op: Op = []
    pos = 0
    while pos < len(text):
        n = draw(st.integers(1, len(text) - pos))
        kind = draw(st.sampled_from(["retain", "insert", "delete"]))
        if kind == "insert":
            op.append(draw(inserts))
        else:
            op.append(n if kind == "retain" else -n)
            pos += n
    if draw(st.booleans()):
        op.append(draw(inserts))
    return op


@st.composite
def text_and_ops(draw: st.DrawFn, count: int) -> tuple[str, list[Op]]:
    """A text and `count` ops all made concurrently on it."""
    text = draw(texts)
    return text, [draw(op_on(text)) for _ in range(count)]


@st.composite
def text_and_chain(draw: st.DrawFn, count: int) -> tuple[str, list[Op]]:
    """A text and `count` ops applied one after the other."""
    text = current = draw(texts)
    ops = []
    for _ in range(count):
        op = draw(op_on(current))
        ops.append(op)
        current = apply(current, op)
    return text, ops


def is_canonical(op: Op) -> bool:
    for component, following in itertools.pairwise(op):
        if type(component) is type(following) and (
            isinstance(component, str) or (component > 0) == (following > 0)
        ):
            return False
        if isinstance(component, int) and component < 0 and isinstance(following, str):
            return False
    return all(c != 0 and c != "" for c in op)


# --- apply and canonical form -------------------------------------------------------------


def test_apply_example_from_the_protocol() -> None:
    assert apply("héllo", [1, -1, "e", 3]) == "hello"


def test_apply_counts_code_points_not_utf16_or_bytes() -> None:
    assert apply("a😀b中c", [1, -1, 1, "文", 2]) == "ab文中c"
    assert apply("👨‍👩‍👧", [5, "!"]) == "👨‍👩‍👧!"  # a ZWJ family is 5 code points


def test_identity() -> None:
    assert normalize([3]) == [3]
    assert normalize([]) == []
    assert apply("", []) == ""
    assert apply("🇫🇷\r\n", [4]) == "🇫🇷\r\n"


def test_normalize_merges_drops_and_puts_insert_before_delete() -> None:
    assert normalize([1, 2, 0, "", "a", "b", -1, -2, 3]) == [3, "ab", -3, 3]
    assert normalize([2, -1, "x", -1, "y", 1]) == [2, "xy", -2, 1]
    assert normalize(["a", -1, "b"]) == ["ab", -1]


@given(text_and_ops(1))
def test_normalize_is_idempotent_canonical_and_keeps_meaning(case: tuple[str, list[Op]]) -> None:
    text, (op,) = case
    once = normalize(op)
    assert normalize(once) == once
    assert is_canonical(once)
    assert apply(text, once) == apply(text, op)
    assert base_length(once) == len(text)
    assert target_length(once) == len(apply(text, op))


@given(text_and_ops(1))
def test_random_ops_pass_check_and_survive_json(case: tuple[str, list[Op]]) -> None:
    text, (op,) = case
    wire = json.loads(json.dumps(op))
    check(wire)
    assert apply(text, wire) == apply(text, op)


# --- compose, invert, transform -----------------------------------------------------------


@given(text_and_chain(2))
def test_compose_has_the_effect_of_both(case: tuple[str, list[Op]]) -> None:
    text, (a, b) = case
    both = compose(a, b)
    assert apply(text, both) == apply(apply(text, a), b)
    assert is_canonical(both)


@given(text_and_chain(3))
def test_compose_is_associative(case: tuple[str, list[Op]]) -> None:
    text, (a, b, c) = case
    left, right = compose(compose(a, b), c), compose(a, compose(b, c))
    assert left == right
    assert apply(text, left) == apply(apply(apply(text, a), b), c)


@given(text_and_ops(1))
def test_invert_undoes(case: tuple[str, list[Op]]) -> None:
    text, (op,) = case
    undo = invert(op, text)
    assert apply(apply(text, op), undo) == text
    assert is_canonical(undo)


@given(text_and_ops(2), st.booleans())
def test_transform_converges_tp1(case: tuple[str, list[Op]], a_first: bool) -> None:
    text, (a, b) = case
    a2, b2 = transform(a, b, a_first=a_first)
    assert apply(apply(text, a), b2) == apply(apply(text, b), a2)
    assert is_canonical(a2) and is_canonical(b2)


@given(text_and_ops(1), texts)
def test_transform_keeps_each_side_s_insert_whole(case: tuple[str, list[Op]], word: str) -> None:
    text, (a,) = case
    b = normalize([len(text), "<" + word + ">"])  # an append concurrent with anything
    a2, b2 = transform(a, b)
    merged = apply(apply(text, a), b2)
    assert merged == apply(apply(text, b), a2)
    assert "<" + word + ">" in merged


def test_transform_tie_puts_the_applied_op_first() -> None:
    a, b = [1, "A", 1], [1, "B", 1]
    a2, b2 = transform(a, b)
    assert apply(apply("xy", a), b2) == "xABy"
    assert apply(apply("xy", b), a2) == "xABy"
    a2, b2 = transform(a, b, a_first=False)
    assert apply(apply("xy", a), b2) == "xBAy"


def test_transform_overlapping_deletes_delete_once() -> None:
    text = "a😀中文b"
    a, b = [1, -3, 1], [2, -3]
    a2, b2 = transform(a, b)
    assert apply(apply(text, a), b2) == apply(apply(text, b), a2) == "a"


@given(text_and_ops(4))
@settings(max_examples=50)
def test_rebase_against_each_logged_op_in_turn(case: tuple[str, list[Op]]) -> None:
    """The server's use: a client op based on an old revision catches up with the log."""
    text, (first, *late) = case
    # Build a log: each logged op is made concurrently with the client's op, then
    # serialised behind the previous logged ones.
    log = [first]
    server_text = apply(text, first)
    for op in late[:-1]:
        log.append(rebase(op, log))
        server_text = apply(server_text, log[-1])
    client_op = late[-1]
    caught_up = rebase(client_op, log)
    assert base_length(caught_up) == len(server_text)
    # Same result as the client applying the log transformed against its own op.
    client_text = apply(text, client_op)
    for logged in log:
        logged, client_op = transform(logged, client_op)
        client_text = apply(client_text, logged)
    assert apply(server_text, caught_up) == client_text


# --- transform_position -------------------------------------------------------------------


def test_remote_insert_at_caret_leaves_caret_before_it() -> None:
    assert transform_position(2, [2, "😀", 1]) == 2
    assert transform_position(2, [2, "😀", 1], is_own=True) == 3
    assert transform_position(3, [2, "😀", 1]) == 4
    assert transform_position(1, [2, "😀", 1]) == 1


def test_caret_in_deleted_range_goes_to_its_start_after_replacement() -> None:
    op = [1, -3, 1]  # on "a中文😀b"
    assert [transform_position(p, op) for p in range(6)] == [0, 1, 1, 1, 1, 2]
    replace = [1, "xy", -3, 1]
    assert transform_position(2, replace) == 3
    assert transform_position(1, replace) == 1
    assert transform_position(1, normalize([1, -3, "xy", 1])) == 1


def test_transform_position_rejects_a_caret_outside_the_text() -> None:
    with pytest.raises(OpError, match="outside"):
        transform_position(4, [3])


@given(text_and_ops(1), st.data(), st.booleans())
def test_transform_position_agrees_with_a_marker_insert(
    case: tuple[str, list[Op]], data: st.DataObject, is_own: bool
) -> None:
    """A caret behaves like a private marker inserted at it, losing ties to own inserts."""
    text, (op,) = case
    pos = data.draw(st.integers(0, len(text)))
    marker = normalize([pos, "\ue000", len(text) - pos])
    _, marker2 = transform(op, marker, a_first=is_own)
    after = apply(apply(text, op), marker2)
    assert transform_position(pos, op, is_own=is_own) == after.index("\ue000")


@given(text_and_ops(1), st.data(), st.booleans())
def test_transform_positions_moves_each_like_transform_position(
    case: tuple[str, list[Op]], data: st.DataObject, is_own: bool
) -> None:
    """Many carets in one pass (any order, repeats) land where each alone would."""
    text, (op,) = case
    positions = data.draw(st.lists(st.integers(0, len(text)), max_size=8))
    canonical = normalize(op)
    expected = [transform_position(pos, op, is_own=is_own) for pos in positions]
    assert transform_positions(positions, canonical, is_own=is_own) == expected


def test_rebase_through_canonical_revisions_equals_the_general_rebase() -> None:
    log = [[3, "ab", 2], [1, -2, 4], [5, "😀"], [-1, 5]]
    for op in ([5, "x"], ["y", 5], [2, -3, "z"]):
        assert rebase(op, log, canonical=True) == rebase(op, log)


# --- diff ---------------------------------------------------------------------------------


def test_diff_places_typing_at_the_caret_in_a_run() -> None:
    assert diff("aaa", "aaaa", cursor_hint=2) == [1, "a", 2]
    assert diff("aaa", "aaaa") == [3, "a"]
    assert diff("😀😀", "😀😀😀", cursor_hint=1) == ["😀", 2]
    assert diff("aaaa", "aaa", cursor_hint=1) == [1, -1, 2]  # backspace at 2


def test_diff_ignores_a_hint_that_would_enlarge_the_edit() -> None:
    assert diff("ab", "aXb", cursor_hint=3) == [1, "X", 1]
    assert diff("ab", "aXb", cursor_hint=99) == [1, "X", 1]


def test_diff_of_equal_and_empty_texts() -> None:
    assert diff("中文", "中文") == [2]
    assert diff("", "") == []
    assert diff("", "👍🏽") == ["👍🏽"]
    assert diff("👍🏽", "") == [-2]


def edit_size(op: Op) -> int:
    return sum(len(c) if isinstance(c, str) else -c for c in op if isinstance(c, str) or c < 0)


@given(texts, texts, st.none() | st.integers(-2, 40))
def test_diff_turns_old_into_new_with_one_smallest_replace(
    old: str, new: str, hint: int | None
) -> None:
    op = diff(old, new, hint)
    assert apply(old, op) == new
    assert is_canonical(op)
    assert len([c for c in op if not (isinstance(c, int) and c > 0)]) <= 2  # one replace
    assert edit_size(op) == edit_size(diff(old, new))  # a hint never enlarges the edit


@given(texts, st.data())
def test_diff_with_hint_finds_the_exact_insert(text: str, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(text)))
    typed = data.draw(inserts)
    new = text[:pos] + typed + text[pos:]
    assert diff(text, new, cursor_hint=pos + len(typed)) == normalize([pos, typed, len(text) - pos])


@given(texts, st.data())
def test_diff_with_hint_finds_the_exact_delete(text: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    new = text[:start] + text[end:]
    assert diff(text, new, cursor_hint=start) == normalize([start, start - end, len(text) - end])


# --- position conversions -----------------------------------------------------------------


def test_conversions_on_a_known_text() -> None:
    text = "a😀b中c"
    assert [cp_to_utf16(text, i) for i in range(6)] == [0, 1, 3, 4, 5, 6]
    assert [cp_to_utf8(text, i) for i in range(6)] == [0, 1, 5, 6, 9, 10]
    assert utf16_to_cp(text, 3) == 2
    assert utf8_to_cp(text, 9) == 4
    with pytest.raises(OpError, match="surrogate pair"):
        utf16_to_cp(text, 2)
    with pytest.raises(OpError, match="inside a character"):
        utf8_to_cp(text, 2)
    with pytest.raises(OpError, match="outside"):
        utf8_to_cp(text, 11)
    with pytest.raises(OpError, match="outside"):
        utf16_to_cp(text, 7)
    with pytest.raises(OpError, match="outside"):
        cp_to_utf8(text, 6)
    with pytest.raises(OpError, match="outside"):
        cp_to_utf16("abc", -1)


@given(texts)
def test_code_point_conversions_round_trip(text: str) -> None:
    for i in range(len(text) + 1):
        assert cp_to_utf16(text, i) == len(text[:i].encode("utf-16-le")) // 2
        assert cp_to_utf8(text, i) == len(text[:i].encode("utf-8"))
        assert utf16_to_cp(text, cp_to_utf16(text, i)) == i
        assert utf8_to_cp(text, cp_to_utf8(text, i)) == i


@given(texts)
def test_utf16_and_utf8_positions_never_land_inside_a_character(text: str) -> None:
    units = text.encode("utf-16-le")
    for i16 in range(len(units) // 2 + 1):
        try:
            i = utf16_to_cp(text, i16)
        except OpError:
            assert 0xDC00 <= int.from_bytes(units[2 * i16 : 2 * i16 + 2], "little") <= 0xDFFF
        else:
            assert units[: 2 * i16].decode("utf-16-le") == text[:i]
    data = text.encode("utf-8")
    for b in range(len(data) + 1):
        try:
            i = utf8_to_cp(text, b)
        except OpError:
            assert 0x80 <= data[b] < 0xC0
        else:
            assert data[:b].decode("utf-8") == text[:i]


def test_conversions_on_a_megabyte_text() -> None:
    text = "中文😀 ab\r\n" * 100_000
    end = len(text)
    assert utf8_to_cp(text, cp_to_utf8(text, end)) == end
    assert utf16_to_cp(text, cp_to_utf16(text, end - 1)) == end - 1
    assert op_to_utf8_steps(text, [end - 1, "x", -1]) == [
        ("insert", len(text.encode()) - 1, "x"),
        ("delete", len(text.encode()), len(text.encode()) + 1),
    ]


# --- pycrdt: deltas and byte steps against the real thing ---------------------------------


def ytext_with(content: str) -> tuple[Doc, Text]:
    doc = Doc()
    ytext = doc.get("text", type=Text)
    ytext += content
    return doc, ytext


def observe_change(doc: Doc, ytext: Text, change: object) -> list:
    """Run `change(ytext)` in one transaction and return the event deltas it fired."""
    deltas: list = []
    subscription = ytext.observe(lambda event: deltas.append(event.delta))
    with doc.transaction():
        change(ytext)  # type: ignore[operator]
    ytext.unobserve(subscription)
    return deltas


@given(text_and_ops(1))
@settings(max_examples=60)
def test_op_to_utf8_steps_on_a_real_ytext_matches_apply(case: tuple[str, list[Op]]) -> None:
    text, (op,) = case
    doc, ytext = ytext_with(text)

    def change(target: Text) -> None:
        for step in op_to_utf8_steps(text, op):
            if step[0] == "insert":
                target.insert(step[1], step[2])
            else:
                del target[step[1] : step[2]]

    deltas = observe_change(doc, ytext, change)
    assert str(ytext) == apply(text, op)
    # And back: what pycrdt reports converts to an op with the same effect.
    for delta in deltas:
        assert apply(text, delta_to_op(text, delta)) == str(ytext)


@given(texts, st.lists(st.tuples(st.integers(0, 99), st.integers(0, 3), inserts), max_size=4))
@settings(max_examples=60)
def test_delta_of_random_pycrdt_edits_converts_to_the_right_op(
    text: str, edits: list[tuple[int, int, str]]
) -> None:
    doc, ytext = ytext_with(text)

    def change(target: Text) -> None:
        for where, length, word in edits:
            current = str(target)
            start = where % (len(current) + 1)
            end = min(len(current), start + length)
            del target[cp_to_utf8(current, start) : cp_to_utf8(current, end)]
            target.insert(cp_to_utf8(str(target), start), word)

    deltas = observe_change(doc, ytext, change)
    assert len(deltas) <= 1
    op = delta_to_op(text, deltas[0]) if deltas else [len(text)]
    assert base_length(op) == len(text)
    assert apply(text, op) == str(ytext)


def test_delta_from_a_remote_astral_insert() -> None:
    """The documented case: a JS `insert(3, "🎉")` after "a😀" arrives as 5 bytes."""
    assert delta_to_op("a😀", [{"retain": 5}, {"insert": "🎉"}]) == [2, "🎉"]
    assert delta_to_op("a😀b", [{"delete": 1}, {"retain": 4}, {"insert": "中"}]) == [
        -1,
        1,
        "中",
        1,
    ]


def test_delta_of_formatting_is_the_identity() -> None:
    doc, ytext = ytext_with("a😀中b")
    deltas = observe_change(doc, ytext, lambda t: t.format(1, 8, {"bold": True}))
    assert deltas and any("attributes" in part for part in deltas[0])
    assert delta_to_op("a😀中b", deltas[0]) == [4]


def test_delta_that_does_not_fit_the_text_raises() -> None:
    with pytest.raises(OpError, match="inside a character"):
        delta_to_op("a😀", [{"retain": 2}, {"insert": "x"}])
    with pytest.raises(OpError, match="outside"):
        delta_to_op("a😀", [{"delete": 6}])
    with pytest.raises(OpError, match="past the end"):
        delta_to_op("ab", [{"retain": 3}])
    with pytest.raises(OpError, match="inserts a dict"):
        delta_to_op("ab", [{"insert": {"image": "x.png"}}])
    with pytest.raises(OpError, match="not an insert, retain or delete"):
        delta_to_op("ab", [{"retain": True}])


# --- errors a client sees -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ('{"retain": 1}', "must be a JSON array, not dict"),
        ("[1, true]", "component 1 is a boolean"),
        ("[0]", "component 0 is 0"),
        ('[1, ""]', "component 1 inserts the empty string"),
        ("[1.5]", "component 0 is a float"),
        ("[[1]]", "component 0 is a list"),
        ("[null]", "component 0 is a NoneType"),
        ('["ok", "\\ud83d"]', "component 1 holds a lone surrogate U+D83D"),
        ('["a\\ude00b"]', "component 0 holds a lone surrogate U+DE00"),
    ],
)
def test_check_rejects_invalid_ops_with_a_clear_message(wire: str, message: str) -> None:
    with pytest.raises(OpError, match=re.escape(message)):
        check(json.loads(wire))


def test_check_accepts_a_valid_pair_from_json_and_limits_size() -> None:
    check(json.loads('[2, "\\ud83d\\ude00", -1]'))  # an escaped pair is one code point
    check([1, "x", -1], max_components=3)
    with pytest.raises(OpError, match="4 components, more than the limit 3"):
        check([1, "x", -1, 1], max_components=3)


def test_wrong_base_length_names_both_numbers() -> None:
    with pytest.raises(OpError, match=r"op base length 7 != text length 9"):
        apply("中文😀abcd\r\n", [7])
    with pytest.raises(OpError, match=r"op base length 2 != text length 1"):
        invert([1, -1], "😀")
    with pytest.raises(OpError, match=r"op base length 3 != text length 2"):
        op_to_utf8_steps("👍🏽", [3])
    with pytest.raises(OpError, match=r"target length 2 != second op's base length 3"):
        compose([2], [3])
    with pytest.raises(OpError, match=r"base length 3 != the other op's base length 2"):
        transform([2], [3])
    assert isinstance(OpError("x"), ValueError)
