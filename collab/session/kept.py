"""What memory keeps of a document's log: the state it starts from and the updates since.

It is the truth the document's memory is rebuilt from (after a change failed halfway, or
when a detached document needs its pycrdt document again: `collab.session.document`) and
what a peer of a big document is sent as it is (`collab.session.sync_answers`).

The updates logged since are kept in runs, each sent to such a peer as one message: a
typing peer logs an update a keystroke, and one message each would make a new peer apply
up to --compact-log-records transactions in its editor. A run is one update of
`SMALL_UPDATE` bytes or more (a paste, an upload's append: sent as it is, never copied
into a merge), or consecutive smaller ones (up to `RUN_UPDATES` of them, `RUN_BYTES` in
all), merged by pycrdt when a peer is first sent the run, then kept: at these bounds a
merge costs the event loop well under a millisecond (0.3 ms for 256 typed updates, ~1 ms
for 128 KB). The last run may still grow: it is merged again when a peer is sent it after
that.
"""

from __future__ import annotations

import logging

from pycrdt import merge_updates

from collab.yjs import protocol
from collab.yjs.scan import string_highs

log = logging.getLogger(__name__)

KEPT_FROM = 1024 * 1024  # bytes of state from which a new peer gets what is kept encoded
Clocks = dict[int, int]  # a state vector: client -> its next clock
SMALL_UPDATE = 32 * 1024
"""Logged updates below this size are merged with their neighbours for peers."""
RUN_UPDATES = 256
RUN_BYTES = 128 * 1024


class Run:
    """Updates logged one after the other that a peer is sent as one message."""

    __slots__ = ("_ends", "_merged", "_message", "_scanned", "bytes", "revs", "updates")

    def __init__(self, rev: int, update: bytes) -> None:
        self.revs = [rev]
        self.updates = [update]
        self.bytes = len(update)
        self._message = b""  # the merged updates framed, once there are several
        self._merged = 0  # how many updates `_message` holds
        self._ends: Clocks | None = {}  # each client's end clock in the updates scanned
        self._scanned = 0  # how many updates `_ends` covers

    def takes(self, update: bytes) -> bool:
        """Whether `update`, logged next, joins this run."""
        return (
            len(update) < SMALL_UPDATE
            and self.bytes + len(update) <= RUN_BYTES
            and len(self.updates) < RUN_UPDATES
            and (len(self.updates) > 1 or self.bytes < SMALL_UPDATE)
        )

    def add(self, rev: int, update: bytes) -> None:
        self.revs.append(rev)
        self.updates.append(update)
        self.bytes += len(update)

    def held_by(self, theirs: Clocks, scan: bool = True) -> bool:
        """Whether a peer with the state vector `theirs` holds every item of the run (not
        its deletions: a state vector does not say). Each update is read once, in C, when
        `scan` allows (~0.2 ms for 256 KB, or for 256 typed updates); False when some of
        the run is not read (yet, or at all)."""
        while scan and self._ends is not None and self._scanned < len(self.updates):
            walked = string_highs(self.updates[self._scanned])
            if walked is None:  # not read: the run is sent
                self._ends = None
                break
            for client, end in walked[0].items():
                self._ends[client] = max(end, self._ends.get(client, 0))
            self._scanned += 1
        ends = self._ends
        if ends is None or self._scanned < len(self.updates):
            return False
        return all(theirs.get(client, 0) >= end for client, end in ends.items())

    def messages(self) -> list[bytes]:
        """The run as one sync update message: one update framed (a copy not kept: it
        may be big), several merged and framed once (again if the run grew since); one
        message per update if pycrdt cannot merge them (never expected: each was taken)."""
        if len(self.updates) == 1:
            return [protocol.encode_sync_update(self.updates[0])]
        if self._merged != len(self.updates):
            try:
                merged = merge_updates(*self.updates)
            except ValueError as error:
                log.error("revs %d-%d not merged: %s", self.revs[0], self.revs[-1], error)
                return [protocol.encode_sync_update(update) for update in self.updates]
            self._message = protocol.encode_sync_update(merged)
            self._merged = len(self.updates)
        return [self._message]


class KeptLog:
    """The base state (a snapshot: the one loaded or last written), its revision, and the
    updates logged since, with their revisions, in runs."""

    def __init__(self) -> None:
        self.base_rev = 0
        self.bytes = 0  # the base's size plus the updates'
        # The base framed as the sync update a peer of a big document is sent as it is (no
        # copy per answer), and its size.
        self.base_message = b""
        self.base_size = 0
        self.base_clocks: Clocks | None = {}  # its state vector (None: not known)
        self._runs: list[Run] = []

    def set_base(
        self,
        rev: int,
        state: bytes,
        framed: bytes | None = None,
        clocks: Clocks | None = None,
    ) -> None:
        """A snapshot of `state` at `rev` was loaded or written: the log now starts there.
        `framed`: `state` already framed as a sync update (off the event loop), else framed
        here, once, not once per batch of peers it is sent to. `clocks`: its state vector,
        if known."""
        if framed is None:
            framed = protocol.encode_sync_update(state) if state else b""
        self.base_message, self.base_size, self.base_rev = framed, len(state), rev
        self.base_clocks = clocks if state else {}
        runs, self._runs = self._runs, []
        for run in runs:
            if run.revs[0] > rev:
                self._runs.append(run)  # an answer being sent may hold it: never changed
            elif run.revs[-1] > rev:  # partly in the snapshot: what follows, in new runs
                for logged, update in zip(run.revs, run.updates, strict=True):
                    if logged > rev:
                        self.append(logged, update)
        self.bytes = len(state) + sum(run.bytes for run in self._runs)

    def base(self) -> bytes:
        """The base state, out of its framing (a copy: pycrdt takes bytes)."""
        if not self.base_size:
            return b""
        return self.base_message[len(self.base_message) - self.base_size :]

    def append(self, rev: int, update: bytes) -> None:
        runs = self._runs
        if runs and runs[-1].takes(update):
            runs[-1].add(rev, update)
        else:
            runs.append(Run(rev, update))
        self.bytes += len(update)

    def updates(self) -> list[bytes]:
        """The updates logged since the base, in order."""
        return [update for run in self._runs for update in run.updates]

    def runs(self) -> list[Run]:
        """The updates logged since the base, in runs, in order (the list a copy)."""
        return list(self._runs)
