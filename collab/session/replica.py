"""A document's pycrdt document, kept only while something needs it.

pycrdt holds the GIL for each call, and on a big text its calls cost what the text holds:
a writer continuing its own long run makes Yrs recount the merged string (~40 ms per
append at 64 MiB, even of one character), an insert inside a long item copies it (~90 ms),
loading a 64 MiB snapshot takes ~110-160 ms. On the event loop every document shares, that
is a stall for all of them.

Nothing a Yjs peer needs at once requires pycrdt: the checks, the state vector, the log,
the relay and the sync answers (the kept snapshot and the updates since) work on the
updates themselves (`collab.session.lanes` already lets updates wait). So a big document
that no text peer follows, and whose updates so far are all text the checks settle
(`integrates_later`), is **detached**: it keeps no pycrdt document at all. Its deletions
are kept beside it (`collab.yjs.deletes`: a peer re-sending them changes nothing), and its
memory is what the log holds (`collab.session.kept`), not the CRDT on top.

A reader that needs pycrdt (a text peer, the text or the state over HTTP below
`--text-worker-bytes`, a server edit, an update of other content) rebuilds it from what is
kept: one cost, on the loop, logged, and the document stays attached while that reader
needs it. (Past `--text-worker-bytes`, HTTP's text and state come from a worker process
that reads the store: `collab.replay.worker_texts`.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from time import perf_counter

from pycrdt import Doc, Text

from collab.session.kept import KeptLog
from collab.session.lanes import Lanes
from collab.yjs.crdt import InvalidUpdateError, apply_update
from collab.yjs.deletes import DeleteSet, read_delete_set, unknown_deletes
from collab.yjs.fuse import fused
from collab.yjs.scan import Summary

log = logging.getLogger(__name__)

REBUILD_SHARE = 0.02
"""At most this share of the time goes to rebuilds: a rebuilt document may detach again
only once the time since its rebuild is the rebuild's cost over this (~7 s at 64 MiB), so
a reader that comes back again and again (a text peer joining and leaving, a poll of the
text) does not rebuild it each time."""


class Replica:
    """The pycrdt document of what `kept` holds, with the updates that wait for it."""

    def __init__(self, text_name: str, kept: KeptLog, client_id: int | None) -> None:
        self.text_name = text_name
        self._kept = kept
        self.lanes = Lanes(text_name)  # Yjs writers' appends waiting for pycrdt
        self._doc: Doc | None = Doc(client_id=client_id)  # None: detached
        self.client_id: int = self._doc.client_id
        self._text: Text | None = self._doc.get(text_name, type=Text)  # holds the document
        self._deleted: DeleteSet | None = None  # while detached: what the document deleted
        self._attached_until = 0.0  # perf_counter() before which it may not detach again

    @property
    def detached(self) -> bool:
        return self._doc is None

    @property
    def deleted(self) -> DeleteSet | None:
        """While detached, what the document deleted."""
        return self._deleted

    @property
    def doc(self) -> Doc:
        """The pycrdt document, every accepted update integrated; rebuilt if detached."""
        doc = self._attached()
        self.lanes.integrate(doc)
        return doc

    @property
    def text(self) -> Text:
        """The shared text of `doc` (rebuilt if detached, every update integrated)."""
        self.lanes.integrate(self._attached())
        assert self._text is not None
        return self._text

    def wait(self, update: bytes, summary: Summary, known: Mapping[int, int]) -> bool:
        """`Lanes.wait` (rebuilt first if detached)."""
        return self.lanes.wait(self._attached(), update, summary, known)

    def settle(self) -> None:
        """`Lanes.settle`, when attached."""
        if self._doc is not None:
            self.lanes.settle(self._doc)

    @property
    def may_detach(self) -> bool:
        """Whether the last rebuild is paid back (`REBUILD_SHARE`)."""
        return perf_counter() >= self._attached_until

    def detach(self, deleted: DeleteSet | None = None) -> None:
        """Drop the pycrdt document (what waits in lanes is kept: a rebuild integrates it).
        `deleted`: what the document deleted, if known; else read from pycrdt."""
        if deleted is None:
            deleted = DeleteSet()
            if self._doc is not None:
                deleted.add(read_delete_set(self._doc.get_update(self._doc.get_state()), 1))
        self.lanes.drop()
        self._doc, self._text, self._deleted = None, None, deleted

    def take(self, update: bytes, summary: Summary, adds_items: bool) -> bool:
        """While detached, a checked `update` (`integrates_later`) that reaches no pycrdt:
        its deletions are remembered. False when it changes nothing (no new items, and it
        deletes only what was deleted)."""
        assert self._deleted is not None
        unknown = unknown_deletes(self._deleted, update, summary)
        if not adds_items and not unknown:
            return False
        self._deleted.add(unknown)  # what it covers already adds nothing
        return True

    def rebuild(self) -> None:
        """A new pycrdt document of the kept base and the updates logged since, each
        writer's chain of appends fused (`collab.yjs.fuse`: one run merge per chain, not one
        per update); nothing waits any more."""
        self.lanes.drop()
        self._doc = doc = Doc(client_id=self.client_id)
        self._text = doc.get(self.text_name, type=Text)
        with doc.transaction():
            if self._kept.base_size:
                doc.apply_update(self._kept.base())
            for update in fused(self._kept.updates()):
                try:  # each was checked, logged and relayed: pycrdt takes them all
                    apply_update(doc, update)
                except InvalidUpdateError as error:  # never expected: the others go in
                    log.error("a logged update did not integrate at a rebuild: %s", error)
        self._deleted = None

    def _attached(self) -> Doc:
        if self._doc is None:
            started = perf_counter()
            self.rebuild()
            now = perf_counter()
            elapsed = now - started
            self._attached_until = now + elapsed / REBUILD_SHARE
            log.info("a reader needed the pycrdt document: rebuilt in %.0f ms", elapsed * 1000)
        assert self._doc is not None
        return self._doc
