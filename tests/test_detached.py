"""A big document that no text peer follows keeps no pycrdt document (issue 19).

`collab.session.replica`: from `--detach-from-bytes` such a document's Yjs text updates are
checked, logged and relayed without pycrdt, so pycrdt's costs on a big text (a writer
continuing its own long run: ~40 ms an append at 64 MiB) never reach the event loop. What
it answers must be what an attached document answers: the same revisions (none for a peer
re-sending what is known), the same refusals, the same state vector, and, once a reader
rebuilds pycrdt, the same text.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from pycrdt import Doc, Map, Text, merge_updates
from test_lanes import PIECES, append_update, hear_relayed, random_edit

from collab.config import Settings
from collab.hub.loading import open_session
from collab.session import kept as kept_module
from collab.session import replica, sync_answers
from collab.session.document import Document
from collab.session.kept import KeptLog
from collab.session.revision import ChangeRefused
from collab.session.sync_answers import KeptAnswer, SyncAnswers
from collab.storage.contract import Record, StoredDocument
from collab.yjs import protocol
from collab.yjs.checks import walk_stored
from collab.yjs.deletes import DeleteSet, read_delete_set
from collab.yjs.protocol import write_var_uint
from collab.yjs.update import decode_state_vector

DETACHED = Settings(detach_from_bytes=1)
ATTACHED = Settings(detach_from_bytes=0)


def writers(count: int) -> list[Doc]:
    docs = [Doc(client_id=200 + i) for i in range(count)]
    for doc in docs:
        doc.get("text", type=Text)
    return docs


@pytest.mark.parametrize("seed", range(10))
def test_a_detached_document_answers_as_an_attached_one(seed: int) -> None:
    """Writers that see each other late, mixed uploads, and peers coming back with their
    whole delete set: each update makes a revision in both documents or in neither; the
    state vectors agree; the detached one never builds pycrdt until its text is read, and
    then holds exactly the attached one's text."""
    rng = random.Random(seed)
    detached, attached = Document(DETACHED, track_text=False), Document(ATTACHED, track_text=False)
    docs = writers(3)
    sent: list[list[bytes]] = [[] for _ in docs]  # each transaction's update, as Yjs sends
    for doc, out in zip(docs, sent, strict=True):
        doc.observe(lambda event, out=out: out.append(event.update))
    log: list[bytes] = []
    seen = [0] * len(docs)
    for step in range(250):
        i = rng.randrange(len(docs))
        writer = docs[i]
        if rng.random() < 0.3:
            hear_relayed(writer, log, seen, i)
            sent[i].clear()  # what it heard is not its own to send
        if rng.random() < 0.15:  # it comes back: its sync step 2 against the server's state
            update = writer.get_update(detached.encoded_state_vector())
        else:
            random_edit(rng, writer)
            update = sent[i].pop()
            if rng.random() < 0.1:  # another writer's edit in the same message
                other = (i + 1) % len(docs)
                random_edit(rng, docs[other])
                update = merge_updates(update, sent[other].pop())
        outcomes = [outcome(document, update) for document in (detached, attached)]
        assert outcomes[0] == outcomes[1], (seed, step)
        if outcomes[0] == "revision":
            log.append(update)
        assert detached.state_vector() == attached.state_vector()
        assert detached.detached or detached.rev == 0  # from its first revision on
    assert detached.rev == attached.rev
    assert detached.mirror == attached.mirror  # the rebuild: the text is the same
    assert not detached.detached


def outcome(document: Document, update: bytes) -> str:
    """What `apply_update` made of `update`: a revision, nothing, or a refusal (its code)."""
    try:
        committed = document.apply_update(update, "yjs:x", None)
    except ChangeRefused as refused:
        return f"refused {refused.code}"
    return "nothing" if committed is None else "revision"


