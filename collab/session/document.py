"""One document: the pycrdt `Doc`, its shared text as code-point ops, and its revisions.

Every change, whatever its source, goes through here and becomes one revision with its
`Record` (what the log stores) and its `Revision` (what text clients see).

**Memory never holds what the log does not.** The document keeps the state it was loaded
or last compacted from and the updates logged since (`collab.session.kept`). A change that
fails halfway (pycrdt raised or panicked, or the shared text took content the text protocol
cannot carry, such as an embed) is undone by rebuilding the pycrdt document from them, so
what the peers, the log and a replay see never drift apart. A big document that only Yjs
peers edit keeps no pycrdt document at all (detached: `collab.session.replica`).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pycrdt import Doc, Text, TextEvent, TransactionEvent

from collab.access.storable import storable
from collab.config import Settings
from collab.session.kept import Clocks, KeptLog
from collab.session.lanes import integrates_later
from collab.session.replica import Replica
from collab.session.revision import ChangeRefused, Committed, Revision, revisions_after
from collab.storage.contract import Record
from collab.text import ops as textops
from collab.text import positions
from collab.text.chunks import TextChunks, deltas_to_op
from collab.wire import ErrorCode, parse_text_origin
from collab.yjs.checks import StoredWalk, Summary, SurrogateIndex, check_update
from collab.yjs.crdt import InvalidUpdateError, apply_update, weakly
from collab.yjs.deletes import DeleteSet
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
        self.history: deque[Revision] = deque(maxlen=max(1, settings.history_in_memory))
        self.kept = KeptLog()  # the snapshot and the updates logged since: the truth
        self._mirror: TextChunks | None = None  # the text in pieces, while tracking
        self._text_subscription: Any = None
        self._captured_update: bytes | None = None
        self._captured_deltas: list[list[dict[str, Any]]] = []
        self._replica = Replica(settings.text_name, self.kept, client_id)
        self.client_id: int = self._replica.client_id
        self._text_only = True  # every update taken could be checked without pycrdt (`detach`)
        # Where edits would split a character: the loader's, else built at the first Yjs update.
        self._surrogates: SurrogateIndex | None = None if stored else SurrogateIndex()
        self._clocks: dict[int, int] | None = None  # the state vector, kept up to date
        self._items: TextItems | None = None  # the text's item ids, while carets need them
        if stored is not None:
            self._load(stored)
        else:
            self.track_text(track_text)

    def _load(self, stored: StoredDocument) -> None:
        self.kept.set_base(stored.snapshot_rev, stored.snapshot or b"", stored.snapshot_message)
        self.rev = stored.snapshot_rev
        size = len(stored.snapshot or b"") + stored.log_bytes
        if not self.always_track_text and self._detaches_at(size):
            self._replica.detach(DeleteSet())  # `use_walk` brings what it knows
            for record in stored.records:
                self._add(record, [])
            return
        if stored.snapshot:
            self.doc.apply_update(stored.snapshot)
        self.track_text(self.always_track_text)  # the history starts after the snapshot
        for record in stored.records:
            self.doc.apply_update(record.update)
            _, deltas = self._take_captured()
            self._add(record, self._op_from_deltas(deltas))

    # ------------------------------------------------------------------ detached

    @property
    def base_rev(self) -> int:
        """The revision of the state the log starts from."""
        return self.kept.base_rev

    @property
    def state_bytes(self) -> int:
        """Size of the stored state: the snapshot and the updates logged since."""
        return self.kept.bytes

    @property
    def detached(self) -> bool:
        """Whether the document keeps no pycrdt document now (`collab.session.replica`)."""
        return self._replica.detached

    @property
    def deleted(self) -> DeleteSet | None:
        """While detached, what the document deleted (`collab.yjs.deletes`)."""
        return self._replica.deleted

    def _detaches_at(self, size: int) -> bool:
        limit = self.settings.detach_from_bytes
        return self._text_only and self._replica.may_detach and 0 < limit <= size

    def detach(self) -> None:
        """Drop the pycrdt document when the document is big and nothing needs it: no text
        peer follows the text, and every update so far could be checked without it."""
        if self.detached or self._mirror is not None or not self._detaches_at(self.state_bytes):
            return
        self.state_vector()  # kept from now on (the lanes' updates are in it)
        self._replica.detach()
        self._items = None

    def use_walk(self, walked: StoredWalk) -> None:
        """Before any change: what the loader found in the stored bytes (`walk_stored`, off
        the loop): the surrogate index, and while detached the clocks and deletions."""
        self._surrogates = walked.surrogates
        self.kept.base_clocks = walked.base_clocks
        if self.detached:
            self._clocks = walked.clocks
            self._replica.detach(walked.deletes)

    # ------------------------------------------------------------------ reading

    @property
    def doc(self) -> Doc:
        """The pycrdt document, every accepted update integrated (`collab.session.lanes`);
        rebuilt first if detached (`collab.session.replica`)."""
        return self._replica.doc

    @property
    def text(self) -> Text:
        return self._replica.text  # every accepted update integrated

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
        """The revisions after `rev`, or None when they are no longer in memory."""
        return revisions_after(self.history, self.rev, rev)

    # ------------------------------------------------------------------ following the text

    def follow_text(self, on: bool = True) -> None:
        """Follow the text as ops from now on, whoever is connected (services' ops); `on`
        False: stop now (too big for text clients: the session closes them)."""
        self.always_track_text = on
        self.track_text(on)

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
            self.detach()

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
        if self.detached and integrates_later(decoded):
            return self._take_detached(update, decoded, known, origin, user)
        # No new items: only new deletions can change anything (a reconnecting peer's
        # step 2 re-sends what is known: no revision, nothing relayed).
        nothing_new = not _adds_items(decoded, known)
        deleted_before = self._delete_set() if nothing_new else b""
        # Yjs text, while no text peer follows it, may wait in its writer's lane or whole.
        waits = not nothing_new and self._mirror is None
        if waits and self._replica.wait(update, decoded, known):
            op: textops.Op = []
        else:
            op = self._integrate(update, decoded, origin)
        if not integrates_later(decoded):  # taken, and only pycrdt could check it: it stays
            self._text_only = False
        self._surrogate_index().add(decoded, known)
        _advance(known, decoded)
        if nothing_new and self._delete_set() == deleted_before:
            return None
        # Stored and relayed as it came (as the reference server relays it), waiting or not.
        record = self._record(origin, user, update)
        committed = Committed(record, self._add(record, op))
        self.detach()
        return committed

    def settle(self) -> None:
        """Integrate an update that waits whole, once its batch is sent (`Lanes.settle`)."""
        self._replica.settle()

    def _integrate(self, update: bytes, decoded: Summary, origin: str) -> textops.Op:
        """Integrate a checked update now: its op for text peers. Raises `ChangeRefused` when
        pycrdt refuses it or it puts an embed in the text (undone; read whole only if changed)."""
        watch = bool(NON_TEXT_CONTENT.intersection(decoded.refs))
        try:
            changed: list[object] = []  # the text's events, followed or not (deltas misread embeds)
            events = self.text.observe(changed.append) if watch else None
            try:
                apply_update(self.doc, update)
            finally:
                if events is not None:
                    self.text.unobserve(events)
            op = self._op_from_deltas(self._take_captured()[1])
            if changed and len(self.text) != len(str(self.text).encode()):
                raise textops.OpError("the shared text may hold only text, not embeds")
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
        if self.detached and (taken := self._committed_detached(record, known)):
            return taken
        self._clocks = None
        apply_update(self.doc, record.update)
        _, deltas = self._take_captured()
        if self._surrogates is not None:
            self._surrogates.add(record.update, known)
        return self._add(record, self._op_from_deltas(deltas))

    def _take_detached(
        self, update: bytes, decoded: Summary, known: dict[int, int], origin: str, user: str | None
    ) -> Committed | None:
        """`apply_update` of a checked text update while detached: no pycrdt at all."""
        if not self._replica.take(update, decoded, _adds_items(decoded, known)):
            return None
        self._surrogate_index().add(decoded, known)
        _advance(known, decoded)
        record = self._record(origin, user, update)
        return Committed(record, self._add(record, []))

    def _committed_detached(self, record: Record, known: dict[int, int]) -> Revision | None:
        """`apply_committed` while detached, when the update needs no pycrdt to be taken."""
        decoded, problem = check_update(record.update, known, self._surrogate_index())
        if problem is not None or not integrates_later(decoded):
            self._text_only = False  # as where it was made: what pycrdt alone checks came
            return None
        self._replica.take(record.update, decoded, adds_items=True)
        self._surrogate_index().add(decoded, known)
        _advance(known, decoded)
        return self._add(record, [])

    def _surrogate_index(self) -> SurrogateIndex:
        if self._surrogates is None:  # the C walk over what is kept, not the full decoder
            self._surrogates = SurrogateIndex.of_stored(self.kept.base(), self.kept.updates())
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

    def compacted(
        self, rev: int, state: bytes, framed: bytes | None = None, clocks: Clocks | None = None
    ) -> None:
        """A snapshot of `state` at `rev` was written: the log now starts there. `framed`:
        `state` already framed as a sync update (by the caller, off the event loop);
        `clocks`: its state vector (a detached document answers peers with it)."""
        self.kept.set_base(rev, state, framed, clocks)

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
        self.kept.append(record.rev, record.update)
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
            self.text.unobserve(self._text_subscription)
        self._clocks = None
        self._replica.rebuild()  # the lanes' updates are logged: it integrates them
        self._take_captured()
        if tracking:
            rebuilt = str(self.text)
            if rebuilt != str(self._mirror):  # never expected: the history no longer applies
                log.error("text mirror differed from the log; history of ops restarted")
                self.history.clear()
            self._mirror = TextChunks(rebuilt)
            self._text_subscription = self.text.observe(weakly(self._on_text_event))

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
