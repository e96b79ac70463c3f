"""Accepted Yjs updates that wait to be integrated into pycrdt: one lane per writer.

Yrs merges a client's new item into the run of items it continues (``try_squash``) and
recounts the merged string's UTF-16 length from its start. So a writer appending to its own
text pays, per transaction, for everything it wrote before: 0.02 ms per 2 KB append at
1 MB, 0.5 ms at 16 MB (19 writers), on the event loop. Integrated a lane at a time, a
writer's appends pay that count once per lane, not once per append.

Nothing the server must answer at once needs pycrdt: the checks, the state vector, the
log, the relay and the kept sync answers work on the updates themselves. Whatever reads the
pycrdt document (a diff for a peer, the text, a text op, the delete set) integrates every
lane first (`collab.session.document.Document.doc`).

An update waits only when integrating it later, with its lane, means what integrating it now
would: every struct is an item of one client holding text or a deletion, in the shared text
or after an item, and all it refers to of other clients (origins, parent, deleted ranges)
is integrated already. Its lane then depends on nothing that waits elsewhere, so lanes can be
integrated one at a time in any order, each in its own order.

An update that may not take a lane (several writers, a paste bigger than a lane: a 500 KB
upload as one sync step 2) may still wait *whole*, so that pycrdt's apply (7 ms for 500 KB)
comes after the update is logged and relayed, not before: when it holds only text and
deletions and no item names its parent item by ID, the checks settle everything pycrdt
could refuse (an ID may name an item that is not a type: only pycrdt knows). It is
integrated after every lane (it may refer to their items) and before anything else may
wait; the runner integrates it once the batch is sent (`settle`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pycrdt import Doc

from collab.yjs.checks import Summary
from collab.yjs.crdt import InvalidUpdateError, apply_update
from collab.yjs.deletes import delete_set_at
from collab.yjs.fuse import fused
from collab.yjs.protocol import read_var_uint
from collab.yjs.update import DELETED, STRING

log = logging.getLogger(__name__)

LANE_BYTES = 64 * 1024
"""A lane is integrated when it holds this many bytes: one run merge for 32 appends of 2 KB."""
WAITING_BYTES = 1024 * 1024
"""All lanes together: past it, the fullest lane is integrated."""
_TEXT_REFS = frozenset((STRING, DELETED))


def integrates_later(summary: Summary) -> bool:
    """Whether the checks settled everything pycrdt could refuse of an accepted update, so
    that it may reach pycrdt later, or never (the module's docstring): text and deletions,
    no item naming its parent item by ID."""
    return not summary.nested and summary.refs <= _TEXT_REFS


class Lanes:
    """Updates accepted but not integrated, per writing client, in order."""

    def __init__(self, text_name: str) -> None:
        self.text_name = text_name
        self._lanes: dict[int, list[bytes]] = {}
        self._bytes: dict[int, int] = {}
        self._starts: dict[int, int] = {}  # client -> its first clock that waits
        self._whole: bytes | None = None  # an update that waits whole, after every lane
        self.waiting = 0  # bytes in all lanes

    def wait(self, doc: Doc, update: bytes, summary: Summary, known: Mapping[int, int]) -> bool:
        """Let an accepted `update` wait in its writer's lane, if it may (see the module's
        docstring); False when it must be integrated now. `known` is the document's state
        vector before it. A lane that is full then (this one, or the fullest past
        `WAITING_BYTES`) is integrated into `doc`. One that may not take a lane may wait
        whole (see the module's docstring)."""
        self.settle(doc)  # nothing waits after a whole update
        client = self._writer(update, summary, known)
        if client is None:
            if not integrates_later(summary):
                return False
            self._whole = update
            return True
        lane = self._lanes.setdefault(client, [])
        if not lane:
            self._starts[client] = known.get(client, 0)
        lane.append(update)
        self._bytes[client] = self._bytes.get(client, 0) + len(update)
        self.waiting += len(update)
        if self._bytes[client] >= LANE_BYTES:
            _integrate(doc, self._take(client))
        elif self.waiting > WAITING_BYTES:
            _integrate(doc, self._take(max(self._bytes, key=self._bytes.__getitem__)))
        return True

    def integrate(self, doc: Doc) -> None:
        """Integrate every lane, then the update that waits whole, into `doc` (one
        transaction)."""
        if self._lanes or self._whole is not None:
            _integrate(doc, self.drop())

    def settle(self, doc: Doc) -> None:
        """Integrate everything if an update waits whole (lanes may go on waiting)."""
        if self._whole is not None:
            self.integrate(doc)

    def drop(self) -> list[bytes]:
        """Every lane's updates, each lane in order, then the whole one; nothing is left."""
        updates = [update for lane in self._lanes.values() for update in lane]
        if self._whole is not None:
            updates.append(self._whole)
        self._lanes, self._bytes, self._starts, self.waiting = {}, {}, {}, 0
        self._whole = None
        return updates

    def _take(self, client: int) -> list[bytes]:
        self.waiting -= self._bytes.pop(client)
        del self._starts[client]
        return self._lanes.pop(client)

    def _writer(self, update: bytes, summary: Summary, known: Mapping[int, int]) -> int | None:
        """The update's one client, if the update may wait."""
        if len(summary.ends) != 1 or not summary.refs <= _TEXT_REFS or len(update) > LANE_BYTES:
            return None
        (client,) = summary.ends
        try:
            refers = _refers_to(update, self.text_name.encode())
        except (IndexError, ValueError):  # ValueError: read_var_uint's ProtocolError
            return None
        if refers is None:
            return None
        for other, end in refers.items():
            if other != client and end > self._integrated(other, known):
                return None  # it refers to an item that waits in another lane
        return client

    def _integrated(self, client: int, known: Mapping[int, int]) -> int:
        """The first clock of `client` that pycrdt lacks."""
        return self._starts.get(client, known.get(client, 0))


def _integrate(doc: Doc, updates: list[bytes]) -> None:
    """Integrate updates that waited, in one transaction (one run merge per writer).

    They were checked, logged and relayed: pycrdt takes every such update (that is what
    the checks are for). Should it refuse one, that is logged, and the others go in.
    """
    with doc.transaction():
        for update in fused(updates):
            try:
                apply_update(doc, update)
            except InvalidUpdateError as error:
                log.error("an accepted update did not integrate: %s", error)


def _refers_to(update: bytes, text_name: bytes) -> dict[int, int] | None:
    """Client -> the end of the clocks an update of one client refers to (origins,
    deletions); None unless each of its structs is an item of text or a deletion placed
    after or before another item, or at the start of the shared text.

    A few varUints per struct, the content skipped: the update was checked already, so this
    only reads its shape (the full decoder costs ~1.5 ms for 2 KB of emoji).
    """
    refers: dict[int, int] = {}
    groups, pos = read_var_uint(update, 0)
    if groups != 1:
        return None
    n, pos = read_var_uint(update, pos)
    _, pos = read_var_uint(update, pos)  # the client, the one of `Summary.ends`
    _, pos = read_var_uint(update, pos)  # the first clock
    for _ in range(n):
        info = update[pos]
        pos += 1
        if info & 0x1F not in _TEXT_REFS or info & 0x20:  # other content, or a map key
            return None
        for _ in range((info >> 7) + (info >> 6 & 1)):  # origin, right origin
            other, pos = read_var_uint(update, pos)
            clock, pos = read_var_uint(update, pos)
            refers[other] = max(refers.get(other, 0), clock + 1)
        if not info & 0xC0:  # no origin: its parent is named, and must be the shared text
            kind, pos = read_var_uint(update, pos)
            length, pos = read_var_uint(update, pos)
            if kind != 1 or update[pos : pos + length] != text_name:
                return None
            pos += length
        length, pos = read_var_uint(update, pos)  # string bytes, or deleted clocks
        if info & 0x1F == STRING:
            pos += length
    deletes, pos = delete_set_at(update, pos)
    for other, clock, length in deletes:
        refers[other] = max(refers.get(other, 0), clock + length)
    return refers if pos == len(update) else None