def test_a_deletion_already_known_makes_no_revision_and_a_new_one_does() -> None:
    document = Document(DETACHED, track_text=False)
    (writer,) = writers(1)
    text = writer.get("text", type=Text)
    text += "👩‍👩‍👧 中文 e\u0301\r\n🇫🇷 end"
    assert document.apply_update(writer.get_update(), "yjs:a", None) is not None
    before = writer.get_state()
    del text[0 : len("👩‍👩‍👧".encode())]
    deletion = writer.get_update(before)
    assert document.apply_update(deletion, "yjs:a", None) is not None
    assert document.detached
    # The same peer back with everything: the server's state vector is its own.
    again = writer.get_update(document.encoded_state_vector())
    assert document.apply_update(again, "yjs:a", None) is None
    assert document.apply_update(deletion, "yjs:a", None) is None
    before = writer.get_state()
    del text[0:1]
    assert document.apply_update(writer.get_update(before), "yjs:a", None) is not None
    assert document.mirror == str(text)


def test_an_update_only_pycrdt_checks_attaches_the_document_for_good() -> None:
    document = Document(DETACHED, track_text=False)
    (writer,) = writers(1)
    writer.get("text", type=Text).insert(0, "中文😀")
    assert document.apply_update(writer.get_update(), "yjs:a", None) is not None
    assert document.detached
    before = writer.get_state()
    writer.get("meta", type=Map)["title"] = "e\u0301"
    assert document.apply_update(writer.get_update(before), "yjs:a", None) is not None
    assert not document.detached
    before = writer.get_state()
    writer.get("text", type=Text).insert(0, "\r\n")
    assert document.apply_update(writer.get_update(before), "yjs:a", None) is not None
    assert not document.detached  # it stays: what pycrdt alone checks may come again
    assert document.mirror == "\r\n中文😀"


def test_a_text_peer_attaches_and_its_leaving_detaches(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]

    def clock() -> float:  # each reading 10 ms later: a rebuild costs that
        now[0] += 0.01
        return now[0]

    monkeypatch.setattr(replica, "perf_counter", clock)
    document = Document(DETACHED, track_text=False)
    client, clock = 77, 0
    for piece in PIECES:
        assert document.apply_update(append_update(client, clock, piece), "yjs:a", None)
        clock += len(piece.encode("utf-16-le")) // 2
    assert document.detached
    document.track_text(True)
    assert not document.detached
    assert document.mirror == "".join(PIECES)
    committed = document.apply_op(["✍️", len("".join(PIECES))], "ot:ada", None)
    assert committed is not None
    document.track_text(False)
    assert not document.detached  # rebuilt a moment ago: it may be needed again at once
    now[0] += 1.0  # once the rebuild is paid back (`REBUILD_SHARE`), the next edit detaches
    assert document.apply_update(append_update(client, clock, "🇫🇷"), "yjs:a", None)
    assert document.detached
    assert document.mirror == "✍️" + "".join(PIECES) + "🇫🇷"


def test_what_a_detached_document_refuses_is_what_an_attached_one_refuses() -> None:
    """A split surrogate pair, an item depending on an unknown one: refused, nothing kept."""
    document = Document(DETACHED, track_text=False)
    assert document.apply_update(append_update(5, 0, "a😀"), "yjs:a", None)
    assert document.detached
    rev, vector = document.rev, dict(document.state_vector())
    for hostile in (append_update(5, 2, "x"), append_update(6, 9, "y")):
        with pytest.raises(ChangeRefused):
            document.apply_update(hostile, "yjs:b", None)
    assert (document.rev, document.state_vector()) == (rev, vector)
    assert document.mirror == "a😀"


def test_committed_records_of_another_process_are_taken_while_detached() -> None:
    document = Document(DETACHED, track_text=False)
    document.apply_update(append_update(5, 0, "中"), "yjs:a", None)
    document.apply_committed(Record(2, 0.0, "yjs:b", None, append_update(5, 1, "文😀")))
    assert document.detached and document.rev == 2
    assert document.mirror == "中文😀"


