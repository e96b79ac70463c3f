"""Writers' appends to a long text cost the same at any length (issue 19).

Yrs merges a client's new item into the run it continues and recounts the merged string
from its start (`try_squash`), so an append integrated on its own costs what its writer
wrote before: 0.02 ms per 2 KB append at 1 MB, 0.5 ms at 16 MB (19 writers). The document
keeps such appends in one lane per writer and integrates a lane at a time
(`collab.session.lanes`). What anyone reads of the pycrdt document is the same as if each
update had been integrated at once.
"""

from __future__ import annotations

import functools
import random

import pytest
from pycrdt import Doc, Text, merge_updates

from collab.config import Settings
from collab.session import document as document_module
from collab.session import lanes
from collab.session.document import Document
from collab.session.revision import ChangeRefused
from collab.storage.contract import StoredDocument
from collab.yjs.checks import SurrogateIndex, check_update
from collab.yjs.crdt import apply_update
from collab.yjs.protocol import write_var_uint
from collab.yjs.update import DELETED, STRING, UpdateFormatError, decode_state_vector

WRITERS = 19
PIECE = "👩‍👩‍👧 中文 e\u0301\r\n🇫🇷 "  # emoji, ZWJ, CJK, combining mark, CRLF, a flag


def hear_relayed(writer: Doc, log: list[bytes], seen: list[int], i: int) -> None:
    """Writer `i` applies what the server relayed since it last did (`seen[i]` of `log`)."""
    for update in log[seen[i] :]:
        writer.apply_update(update)
    seen[i] = len(log)


