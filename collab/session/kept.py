"""What memory keeps of a document's log: the state it starts from and the updates since.

It is the truth the document's memory is rebuilt from (after a change failed halfway, or
when a detached document needs its pycrdt document again: `collab.session.document`) and
what a peer of a big document is sent as it is (`collab.session.sync_answers`).
"""

from __future__ import annotations

from collab.yjs import protocol

KEPT_FROM = 1024 * 1024  # bytes of state from which a new peer gets what is kept encoded
Clocks = dict[int, int]  # a state vector: client -> its next clock


class KeptLog:
    """The base state (a snapshot: the one loaded or last written), its revision, and the
    updates logged since, with their revisions."""

    def __init__(self) -> None:
        self.base_rev = 0
        self.bytes = 0  # the base's size plus the updates'
        # The base framed as the sync update a peer of a big document is sent as it is (no
        # copy per answer), and its size.
        self.base_message = b""
        self.base_size = 0
        self.base_clocks: Clocks | None = {}  # its state vector (None: not known)
        self._logged: list[tuple[int, bytes]] = []

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
        self._logged = [(r, update) for r, update in self._logged if r > rev]
        self.bytes = len(state) + sum(len(update) for _, update in self._logged)

    def base(self) -> bytes:
        """The base state, out of its framing (a copy: pycrdt takes bytes)."""
        if not self.base_size:
            return b""
        return self.base_message[len(self.base_message) - self.base_size :]

    def append(self, rev: int, update: bytes) -> None:
        self._logged.append((rev, update))
        self.bytes += len(update)

    def updates(self) -> list[bytes]:
        """The updates logged since the base, in order."""
        return [update for _, update in self._logged]
