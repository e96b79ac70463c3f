"""One document: the pycrdt `Doc`, its shared text as code-point ops, and its revisions.

Every change, whatever its source, goes through here and becomes one revision with its
`Record` (what the log stores) and its `Revision` (what text clients see).

**Memory never holds what the log does not.** The document keeps the state it was loaded
or last compacted from and the updates logged since. A change that fails halfway (pycrdt
raised or panicked, or the shared text took content the text protocol cannot carry, such
as an embed) is undone by rebuilding the pycrdt document from them, so what the peers, the
log and a replay see never drift apart.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycrdt import Doc, Text, TextEvent, TransactionEvent

from collab.access.storable import storable
from collab.config import Settings
from collab.session.lanes import Lanes
from collab.session.revision import ChangeRefused, Revision
from collab.storage.contract import Record
from collab.text import ops as textops
from collab.text import positions
from collab.text.chunks import TextChunks, deltas_to_op
from collab.wire import ErrorCode, parse_text_origin
from collab.yjs import protocol
from collab.yjs.checks import Summary, SurrogateIndex, check_update
from collab.yjs.crdt import InvalidUpdateError, apply_update, weakly
from collab.yjs.items import TextItems
from collab.yjs.update import (
    NON_TEXT_CONTENT,
    UpdateFormatError,
    decode_state_vector,
    encode_state_vector,
)

if TYPE_CHECKING:
    from collab.storage.contract import StoredDocument

log = logging.getLogger(__name__)

EMPTY_UPDATE = b"\x00\x00"
KEPT_FROM = 1024 * 1024  # bytes of state from which a new peer gets what is kept encoded


@dataclass(frozen=True)
class Committed:
    """A change that became a revision: the record to log, the op text clients see."""

    record: Record
    revision: Revision


class Document:
    """The shared state of one document and its linear history of revisions."""

    def __init__(
        self,
        settings: Settings,
        stored: StoredDocument | None = None,
        clock: Callable[[], float] | None = None,
        client_id: int | None = None,
        track_text: bool = True,
    ) -> None:
        """`track_text=False` follows the text as code-point ops only while `track_text(True)`
        is in force (text peers connected): Yjs-only documents then skip that work.
        `client_id` is the server's own Yjs client id (a replay passes the recorded one)."""
        self.settings = settings
        self.clock = clock or time.time
        self.always_track_text = track_text
        self.rev = 0
        self.base_rev = 0  # the revision of the state the log starts from
        self.state_bytes = 0  # size of the stored state: snapshot + updates since
        self.history: deque[Revision] = deque(maxlen=max(1, settings.history_in_memory))
        # The state the log starts from (the snapshot), kept framed as the sync update a
        # peer of a big document is sent as it is (no copy per answer), and its size.
        self._base_message = b""
        self._base_size = 0
        self._logged: list[tuple[int, bytes]] = []  # (rev, update) logged since the base
        self._mirror: TextChunks | None = None  # the text in pieces, while tracking
        self._text_subscription: Any = None
        self._captured_update: bytes | None = None
        self._captured_deltas: list[list[dict[str, Any]]] = []
        self._doc = Doc(client_id=client_id)  # `doc`: with every waiting update integrated
        self.client_id: int = self._doc.client_id
        self._text = self._doc.get(settings.text_name, type=Text)
        self._lanes = Lanes(settings.text_name)  # Yjs writers' appends waiting for pycrdt
        # Where edits would split a character: the loader's, else built at the first Yjs update.
        self._surrogates: SurrogateIndex | None = None if stored else SurrogateIndex()
        self._clocks: dict[int, int] | None = None  # the state vector, kept up to date
        self._items: TextItems | None = None  # the text's item ids, while carets need them
        if stored is not None:
            self._load(stored)
        else:
            self.track_text(track_text)

    def _load(self, stored: StoredDocument) -> None:
        if stored.snapshot:
            self.doc.apply_update(stored.snapshot)
            self._set_base(stored.snapshot, stored.snapshot_message)
            self.state_bytes = len(stored.snapshot)
        self.rev = self.base_rev = stored.snapshot_rev
        self.track_text(self.always_track_text)  # the history starts after the snapshot
        for record in stored.records:
            self.doc.apply_update(record.update)
            _, deltas = self._take_captured()
            self._add(record, self._op_from_deltas(deltas))

    # ------------------------------------------------------------------ reading

    @property
    def doc(self) -> Doc:
        """The pycrdt document, every accepted update integrated (`collab.session.lanes`)."""
        self._lanes.integrate(self._doc)
        return self._doc

    @property
    def text(self) -> Text:
        """The shared text, every accepted update integrated."""
        self._lanes.integrate(self._doc)
        return self._text

    @property
    def mirror(self) -> str:
        """The shared text as a Python str (code points): joined from the pieces when it
        changed since it was last asked for (a pass over the whole text)."""
        return str(self._mirror) if self._mirror is not None else str(self.text)

    @property
    def text_now(self) -> TextChunks | str:
        """The text as it is now, for a message that goes out later: while it is followed,
        a copy of its pieces (no join of the whole text), else a str."""
        return self._mirror.copy() if self._mirror is not None else str(self.text)

    @property
    def text_length(self) -> int:
        """The shared text's length in code points (without building it while tracking)."""
        return len(self._mirror) if self._mirror is not None else len(str(self.text))

    @property
    def tracking_text(self) -> bool:
        return self._mirror is not None

    @property
    def state(self) -> bytes:
        """The whole document as one Yjs update."""
        return self.doc.get_update()

    def text_items(self) -> TextItems:
        """The shared text's items in Yjs's order (carets as Yjs relative positions).

        Built from the whole state when first asked, then kept up to date with every
        change while the text is followed (text peers connected).
        """
        if self._items is None:
            self._items = TextItems.from_state(self.settings.text_name, self.doc.get_update())
        return self._items

    def revisions_since(self, rev: int) -> list[Revision] | None:
        """The revisions after `rev`, or None when they are no longer in memory.

        Taken from the newest end: a client is usually zero or a few revisions behind,
        and the history holds thousands.
        """
        first = self.history[0].rev if self.history else self.rev + 1
        if rev < first - 1 or rev > self.rev:
            return None
        missed = list(itertools.islice(reversed(self.history), self.rev - rev))
        missed.reverse()
        return missed

    # ------------------------------------------------------------------ following the text

    def follow_text(self) -> None:
        """Follow the text as ops from now on, whoever is connected (services' ops)."""
        self.always_track_text = True
        self.track_text(True)

    def track_text(self, on: bool) -> None:
        """Start or stop following the text as code-point ops (history for text peers).

        Starting takes the text as it is now: the history of ops begins here, so a text
        client that comes back from before is sent the whole text instead.
        """
        on = on or self.always_track_text
        if on and self._mirror is None:
            self._mirror = TextChunks(str(self.text))
            self.history.clear()
            self._text_subscription = self.text.observe(weakly(self._on_text_event))
        elif not on and self._mirror is not None:
            self.text.unobserve(self._text_subscription)
            self._mirror, self._text_subscription = None, None
            self.history.clear()
            self._items = None

    # ------------------------------------------------------------------ changes

    def apply_update(self, update: bytes, origin: str, user: str | None) -> Committed | None:
        """Apply a Yjs update; None when it changed nothing (no revision).

        Raises `ChangeRefused` when it does not fit; the document is then as it was.
        Refused before applying: updates that depend on items the document does not have
        (pycrdt would keep them pending and half-apply a later one) and edits between the
        halves of a surrogate pair (Yjs and Yrs replicas would diverge). Accepted Yjs text
        may reach pycrdt later (`collab.session.lanes`): the checks settled what it refuses."""
        if update == EMPTY_UPDATE:  # a new peer's sync step 2: nothing to apply or store
            return None
        self._check_size(len(update))
        known = self.state_vector()
        decoded = self._check_update(update, known)
        # No new items: only new deletions can change anything (a reconnecting peer's
        # step 2 re-sends what is known: no revision, nothing relayed).
        nothing_new = not _adds_items(decoded, known)
        deleted_before = self._delete_set() if nothing_new else b""
        # Yjs text, while no text peer follows it, may wait in its writer's lane or whole.
        waits = not nothing_new and self._mirror is None
        if waits and self._lanes.wait(self._doc, update, decoded, known):
            op: textops.Op = []
        else:
            op = self._integrate(update, decoded, origin)
        self._surrogate_index().add(decoded, known)
        _advance(known, decoded)
        if nothing_new and self._delete_set() == deleted_before:
            return None
        # Stored and relayed as it came (as the reference server relays it), waiting or not.
        record = self._record(origin, user, update)
        return Committed(record, self._add(record, op))

    def settle(self) -> None:
        """Integrate an update that waits whole, once its batch is sent (`Lanes.settle`)."""
        self._lanes.settle(self._doc)

    def _integrate(self, update: bytes, decoded: Summary, origin: str) -> textops.Op:
        """Integrate a checked update now: its op for text peers. Raises `ChangeRefused`
        when pycrdt refuses it or it brings what the text cannot carry (then undone)."""
        try:
            apply_update(self.doc, update)
            _, deltas = self._take_captured()
            op = self._op_from_deltas(deltas)
            if not self.tracking_text and NON_TEXT_CONTENT.intersection(decoded.refs):
                self._check_plain_text()
        except (InvalidUpdateError, textops.OpError) as error:
            self._undo(f"{origin}: {error}")
            raise ChangeRefused(ErrorCode.BAD_MESSAGE, f"update refused: {error}") from None
        return op

    def apply_op(
        self,
        op: textops.Op,
        origin: str,
        user: str | None,
        client: str | None = None,
        seq: int | None = None,
    ) -> Committed | None:
        """Apply a code-point op to the shared text: one transaction, one revision.

        None when the op changes nothing. Raises `ChangeRefused` when it does not fit.
        """
        text: TextChunks | str = self._mirror if self._mirror is not None else str(self.text)
        if textops.base_length(op) != len(text):
            raise ChangeRefused(
                ErrorCode.BAD_OP,
                f"op base length {textops.base_length(op)} != text length {len(text)}",
            )
        if all(isinstance(part, int) and part > 0 for part in op):
            return None
        self._check_size(sum(len(part.encode()) for part in op if isinstance(part, str)))
        steps = positions.op_to_utf8_steps(text, op)
        subscription = self.doc.observe(self._on_transaction)  # to catch its update
        try:
            with self.doc.transaction(origin=origin):
                for kind, start, value in steps:
                    if kind == "insert":
                        self.text.insert(start, value)
                    else:
                        del self.text[start:value]
        except BaseException as error:  # pycrdt panics are BaseExceptions
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            self._undo(f"{origin}: {error!r}")
            raise ChangeRefused(ErrorCode.BAD_OP, "the op could not be applied") from None
        finally:
            self.doc.unobserve(subscription)
        update, _ = self._take_captured()
        if update is None:
            return None
        if self._surrogates is not None:  # its pairs: a Yjs peer may not split them either
            self._surrogates.add(update)
        self._clocks = None  # the server's own clock moved
        record = self._record(origin, user, update)
        return Committed(record, self._add(record, textops.normalize(op), client, seq))

    def _record(self, origin: str, user: str | None, update: bytes) -> Record:
        """The next revision's record. Its origin and user may come from a peer or an
        embedder: a NUL or lone surrogate in them becomes U+FFFD, so no store refuses the
        commit (which would close every peer of the document) and no encoder fails."""
        user = None if user is None else storable(user)
        return Record(self.rev + 1, self.clock(), storable(origin), user, update)

    def apply_committed(self, record: Record) -> Revision:
        """A revision another process committed: it is durable already, so it is applied
        as it is (it was checked where it was made). Raises ValueError when it does not
        continue this document's revisions, `InvalidUpdateError` when pycrdt refuses it."""
        if record.rev != self.rev + 1:
            raise ValueError(f"revision {record.rev} does not follow {self.rev}")
        known = self.state_vector()
        self._clocks = None
        apply_update(self.doc, record.update)
        _, deltas = self._take_captured()
        if self._surrogates is not None:
            self._surrogates.add(record.update, known)
        return self._add(record, self._op_from_deltas(deltas))

    def use_surrogates(self, index: SurrogateIndex) -> None:
        """Before any change: the index of what it was loaded from (`of_stored`, off the loop)."""
        self._surrogates = index

    def _surrogate_index(self) -> SurrogateIndex:
        if self._surrogates is None:  # the C walk over what is kept, not the full decoder
            logged = [update for _, update in self._logged]
            self._surrogates = SurrogateIndex.of_stored(self._base(), logged)
        return self._surrogates

    def state_vector(self) -> dict[int, int]:
        """Client id -> next clock: decoded from pycrdt once, then advanced by each checked
        update as it is applied (every struct of one integrates, or it was refused)."""
        if self._clocks is None:
            self._clocks = decode_state_vector(self.doc.get_state())
        return self._clocks

    def encoded_state_vector(self) -> bytes:
        """The state vector as a sync step 1 carries it, from the clocks kept: no update
        that waits in a lane is integrated for it."""
        return encode_state_vector(self.state_vector())

    def clocks_lacking(self, state_vector: bytes) -> int | None:
        """How many clocks a peer with `state_vector` lacks of this document (summed over
        clients); None when the state vector cannot be read."""
        try:
            theirs = decode_state_vector(state_vector)
        except UpdateFormatError:
            return None
        return sum(max(0, end - theirs.get(c, 0)) for c, end in self.state_vector().items())

    def kept_updates(self) -> tuple[bytes, list[bytes]] | None:
        """The whole document as it is kept encoded: the state the log starts from, framed
        as a sync update message, and the updates logged since. None when encoding it afresh
        is the better answer: a small state (under `KEPT_FROM` bytes, encoded in well under a
        millisecond)."""
        if self._base_size < KEPT_FROM:
            return None
        return self._base_message, [update for _, update in self._logged]

    def compacted(self, rev: int, state: bytes, framed: bytes | None = None) -> None:
        """A snapshot of `state` at `rev` was written: the log now starts there. `framed`:
        `state` already framed as a sync update (by the caller, off the event loop)."""
        self._set_base(state, framed)
        self.base_rev = rev
        self._logged = [(r, update) for r, update in self._logged if r > rev]
        self.state_bytes = len(state) + sum(len(update) for _, update in self._logged)

    def _set_base(self, state: bytes, framed: bytes | None = None) -> None:
        """Framed once, when a snapshot is loaded or written (one copy), not once per batch
        of peers it is sent to."""
        if framed is None:
            framed = protocol.encode_sync_update(state) if state else b""
        self._base_message, self._base_size = framed, len(state)

    def _base(self) -> bytes:
        """The state the log starts from, out of its framing (a copy: pycrdt takes bytes)."""
        if not self._base_size:
            return b""
        return self._base_message[len(self._base_message) - self._base_size :]

    # ------------------------------------------------------------------ internals

    def _check_size(self, added: int) -> None:
        limit = self.settings.max_document_bytes
        if self.state_bytes + added > limit:
            raise ChangeRefused(ErrorCode.TOO_LARGE, f"document would exceed {limit} bytes")

    def _check_update(self, update: bytes, known: dict[int, int]) -> Summary:
        try:
            decoded, problem = check_update(update, known, self._surrogate_index())
        except UpdateFormatError as error:
            raise ChangeRefused(ErrorCode.BAD_MESSAGE, f"invalid Yjs update: {error}") from None
        if problem is not None:
            raise ChangeRefused(ErrorCode.BAD_MESSAGE, f"update refused: {problem}")
        return decoded

    def _check_plain_text(self) -> None:
        """The shared text holds only characters: an embed (counted by pycrdt, left out of
        its str) would put every text client's positions off by one."""
        if self._mirror is None and len(self.text) != len(str(self.text).encode()):
            raise textops.OpError("the shared text may hold only text, not embeds")

    def _add(
        self, record: Record, op: textops.Op, client: str | None = None, seq: int | None = None
    ) -> Revision:
        if client is None and (parsed := parse_text_origin(record.origin)):
            client, seq = parsed
        revision = Revision(record.rev, op, record.origin, record.user, client, seq)
        if self._mirror is not None:
            self.history.append(revision)
            self._mirror.apply(op)
        self.rev = record.rev
        self.state_bytes += len(record.update)
        self._logged.append((record.rev, record.update))
        if self._items is not None:
            try:
                self._items.apply(record.update)
            except ValueError:  # never expected: start again from the whole state
                log.exception("text items out of step at rev %d: rebuilt", record.rev)
                self._items = None
        return revision

    def _undo(self, why: str) -> None:
        """A change failed halfway: rebuild the pycrdt document from the base and the log.

        Every logged change replays as it did before, so the text is the one every peer
        and the history already have.
        """
        log.warning("change refused, document rebuilt from its log: %s", why)
        self._items = None
        tracking = self._mirror is not None
        if tracking:
            self._text.unobserve(self._text_subscription)
        self._clocks = None
        self._lanes.drop()  # they are logged: the rebuild integrates them
        self._doc = Doc(client_id=self.client_id)
        self._text = self._doc.get(self.settings.text_name, type=Text)
        if self._base_size:
            self._doc.apply_update(self._base())
        for _, update in self._logged:
            self._doc.apply_update(update)
        self._take_captured()
        if tracking:
            rebuilt = str(self._text)
            if rebuilt != str(self._mirror):  # never expected: the history no longer applies
                log.error("text mirror differed from the log; history of ops restarted")
                self.history.clear()
            self._mirror = TextChunks(rebuilt)
            self._text_subscription = self._text.observe(weakly(self._on_text_event))

    def _op_from_deltas(self, deltas: list[list[dict[str, Any]]]) -> textops.Op:
        """The code-point op of one transaction's text events (the mirror is the old text).

        An empty op when the text is not tracked (no text peers: nobody needs it).
        """
        return [] if self._mirror is None else deltas_to_op(self._mirror, deltas)

    def _delete_set(self) -> bytes:
        """The document's whole delete set, encoded (a diff against its own state)."""
        return self.doc.get_update(self.doc.get_state())

    def _on_transaction(self, event: TransactionEvent) -> None:
        update = event.update
        if update and update != EMPTY_UPDATE:
            self._captured_update = update

    def _on_text_event(self, event: TextEvent) -> None:
        self._captured_deltas.append(list(event.delta))

    def _take_captured(self) -> tuple[bytes | None, list[list[dict[str, Any]]]]:
        update, deltas = self._captured_update, self._captured_deltas
        self._captured_update, self._captured_deltas = None, []
        return update, deltas


def _adds_items(update: Summary, known: dict[int, int]) -> bool:
    """Whether `update` holds structs past the clocks the document has (a Skip is not
    integrated; a GC range is: it advances the client's clock, so it is logged)."""
    return any(end > known.get(client, 0) for client, end in update.ends.items())


def _advance(clocks: dict[int, int], update: Summary) -> None:
    """Move the state vector past an update that was applied in full."""
    for client, end in update.ends.items():
        if end > clocks.get(client, 0):
            clocks[client] = end