def append_update(client: int, clock: int, text: str) -> bytes:
    """`client`'s item of `text` right after its own item ending at `clock` (an append to
    its run), or at the start of the text when `clock` is 0."""
    content = text.encode()
    head = b"\x01\x01" + write_var_uint(client) + write_var_uint(clock)
    if clock == 0:  # string content, parent the root type "text", no origin
        item = b"\x04\x01" + write_var_uint(4) + b"text"
    else:  # string content, origin (client, clock - 1)
        item = b"\x84" + write_var_uint(client) + write_var_uint(clock - 1)
    return head + item + write_var_uint(len(content)) + content + b"\x00"


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def long_document(run_bytes: int, track: bool = False) -> tuple[Document, dict[int, int], str]:
    """A stored document of `WRITERS` runs of about `run_bytes` each (one item per writer,
    as Yrs keeps an appending writer's text); its clocks and text."""
    doc = Doc()
    doc.get("text", type=Text)
    clocks = {}
    run = PIECE * (run_bytes // len(PIECE.encode()))
    for client in range(1, WRITERS + 1):
        doc.apply_update(append_update(client, 0, run))
        clocks[client] = utf16_length(run)
    stored = StoredDocument(doc.get_update(), 1, [], 0)
    settings = Settings(max_document_bytes=1 << 30)
    return Document(settings, stored, track_text=track), clocks, str(doc.get("text", type=Text))


def appends(clocks: dict[int, int], rounds: int) -> list[bytes]:
    """`rounds` 2 KB appends by each writer, in turn (`clocks` advanced past them)."""
    edits = []
    for i in range(rounds):
        for client in clocks:
            piece = f"<{client}.{i}>" + "y" * 2000 + PIECE
            edits.append(append_update(client, clocks[client], piece))
            clocks[client] += utf16_length(piece)
    return edits


def random_edit(rng: random.Random, doc: Doc) -> None:
    """Insert or delete somewhere in `doc`'s text (byte offsets on character boundaries)."""
    text = doc.get("text", type=Text)
    current = str(text)
    bounds = [0]
    for character in current:
        bounds.append(bounds[-1] + len(character.encode()))
    if current and rng.random() < 0.3:
        a, b = sorted(rng.sample(range(len(bounds)), 2))
        del text[bounds[a] : bounds[b]]
    else:
        at = bounds[-1] if rng.random() < 0.6 else rng.choice(bounds)  # mostly appends
        text.insert(at, rng.choice(PIECES) * rng.randint(1, 30))


PIECES = ["👩‍👩‍👧", "中文", "e\u0301", "\r\n", "🇫🇷", "plain ", "😀"]


@pytest.mark.parametrize("seed", range(12))
def test_what_is_read_is_what_integrating_each_update_at_once_gives(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers that see each other late (inserts after others' waiting items, deletions of
    them); lanes small enough to be integrated one at a time often; the document is read at
    random moments (which integrates every lane): its text, state and state vector are
    always the reference's, a pycrdt document that integrated each update at once."""
    monkeypatch.setattr(lanes, "LANE_BYTES", 400)
    monkeypatch.setattr(lanes, "WAITING_BYTES", 1000)
    rng = random.Random(seed)
    document = Document(Settings(), track_text=False)
    reference = Doc()
    ref_text = reference.get("text", type=Text)
    writers = [Doc(client_id=100 + i) for i in range(4)]
    for writer in writers:
        writer.get("text", type=Text)
    log: list[bytes] = []
    seen = [0] * len(writers)  # how much of the log each writer has applied
    for _ in range(300):
        i = rng.randrange(len(writers))
        writer = writers[i]
        if rng.random() < 0.3:
            hear_relayed(writer, log, seen, i)
        before = writer.get_state()
        random_edit(rng, writer)
        update = writer.get_update(before)
        if rng.random() < 0.15:  # a peer's step 2 with another writer's edit: waits whole
            other = writers[(i + 1) % len(writers)]
            other_before = other.get_state()
            random_edit(rng, other)
            update = merge_updates(update, other.get_update(other_before))
        if document.apply_update(update, f"yjs:{i}", None) is not None:
            log.append(update)
        reference.apply_update(update)
        if i == 0:
            seen[0] = len(log)  # its own updates
        if rng.random() < 0.2:
            document.settle()  # as the runner does once a batch is sent
        if rng.random() < 0.1:
            assert str(document.text) == str(ref_text)
        assert decode_state_vector(document.encoded_state_vector()) == decode_state_vector(
            reference.get_state()
        )
    assert str(document.text) == str(ref_text)
    assert document.doc.get_state() == reference.get_state() or decode_state_vector(
        document.doc.get_state()
    ) == decode_state_vector(reference.get_state())
    again = Doc()
    again.apply_update(document.state)
    assert str(again.get("text", type=Text)) == str(ref_text)


def spy_on_integration(monkeypatch: pytest.MonkeyPatch) -> tuple[list[bytes], list[int]]:
    """What reaches pycrdt one update at a time, and how many updates each lane
    integration takes (both lists fill as the document works)."""
    at_once: list[bytes] = []
    in_lanes: list[int] = []
    real_at_once, real_lane = document_module.apply_update, lanes._integrate
    monkeypatch.setattr(
        document_module, "apply_update", lambda doc, u: at_once.append(u) or real_at_once(doc, u)
    )
    monkeypatch.setattr(
        lanes, "_integrate", lambda doc, us: in_lanes.append(len(us)) or real_lane(doc, us)
    )
    return at_once, in_lanes


def test_appends_are_integrated_a_lane_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes an append cost the same at any length (measured by bench/append_cost.py:
    0.02-0.04 ms an append at 1 to 16 MiB, against 0.03-0.27 ms for bare pycrdt): writers'
    appends reach pycrdt a lane (64 KiB of one writer) at a time, never one by one."""
    document, clocks, _ = long_document(16 * 1024)
    edits = appends(clocks, 32)  # 19 x 32 appends of ~2 KB: ~1.2 MB
    for update in edits[:WRITERS]:  # the first builds the surrogate index
        document.apply_update(update, "yjs:1", None)
    before = str(document.text)  # integrates what waits
    at_once, in_lanes = spy_on_integration(monkeypatch)
    for update in edits[WRITERS:]:
        assert document.apply_update(update, "yjs:1", None) is not None
    assert at_once == []
    appended = sum(len(update) for update in edits[WRITERS:])
    assert 0 < len(in_lanes) <= appended // lanes.LANE_BYTES + WRITERS
    assert len(str(document.text)) > len(before)  # read: every lane integrated
    assert sum(in_lanes) == len(edits) - WRITERS


@functools.cache
def two_writers_update(kb: int, seed: int = 7) -> tuple[bytes, str]:
    """The whole of a document two writers typed, each seeing the other's edits (emoji,
    ZWJ, CJK, combining marks, CRLF; mostly at the end, some inserts anywhere, some
    backspaces) as one update of about `kb` KB, as a peer uploads it in its sync step 2;
    and its text."""
    rng = random.Random(seed)
    a, b = Doc(client_id=501), Doc(client_id=502)
    for doc in (a, b):
        doc.get("text", type=Text)
    while len(a.get_update()) < kb * 1024:
        for _ in range(64):
            _type_one_edit(rng, a, b)
    return a.get_update(), str(a.get("text", type=Text))


def _type_one_edit(rng: random.Random, a: Doc, b: Doc) -> None:
    """One of the two writers edits; the other applies its edit."""
    writer, other = (a, b) if rng.random() < 0.5 else (b, a)
    text = writer.get("text", type=Text)
    before = writer.get_state()
    current = str(text)
    roll = rng.random()
    if roll < 0.1 and current:  # a backspace: the last character, whole
        end = len(text)
        del text[end - len(current[-1].encode()) : end]
    elif roll < 0.2:  # an insert anywhere, on a character boundary
        at = len(current[: rng.randint(0, len(current))].encode())
        text.insert(at, rng.choice(PIECES))
    else:
        text.insert(len(text), rng.choice(PIECES) * rng.randint(1, 4))
    other.apply_update(writer.get_update(before))


def test_an_upload_of_several_writers_waits_whole_until_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Too big and too mixed for a lane, a text upload still waits for pycrdt: its record
    (logged, then relayed) comes without pycrdt's apply, and the runner integrates it once
    the batch is sent (`Document.settle`). Reading it then costs nothing more."""
    update, text = two_writers_update(100)
    document = Document(Settings(), track_text=False)
    at_once, in_lanes = spy_on_integration(monkeypatch)
    committed = document.apply_update(update, "yjs:1", None)
    assert committed is not None and committed.record.update == update
    assert at_once == [] and in_lanes == []
    reference = Doc()
    reference.apply_update(update)
    expected_clocks = decode_state_vector(reference.get_state())
    assert decode_state_vector(document.encoded_state_vector()) == expected_clocks
    document.settle()
    assert in_lanes == [1]
    assert str(document.text) == text and in_lanes == [1]
    document.settle()  # nothing waits: nothing to do
    assert in_lanes == [1] and at_once == []


def string_item_under(client: int, parent: tuple[int, int], text: str) -> bytes:
    """An update of one string item whose parent is named by the ID of an item."""
    content = text.encode()
    head = b"\x01\x01" + write_var_uint(client) + b"\x00" + bytes([STRING]) + b"\x00"
    parent_id = write_var_uint(parent[0]) + write_var_uint(parent[1])
    return head + parent_id + write_var_uint(len(content)) + content + b"\x00"


def test_an_update_only_pycrdt_can_refuse_is_applied_at_once_and_refused() -> None:
    """An item whose parent is named by ID passes the checks whatever that item is; pycrdt
    refuses it when the item is no type (here: text). So it never waits: it is applied
    before anyone sees it, refused, and the document is as it was."""
    update, text = two_writers_update(100)
    document = Document(Settings(), track_text=False)
    document.apply_update(update, "yjs:1", None)
    typed = Doc(client_id=504)
    typed.apply_update(document.state)
    before = typed.get_state()
    typed.get("text", type=Text).insert(0, "👍🏽中")
    assert document.apply_update(typed.get_update(before), "yjs:3", None) is not None
    state, rev = document.state, document.rev
    hostile = string_item_under(503, (504, 1), "e\u0301😀")  # under 👍's first half
    with pytest.raises(ChangeRefused, match="update refused: Cannot apply update"):
        document.apply_update(hostile, "yjs:2", None)
    assert (document.state, document.rev) == (state, rev)
    assert str(document.text) == "👍🏽中" + text
    before = typed.get_state()
    typed.get("text", type=Text).insert(0, "\r\n")
    assert document.apply_update(typed.get_update(before), "yjs:3", None) is not None
    assert str(document.text) == "\r\n👍🏽中" + text


def test_every_update_that_may_wait_whole_integrates_fully_in_pycrdt() -> None:
    """The premise of waiting whole: an update the checks accept, of text and deletions with
    no item naming its parent by ID, is one pycrdt integrates whole (nothing left pending,
    nothing refused). Tried on two writers' honest updates with bytes flipped at random,
    merged with forged re-sends of known clocks, and with items under any known item."""
    rng = random.Random(19)
    may_wait = 0
    for _ in range(2500):
        a, b = Doc(client_id=rng.randrange(1, 999)), Doc(client_id=rng.randrange(1000, 1999))
        for doc in (a, b):
            doc.get("text", type=Text)
        for _ in range(rng.randrange(1, 12)):
            _type_one_edit(rng, a, b)
        server = Doc()
        server.apply_update(a.get_update())
        before = a.get_state()
        for _ in range(rng.randrange(1, 8)):
            _type_one_edit(rng, a, b)
        update = _hostile_variant(rng, a.get_update(before), server)
        known = decode_state_vector(server.get_state())
        surrogates = SurrogateIndex()
        surrogates.add(server.get_update())
        try:
            summary, problem = check_update(update, known, surrogates)
        except UpdateFormatError:
            continue
        if problem is not None or summary.nested or not summary.refs <= {STRING, DELETED}:
            continue
        may_wait += 1
        apply_update(server, update)  # raises InvalidUpdateError if pycrdt refuses it
        after = decode_state_vector(server.get_state())
        assert all(after.get(client, 0) >= end for client, end in summary.ends.items())
    assert may_wait > 200


def _hostile_variant(rng: random.Random, honest: bytes, server: Doc) -> bytes:
    """`honest` with a few bytes flipped, merged with a forged re-send of known clocks, or
    merged with an item under a known item (named by ID)."""
    clocks = decode_state_vector(server.get_state())
    client = rng.choice(sorted(clocks))
    roll = rng.random()
    if roll < 0.5:
        data = bytearray(honest)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if roll < 0.8:
        text = "😀z中" * rng.randrange(1, 3)
        forged = string_at(client, rng.randrange(clocks[client]), text)
    else:
        forged = string_item_under(3001, (client, rng.randrange(clocks[client])), "x😀")
    return merge_updates(honest, forged)


def string_at(client: int, clock: int, text: str) -> bytes:
    """One string item of `client` at `clock` in the root text (no origin)."""
    content = text.encode()
    head = b"\x01\x01" + write_var_uint(client) + write_var_uint(clock)
    item = bytes([STRING]) + b"\x01" + write_var_uint(4) + b"text"
    return head + item + write_var_uint(len(content)) + content + b"\x00"
