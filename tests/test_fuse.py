"""`collab.yjs.fuse`: chains of appends joined before pycrdt integrates them give the very
document integrating each update one by one gives, and cost one run merge, not one each."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Text

from collab.yjs.fuse import fused

PIECES = ["a", "Z ", "中文", "e\u0301", "😀", "👍🏽", "👩‍👩‍👧", "🇫🇷", "\r\n"]


def integrated(updates: list[bytes]) -> Doc:
    doc = Doc()
    doc.get("text", type=Text)
    for update in updates:
        doc.apply_update(update)
    return doc


def same_document(a: Doc, b: Doc) -> None:
    assert str(a.get("text", type=Text)) == str(b.get("text", type=Text))
    assert a.get_state() == b.get_state()
    assert a.get_update(a.get_state()) == b.get_update(b.get_state())  # the delete sets


def char_bounds(text: str) -> list[int]:
    """UTF-8 offsets (pycrdt's positions) of each code point boundary."""
    bounds = [0]
    for character in text:
        bounds.append(bounds[-1] + len(character.encode()))
    return bounds


# A step: (writer, action, position fraction, piece, hears the server first)
STEPS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["type", "type", "type", "delete", "move"]),
        st.floats(0, 1),
        st.sampled_from(PIECES),
        st.booleans(),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(STEPS, st.permutations([3, 200, 100_000]))
def test_fused_updates_make_the_same_document(steps: list, client_ids: list[int]) -> None:
    """Three writers type runs at their carets (each keystroke one update, as Yjs editors
    send), move their carets, delete, and hear each other late; the log is the order the
    server took them in."""
    writers = [Doc(client_id=client_id) for client_id in client_ids]
    carets = [0, 0, 0]
    log: list[bytes] = []
    heard = [0, 0, 0]
    for who, action, where, piece, hears in steps:
        doc = writers[who]
        text = doc.get("text", type=Text)
        if hears:
            for update in log[heard[who] :]:
                doc.apply_update(update)
            heard[who] = len(log)
        bounds = char_bounds(str(text))
        caret = min(carets[who], len(bounds) - 1)
        before = doc.get_state()
        if action == "type":
            text.insert(bounds[caret], piece)
            carets[who] = caret + len(piece)
        elif action == "delete" and caret > 0:
            del text[bounds[caret - 1] : bounds[caret]]
            carets[who] = caret - 1
        else:
            carets[who] = int(where * (len(bounds) - 1))
            continue
        log.append(doc.get_update(before))  # heard again later: pycrdt skips what it has
    same_document(integrated(log), integrated(fused(log)))


def test_an_item_after_a_chain_end_from_another_writer_ends_the_chain() -> None:
    """Whichever client id is lower: b's item right after a's text, then a goes on typing."""
    for a_id, b_id in ((5, 9), (9, 5)):
        a, b = Doc(client_id=a_id), Doc(client_id=b_id)
        log = []
        for piece in ("中", "文"):
            before = a.get_state()
            a.get("text", type=Text).insert(len(str(a.get("text", type=Text)).encode()), piece)
            log.append(a.get_update(before))
        b.apply_update(a.get_update())
        before = b.get_state()
        b.get("text", type=Text).insert(len("中文".encode()), "😀")  # after a's last character
        log.append(b.get_update(before))
        before = a.get_state()
        a.get("text", type=Text).insert(len("中文".encode()), "e\u0301")  # a has not heard b
        log.append(a.get_update(before))
        assert len(fused(log)) == 3  # the first two fused; a's last one could not be
        same_document(integrated(log), integrated(fused(log)))


def test_a_writer_typing_is_one_item_for_pycrdt() -> None:
    writer = Doc(client_id=1)
    text = writer.get("text", type=Text)
    log = []
    for i in range(2000):
        before = writer.get_state()
        text.insert(len(str(text).encode()), PIECES[i % len(PIECES)])
        log.append(writer.get_update(before))
        if i % 100 == 99:  # a backspace now and then: deletions alone keep the chain
            before = writer.get_state()
            end = len(str(text).encode())
            del text[end - len(str(text)[-1].encode()) : end]
            log.append(writer.get_update(before))
    joined = fused(log)
    assert sum(1 for update in joined if update[:1] != b"\x00") == 1
    same_document(integrated(log), integrated(joined))


def test_a_long_upload_rebuilds_in_one_merge() -> None:
    """64 appends of 256 KB to one run: each integrated on its own recounts the run
    (quadratic); fused, the run is one item. Not a timing assertion: the work is counted by
    the number of items pycrdt is given."""
    writer = Doc(client_id=7)
    text = writer.get("text", type=Text)
    piece = ("x" * 1000 + "😀中") * 255
    log = []
    for _ in range(64):
        before = writer.get_state()
        text += piece
        log.append(writer.get_update(before))
    joined = fused(log)
    assert len(joined) == 1
    same_document(integrated(log), integrated(joined))
