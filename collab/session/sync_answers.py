"""The answers to Yjs peers' sync step 1: what a peer lacks, encoded once per batch.

Peers that join together (most send the empty state vector) share one encode of the
document. A peer of a big document that lacks much of it (a new one, one that comes back
from far behind, one resynced after its queue overflowed) gets it as it is already kept
encoded, never encoded on the event loop (~4 ms a MB, and pycrdt slicing a big item to
start a diff inside it costs as much): the snapshot as a sync update, the updates logged
since, in order, a message per run of them (`collab.session.kept`: small updates merged),
then an empty step 2 (the client is synced when it has everything; what it had already,
Yjs and Yrs skip). Each message can be applied as it arrives: a client that got the logged
updates before the snapshot would have to keep them pending, and Yrs (pycrdt 0.14) loses
such pending updates when the peer already held part of the document
(`tests/test_big_sync.py`). That answer is a `KeptAnswer`, sent part by part as the peer
takes them, whatever the length of the log: its bytes are the document's own (kept anyway,
each run framed, or merged, only when its turn comes), so the peer's queue limit counts
only what queues behind it (`collab.hub.channel.PeerChannel`). No copy of a big update is
kept past its batch. A detached document (no pycrdt to make a diff with) answers a peer
that holds all of its snapshot with its deletions and the runs the peer lacks items of.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import chain

from collab.access.limits import TokenBucket
from collab.session.document import Document
from collab.session.kept import KEPT_FROM, Clocks, Run
from collab.session.peers import Peer
from collab.session.revision import ChangeRefused
from collab.wire import ErrorCode
from collab.yjs import protocol
from collab.yjs.update import UpdateFormatError, decode_state_vector

EMPTY_STATE_VECTOR = b"\x00"  # a new peer's sync step 1: it has nothing
SYNCED = protocol.encode_sync_step2(b"\x00\x00")  # a step 2 of the empty update
KEPT_FROM_LACKING = 16 * 1024
"""Clocks (UTF-16 units, deletions) a peer must lack for the kept answer: below it, the
diff pycrdt encodes is small and quick."""
SKIP_BUDGET = 0.001
"""Seconds a part of a catch-up answer may spend reading runs the peer may hold."""
SYNC_ASKS_BURST = 10
SYNC_ASKS_PER_SECOND = 1.0
"""A peer's own sync step 1s on a big document: an honest client sends one per connection
(y-websocket's `resyncInterval`, one every few seconds). Each may cost a diff pycrdt encodes
on the loop, and its cost is the length of the item the diff starts inside (~11 ms one clock
short of a 16 MiB pasted text), not what the peer lacks."""


class KeptAnswer:
    """`first` (the snapshot as kept, or a detached document's deletions), then each run
    of the updates logged since (one message each, made as its turn comes; with `theirs`,
    a peer's state vector, not the runs it holds: `_lacked`), then `SYNCED`: one message
    to the session's driver, sent part by part."""

    __slots__ = ("_parts", "size")

    def __init__(self, first: bytes, runs: list[Run], theirs: Clocks | None = None) -> None:
        if theirs is None:
            framed: Iterator[bytes] = (m for run in runs for m in run.messages())
        else:
            framed = _lacked(runs, theirs)
        head = (first,) if first else ()  # no snapshot yet (a small detached document)
        self._parts: Iterator[bytes] = chain(head, framed, (SYNCED,))
        self.size = len(first) + sum(run.bytes for run in runs) + len(SYNCED)  # about

    def __iter__(self) -> Iterator[bytes]:
        """The parts not sent yet (each once)."""
        return self._parts


def _lacked(runs: list[Run], theirs: Clocks) -> Iterator[bytes]:
    """The messages of the runs a peer with the state vector `theirs` lacks items of. A
    run not read yet is read (once: `Run.held_by`) only while the part being made has
    taken less than `SKIP_BUDGET`; past it the run is sent (the peer skips what it holds),
    so a peer back to a log of 64 MiB it holds costs the loop ~1 ms a part, not ~40 ms."""
    started = time.perf_counter()
    for run in runs:
        if run.held_by(theirs, scan=time.perf_counter() - started < SKIP_BUDGET):
            continue
        for message in run.messages():
            yield message
            started = time.perf_counter()  # the next part


class SyncAnswers:
    """One document's sync step 2 answers, cached for the batch they are made in."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self._step2: tuple[int, bytes, bytes] | None = None  # (rev, state vector, message)

    def answer_peer(self, peer: Peer, state_vector: bytes) -> list[bytes | KeptAnswer]:
        """`answer`, to a peer's own sync step 1: `ChangeRefused` past its budget, which
        counts only on a big document (a small one's diffs cost well under a millisecond,
        whatever a Hocuspocus provider's `forceSyncInterval`)."""
        if self.document.state_bytes < KEPT_FROM:
            return self.answer(state_vector)
        if peer.sync_asks is None:
            peer.sync_asks = TokenBucket(SYNC_ASKS_PER_SECOND, SYNC_ASKS_BURST)
        if not peer.sync_asks.take():
            why = f"sync step 1 sent too often ({SYNC_ASKS_BURST} at once, then 1 a second)"
            raise ChangeRefused(ErrorCode.BAD_MESSAGE, why)
        return self.answer(state_vector)

    def answer(self, state_vector: bytes) -> list[bytes | KeptAnswer]:
        """The messages that bring a peer with `state_vector` up to date; raises
        `ChangeRefused` for a state vector that cannot be read."""
        rev = self.document.rev
        cached = self._step2
        if cached is not None and cached[0] == rev and cached[1] == state_vector:
            return [cached[2]]
        kept, detached = self.document.kept, self.document.detached
        if kept.base_size >= KEPT_FROM or detached:
            theirs = _read(state_vector)
            if detached and state_vector != EMPTY_STATE_VECTOR:  # no pycrdt to diff with
                return [self._catch_up(theirs)]
            if state_vector == EMPTY_STATE_VECTOR or self._lacks_much(theirs):
                return [KeptAnswer(kept.base_message, kept.runs())]  # the base framed once
        try:
            update = self.document.doc.get_update(state_vector)
        except Exception:
            raise ChangeRefused(
                ErrorCode.BAD_MESSAGE, "invalid state vector in sync step 1"
            ) from None
        message = protocol.encode_sync_step2(update)
        self._step2 = (rev, bytes(state_vector), message)
        return [message]

    def _catch_up(self, theirs: dict[int, int] | None) -> KeptAnswer:
        """A detached document's answer to a peer that holds something: when it holds all
        of the base (a peer coming back, however far behind in the log), the document's
        deletions then the runs of updates logged since that hold items it lacks (whatever
        else it lacks is in them); else all that is kept."""
        if theirs is None:
            raise ChangeRefused(ErrorCode.BAD_MESSAGE, "invalid state vector in sync step 1")
        kept, deleted = self.document.kept, self.document.deleted
        base = kept.base_clocks
        if base is None or deleted is None or any(theirs.get(c, 0) < e for c, e in base.items()):
            return KeptAnswer(kept.base_message, kept.runs())
        deletions = protocol.encode_sync_update(deleted.as_update())
        return KeptAnswer(deletions, kept.runs(), theirs)

    def _lacks_much(self, theirs: dict[int, int] | None) -> bool:
        """Whether a peer with the state vector `theirs` lacks `KEPT_FROM_LACKING` clocks or
        more (summed over clients); False when its state vector could not be read."""
        if theirs is None:
            return False
        ours = self.document.state_vector()
        return sum(max(0, end - theirs.get(c, 0)) for c, end in ours.items()) >= KEPT_FROM_LACKING

    def batch_ended(self) -> None:
        """The batch's output was taken: its copies of the document go."""
        self._step2 = None


def _read(state_vector: bytes) -> dict[int, int] | None:
    """A peer's state vector, decoded; None when it cannot be read."""
    try:
        return decode_state_vector(state_vector)
    except UpdateFormatError:
        return None