def item_after(client: int, origin: tuple[int, int], text: str) -> bytes:
    """`client`'s first item, of `text`, right after the item `origin`."""
    content = text.encode()
    head = b"\x01\x01" + write_var_uint(client) + b"\x00"
    item = b"\x84" + write_var_uint(origin[0]) + write_var_uint(origin[1])
    return head + item + write_var_uint(len(content)) + content + b"\x00"


async def test_a_big_document_is_loaded_detached_with_what_its_bytes_say() -> None:
    """Loaded through the hub's loader: no pycrdt document is built; the state vector, the
    deletions and the surrogate pairs come from the stored bytes' walk."""
    (writer,) = writers(1)
    text = writer.get("text", type=Text)
    line = "👍🏽 中文 e\u0301\r\n"  # 12 UTF-16 units
    text += line * 50
    del text[0 : len("👍🏽 ".encode())]
    snapshot = writer.get_update()
    before = writer.get_state()
    text += "🇫🇷"
    record = Record(2, 0.0, "yjs:a", None, writer.get_update(before))
    stored = StoredDocument(snapshot, 1, [record], len(record.update))
    session = await open_session("big", DETACHED, stored, track_text=False)
    document = session.document
    assert document.detached
    assert document.state_vector() == decode_state_vector(writer.get_state())
    # The writer back with everything, its deletion included: nothing new.
    assert document.apply_update(writer.get_update(b"\x00"), "yjs:a", None) is None
    with pytest.raises(ChangeRefused):  # between the halves of the second line's 👍
        document.apply_update(item_after(9, (writer.client_id, 12), "x"), "yjs:b", None)
    assert document.apply_update(item_after(9, (writer.client_id, 13), "x"), "yjs:b", None)
    assert document.detached
    assert document.mirror == str(text)[:8] + "x" + str(text)[8:]  # 中文 é\r\n👍x🏽


def test_the_walk_of_stored_bytes_finds_their_deletions() -> None:
    (writer,) = writers(1)
    text = writer.get("text", type=Text)
    text += "abc😀中文"
    del text[1:2]
    state = writer.get_update()
    walked = walk_stored(state)
    expected = DeleteSet()
    expected.add(read_delete_set(writer.get_update(writer.get_state()), 1))
    assert walked.deletes.covers(read_delete_set(writer.get_update(writer.get_state()), 1))
    assert len(walked.deletes) == len(expected) == 1


def answer_parts(document: Document, state_vector: bytes) -> list[bytes]:
    """What a peer with `state_vector` is sent, each message as it arrives."""
    (answer,) = SyncAnswers(document).answer(state_vector)
    assert isinstance(answer, KeptAnswer)
    return list(answer)


def apply_messages(doc: Doc, messages: list[bytes]) -> None:
    for data in messages:
        message = protocol.decode(data)
        if isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
            doc.apply_update(message.update)


def test_a_peer_coming_back_gets_the_deletions_and_the_log_not_the_whole_document() -> None:
    """Deletions made while it was away before the compaction (in the base's delete set
    only) and after it, inserts after it: all reach it, and the base is not sent again. A
    peer that lacks part of the base gets all that is kept."""
    document = Document(DETACHED, track_text=False)
    (writer,) = writers(1)
    text = writer.get("text", type=Text)

    sent: list[bytes] = []  # as a Yjs client sends them: each transaction's own update
    writer.observe(lambda event: sent.append(event.update))

    def edit(change: Callable[[], None]) -> None:
        change()
        assert document.apply_update(sent.pop(), "yjs:w", None) is not None

    edit(lambda: text.insert(0, "👩‍👩‍👧 中文 e\u0301\r\n🇫🇷 " * 200))
    lacking = Doc()  # a peer that leaves now: it lacks the last part of the base
    lacking.apply_update(writer.get_update())
    edit(lambda: text.insert(len(str(text).encode()), "🇫🇷 tail"))
    away = Doc()  # a peer that leaves now: it holds all the base but its deletion
    away.apply_update(writer.get_update())
    edit(lambda: text.__delitem__(slice(0, len("👩‍👩‍👧 ".encode()))))
    document.compacted(document.rev, writer.get_update(), None, dict(document.state_vector()))
    edit(lambda: text.insert(0, "après 😀"))
    edit(lambda: text.__delitem__(slice(len("après 😀".encode()), len("après 😀中".encode()))))
    assert document.detached
    parts = answer_parts(document, away.get_state())
    assert sum(map(len, parts)) < document.kept.base_size  # not the whole document
    apply_messages(away, parts)
    assert str(away.get("text", type=Text)) == str(text)
    parts = answer_parts(document, lacking.get_state())
    assert parts[0] == document.kept.base_message
    apply_messages(lacking, parts)
    assert str(lacking.get("text", type=Text)) == str(text)


