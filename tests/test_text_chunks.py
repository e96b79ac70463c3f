"""`TextChunks` held to plain ``str`` semantics: ops applied, lengths, and the conversions
between code points and UTF-8 bytes, with pieces cut tiny so that every edit meets their
edges (emoji, ZWJ sequences, CJK, combining marks and \\r\\n cut between pieces)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collab.text.chunks import TextChunks, deltas_to_op
from collab.text.ops import Op, OpError, apply
from collab.text.positions import delta_to_op, op_to_utf8_steps

ATOMS = ["a", "b", " ", "\r\n", "😀", "👨‍👩‍👧", "👍🏽", "🇫🇷", "中", "文", "e\u0301", "é", "xyz"]

texts = st.lists(st.sampled_from(ATOMS), max_size=30).map("".join)
inserts = st.lists(st.sampled_from(ATOMS), min_size=1, max_size=6).map("".join)
sizes = st.tuples(st.integers(1, 6), st.integers(1, 9))  # (piece, group)


@st.composite
def op_on(draw: st.DrawFn, text: str) -> Op:
    """A random op spanning `text` (it may cut a grapheme, never a code point)."""
    op: Op = []
    pos = 0
    while pos < len(text):
        n = draw(st.integers(1, max(1, min(len(text) - pos, draw(st.sampled_from([2, 9, 99]))))))
        kind = draw(st.sampled_from(["retain", "retain", "insert", "delete"]))
        if kind == "insert":
            op.append(draw(inserts))
        else:
            op.append(n if kind == "retain" else -n)
            pos += n
    if draw(st.booleans()):
        op.append(draw(inserts))
    return op


def check_invariants(chunks: TextChunks, text: str) -> None:
    """Same text, lengths that add up, no empty piece or group, pieces of bounded size."""
    assert str(chunks) == text
    assert len(chunks) == len(text)
    assert chunks.utf8_length == len(text.encode())
    assert chunks.isascii() == text.isascii()
    assert bool(chunks._groups) == bool(text)
    for group in chunks._groups:
        assert group.pieces and all(group.pieces)
        assert group.cps == [len(piece) for piece in group.pieces]
        assert group.u8s == [len(piece.encode()) for piece in group.pieces]
        assert (group.cp, group.u8) == (sum(group.cps), sum(group.u8s))
        assert all(len(piece) <= 2 * chunks._piece for piece in group.pieces)
        assert len(group.pieces) <= 2 * chunks._group


@given(texts, sizes, st.data())
@settings(max_examples=300)
def test_a_chain_of_ops_gives_what_apply_gives_on_a_str(
    text: str, size: tuple[int, int], data: st.DataObject
) -> None:
    chunks = TextChunks(text, *size)
    check_invariants(chunks, text)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(op_on(text))
        assert op_to_utf8_steps(chunks, op) == op_to_utf8_steps(text, op)
        copy = chunks.copy() if data.draw(st.booleans()) else None
        old, text = text, apply(text, op)
        chunks.apply(op)
        check_invariants(chunks, text)
        if copy is not None:  # a copy is left as it was
            check_invariants(copy, old)


@given(texts, sizes, st.data())
@settings(max_examples=300)
def test_deltas_convert_as_on_a_str_and_fail_alike(
    text: str, size: tuple[int, int], data: st.DataObject
) -> None:
    """Random deltas, in bytes, most of them cutting characters or running past the end."""
    chunks = TextChunks(text, *size)
    total = len(text.encode())
    delta = []
    for _ in range(data.draw(st.integers(0, 6))):
        kind = data.draw(st.sampled_from(["retain", "delete", "insert"]))
        if kind == "insert":
            delta.append({"insert": data.draw(inserts)})
        else:
            delta.append({kind: data.draw(st.integers(0, max(1, total // 2)))})
    try:
        expected = delta_to_op(text, delta)
    except OpError as error:
        words = "inside a character" if "inside" in str(error) else "outside|past the end"
        with pytest.raises(OpError, match=words):
            delta_to_op(chunks, delta)
    else:
        assert delta_to_op(chunks, delta) == expected


@given(texts, sizes, st.data())
def test_a_walk_converts_each_span_as_on_a_str(
    text: str, size: tuple[int, int], data: st.DataObject
) -> None:
    """Spans one way then the other, within a piece, to its edge and across pieces."""
    chunks = TextChunks(text, *size)
    walker = chunks.walker()
    cp = 0
    for _ in range(12):
        n = data.draw(st.integers(0, len(text) - cp))
        nbytes = len(text[cp : cp + n].encode())
        if data.draw(st.booleans()):
            assert walker.utf8_len(n) == nbytes
        else:
            assert walker.utf8_span(nbytes) == n
        cp += n
    with pytest.raises(OpError, match="outside"):
        walker.utf8_span(len(text[cp:].encode()) + 1)


def test_edits_at_piece_edges_and_across_them() -> None:
    # Pieces of 2 code points: the family, the skin tone and \r\n are cut between pieces.
    text = "a👨‍👩‍👧b👍🏽\r\n中e\u0301"
    chunks = TextChunks(text, piece=1, group=2)
    for make in (
        lambda n: [2, "🇫🇷", n - 2],  # inside the ZWJ family, at a piece's edge
        lambda n: [7, -4, "x", n - 11],  # across the skin tone, \r and \n
        lambda n: [n, "\u0301"],  # a combining mark at the end
        lambda n: [-3, n - 3],  # the start of the text
        lambda n: [2, -(n - 2)],  # everything after the first two
    ):
        op = make(len(text))
        text, _ = apply(text, op), chunks.apply(op)
        check_invariants(chunks, text)
    with pytest.raises(OpError, match="base length"):
        chunks.apply([len(text) + 1])
    check_invariants(chunks, text)


def test_a_utf8_offset_inside_a_character_is_refused_across_pieces() -> None:
    chunks = TextChunks("ab😀中", piece=1, group=2)
    with pytest.raises(OpError, match="inside a character"):
        delta_to_op(chunks, [{"retain": 4}, {"insert": "x"}])
    with pytest.raises(OpError, match="inside a character"):
        delta_to_op(chunks, [{"retain": 1}, {"retain": 2}, {"delete": 3}])
    assert delta_to_op(chunks, [{"retain": 6}, {"delete": 3}]) == [3, -1]


def test_many_edits_rebuild_once_and_few_edit_in_place() -> None:
    """An op with more edits than pieces rewrites the text once; a small one only the
    pieces it touches (the others stay the very same objects)."""
    text = "中文😀 ab\r\n" * 2000
    chunks = TextChunks(text, piece=64, group=4)
    before = [piece for group in chunks._groups for piece in group.pieces]
    op: Op = [5000, "👍🏽", len(text) - 5000]
    text = apply(text, op)
    chunks.apply(op)
    after = [piece for group in chunks._groups for piece in group.pieces]
    assert sum(1 for piece in after if not any(piece is old for old in before)) <= 2
    many: Op = [part for _ in range(len(text) // 2) for part in (1, -1)]
    text = apply(text, many)
    chunks.apply(many)
    check_invariants(chunks, text)


def test_the_empty_text() -> None:
    chunks = TextChunks("", piece=2, group=2)
    check_invariants(chunks, "")
    assert delta_to_op(chunks, [{"insert": "😀"}]) == ["😀"]
    chunks.apply(["😀中"])
    check_invariants(chunks, "😀中")
    chunks.apply([-2])
    check_invariants(chunks, "")


def as_delta(text: str, op: Op) -> list[dict[str, object]]:
    """`op` on `text` as pycrdt reports a change: retains and deletes in UTF-8 bytes."""
    delta: list[dict[str, object]] = []
    pos = 0
    for component in op:
        if isinstance(component, str):
            delta.append({"insert": component})
        else:
            span = text[pos : pos + abs(component)]
            delta.append({"retain" if component > 0 else "delete": len(span.encode())})
            pos += abs(component)
    return delta


@given(texts, sizes, st.data())
def test_the_deltas_of_one_transaction_make_one_op(
    text: str, size: tuple[int, int], data: st.DataObject
) -> None:
    """Several text events in one transaction: each delta is on what the one before left."""
    chunks = TextChunks(text, *size)
    deltas, current = [], text
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(op_on(current))
        deltas.append(as_delta(current, op))
        current = apply(current, op)
    op = deltas_to_op(chunks, deltas)
    assert apply(text, op) == current
    check_invariants(chunks, text)  # the text it was given is left as it was