def test_a_state_vector_that_cannot_be_read_is_refused_while_detached() -> None:
    document = Document(DETACHED, track_text=False)
    assert document.apply_update(append_update(5, 0, "中文😀"), "yjs:a", None)
    assert document.detached
    with pytest.raises(ChangeRefused):
        SyncAnswers(document).answer(b"\x05\xff")  # five entries announced, none there
    assert answer_parts(document, b"\x00")  # an empty one is still answered


@pytest.mark.parametrize("seed", range(12))
def test_peers_holding_any_part_of_the_log_end_with_the_text_from_its_runs(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writers that see each other late; logged updates merged in short runs (and some
    updates big enough to go alone); compactions at revisions inside a run: a new peer, and
    peers holding the document as it was at any revision (all of the base or not), end with
    exactly the text from what they are sent (the catch-up answer when they hold all of the
    base, else all that is kept)."""
    monkeypatch.setattr(kept_module, "RUN_UPDATES", 5)
    monkeypatch.setattr(kept_module, "SMALL_UPDATE", 400)
    monkeypatch.setattr(kept_module, "RUN_BYTES", 1200)
    rng = random.Random(seed)
    document = Document(DETACHED, track_text=False)
    docs = writers(3)
    sent: list[list[bytes]] = [[] for _ in docs]
    for doc, out in zip(docs, sent, strict=True):
        doc.observe(lambda event, out=out: out.append(event.update))
    reference = Doc()
    states = [reference.get_update()]  # the document at each revision
    seen = [0] * len(docs)
    for _ in range(200):
        i = rng.randrange(len(docs))
        if rng.random() < 0.3:  # it hears what the server relayed since
            for state in states[seen[i] + 1 :]:
                docs[i].apply_update(state)
            seen[i] = len(states) - 1
            sent[i].clear()
        random_edit(rng, docs[i])
        update = sent[i].pop()
        if document.apply_update(update, "yjs:w", None) is None:
            continue
        reference.apply_update(update)
        states.append(reference.get_update())
        if rng.random() < 0.1:  # a new peer now: the last run merged, and kept
            joiner = Doc()
            apply_messages(joiner, answer_parts(document, b"\x00"))
            assert str(joiner.get("text", type=Text)) == str(reference.get("text", type=Text))
            assert joiner.get_state() == reference.get_state()
        if rng.random() < 0.05:  # a compaction of a revision a little behind
            rev = rng.randrange(max(document.base_rev, document.rev - 8), document.rev + 1)
            clocks = decode_state_vector(doc_of(states[rev]).get_state())
            document.compacted(rev, states[rev], None, clocks)
    assert document.detached
    expected = str(reference.get("text", type=Text))
    for rev in [0, *rng.sample(range(1, len(states)), 12)]:
        peer = doc_of(states[rev]) if rev else Doc()
        apply_messages(peer, answer_parts(document, peer.get_state() if rev else b"\x00"))
        assert str(peer.get("text", type=Text)) == expected, (seed, rev)


def doc_of(state: bytes) -> Doc:
    doc = Doc()
    doc.apply_update(state)
    return doc


def test_a_peer_coming_back_is_sent_only_the_runs_it_lacks_items_of(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A log of 8 appends of 64 KB (a run each) then 600 typed updates (runs of 256): a peer
    that left after the 7th append and one that left after the 500th keystroke are sent
    the deletions and the runs from theirs on, not the whole log; both end with the text.
    Runs not read yet are read only within a part's budget: with none, all are sent."""
    document = Document(DETACHED, track_text=False)
    (writer,) = writers(1)
    text = writer.get("text", type=Text)
    sent: list[bytes] = []
    writer.observe(lambda event: sent.append(event.update))
    copies = {}
    for i in range(8):
        text.insert(len(text), f"<{i} 👩‍👩‍👧 中文 e\u0301\r\n🇫🇷>" * 2_000)  # len: bytes
        assert document.apply_update(sent.pop(), "yjs:w", None) is not None
        if i == 6:
            copies[f"append {i}"] = writer.get_update()
    for i in range(600):
        text.insert(len(text), "中😀e\u0301\r\n"[i % 5])
        if i == 300:
            del text[0:10]  # a deletion among them: its range is in what is sent first
        for update in sent:
            assert document.apply_update(update, "yjs:w", None) is not None
        sent.clear()
        if i in (499, 599):
            copies[f"key {i}"] = writer.get_update()
    assert document.detached and len(document.kept.runs()) == 8 + 3

    def runs_sent(left: str) -> int:
        """The runs sent to a peer that left at `left` (which then holds the text)."""
        peer = doc_of(copies[left])
        parts = answer_parts(document, peer.get_state())
        apply_messages(peer, parts)
        assert str(peer.get("text", type=Text)) == str(text), left
        return len(parts) - 2  # the deletions first, synced last

    monkeypatch.setattr(sync_answers, "SKIP_BUDGET", 0.0)
    assert runs_sent("key 599") == 11  # none read: all sent
    monkeypatch.setattr(sync_answers, "SKIP_BUDGET", 60.0)
    assert runs_sent("append 6") == 1 + 3
    assert runs_sent("key 499") == 2
    assert runs_sent("key 599") == 0
    monkeypatch.setattr(sync_answers, "SKIP_BUDGET", 0.0)
    assert runs_sent("key 599") == 0  # once read, known for good


def test_a_run_pycrdt_cannot_merge_goes_one_update_a_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Never expected (each logged update was taken): then sent as they are, and logged."""
    kept = KeptLog()
    updates = [f"<{i} 中文 😀>".encode() for i in range(3)]  # not Yjs updates
    for rev, update in enumerate(updates, 1):
        kept.append(rev, update)
    (run,) = kept.runs()
    decoded = [protocol.decode(message) for message in run.messages()]
    assert [message.update for message in decoded] == updates  # type: ignore[union-attr]
    assert "revs 1-3 not merged" in caplog.text


def test_a_maps_key_set_beside_a_long_text_does_not_read_the_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Content other than text may put an embed in the shared text: the check read the
    whole text (`str` and its UTF-8, ~0.5 s at 64 MiB) for every such update, a map's key
    set beside it too. Now only for an update that changed the text (its events say so);
    an embed is still refused and leaves nothing."""
    document = Document(ATTACHED, track_text=False)
    writer = Doc(client_id=77)
    text, meta = writer.get("text", type=Text), writer.get("meta", type=Map)
    text.insert(0, "".join(PIECES) * 200)
    assert document.apply_update(writer.get_update(), "yjs:a", None)
    reads: list[int] = []
    monkeypatch.setattr(Text, "__str__", lambda self: reads.append(1) or "")
    for value in ("e\u0301 😀", "中文 👨‍👩‍👧\r\n"):
        before = writer.get_state()
        meta["title"] = value
        assert document.apply_update(writer.get_update(before), "yjs:a", None)
    assert reads == []
    monkeypatch.undo()
    rev, state = document.rev, document.state
    before = writer.get_state()
    text.insert(3, "x")
    text.insert_embed(5, {"image": "😀.png"})
    with pytest.raises(ChangeRefused, match="only text, not embeds"):
        document.apply_update(writer.get_update(before), "yjs:a", None)
    assert (document.rev, document.state) == (rev, state)
    assert str(document.text) == "".join(PIECES) * 200
