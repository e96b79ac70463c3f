"""One document: the sans-I/O state machine at the heart of collab.

The session holds the document as a pycrdt `Doc`, a mirror of its shared text as a Python
`str`, and the linear list of revisions. Drivers feed it events (a peer connected, a
message arrived, a peer left, server code changed the text) and take its output: records
to make durable, then messages to send, then connections to close. It never awaits,
opens a socket or touches a file, so the web server, an embedding server, the replay
tools and the tests all drive the very same code.

Durable before visible: `take_output()` hands back the records of every change together
with the messages that reveal them. The driver writes the records (one fsync) before it
sends any of the messages.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pycrdt import Doc, Text, TextEvent, TransactionEvent, merge_updates

from collab import protocol, textops
from collab.config import Settings
from collab.crdt import InvalidUpdateError, apply_update
from collab.storage.contract import Record

if TYPE_CHECKING:
    from collab.storage.contract import StoredDocument

log = logging.getLogger(__name__)

PeerId = int | str
EMPTY_UPDATE = b"\x00\x00"
MAX_REMEMBERED_CLIENTS = 10_000
MAX_AWARENESS_PER_PEER = 64  # client ids one connection may speak for

# Close codes (RFC 6455 and the 4000-4999 application range).
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TOO_SLOW = 4001


class SessionError(Exception):
    """A change was refused; `code` is a short machine-readable word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Revision:
    """One revision as text clients see it: the change as a code-point op."""

    rev: int
    op: textops.Op
    origin: str
    user: str | None
    client: str | None = None
    seq: int | None = None

    def as_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "op", "rev": self.rev, "op": self.op}
        if self.client is not None:
            message["client"] = self.client
            message["seq"] = self.seq
        if self.user is not None:
            message["user"] = self.user
        return message


@dataclass
class Peer:
    """A connection as the session sees it."""

    id: PeerId
    kind: Literal["yjs", "text"]
    user: str | None
    readonly: bool
    awareness_ids: set[int] = field(default_factory=set)
    # text peers only
    client: str | None = None
    presence: dict[str, Any] | None = None


@dataclass
class Output:
    """What the driver must do, in this order: persist, send, close."""

    records: list[Record] = field(default_factory=list)
    revisions: list[Revision] = field(default_factory=list)  # the records as text changes
    messages: list[tuple[PeerId, bytes | str]] = field(default_factory=list)
    closes: list[tuple[PeerId, int, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records or self.messages or self.closes)


@dataclass
class _Updates:
    """Yjs updates queued for one peer, sent as one merged update message.

    A peer's own updates are included (as the reference server echoes them) so that
    every peer of a batch gets the very same message, merged and encoded once; a peer
    whose batch holds only its own updates is sent nothing.
    """

    updates: list[bytes]
    only_own: bool


def parse_origin(origin: str) -> tuple[str, int] | None:
    """The (client, seq) of a text client's revision, from its origin ``ot:<client>:<seq>``."""
    if not origin.startswith("ot:"):
        return None
    client, _, seq = origin[3:].rpartition(":")
    return (client, int(seq)) if client and seq.isdigit() else None


def awareness_id_for(client: str) -> int:
    """A stable Yjs awareness client id for a text client (ids stay below 2**53)."""
    return 0x10_0000_0000_0000 | zlib.crc32(client.encode()) << 16 | len(client) & 0xFFFF


class Session:
    """One document and everyone connected to it."""

    def __init__(
        self,
        name: str,
        settings: Settings | None = None,
        stored: StoredDocument | None = None,
        clock: Callable[[], float] = time.time,
        client_id: int | None = None,
        track_text: bool = True,
    ) -> None:
        """`track_text=False` follows the text as code-point ops only while text peers are
        connected: Yjs-only documents then skip that work (a copy of the text per edit).
        """
        self.name = name
        self.settings = settings or Settings()
        self.clock = clock
        # The server's own Yjs client id is in every update it makes (text peers' edits):
        # a replay passes the recorded one to rebuild the document byte for byte.
        self.doc = Doc(client_id=client_id)
        self.text = self.doc.get(self.settings.text_name, type=Text)
        self.always_track_text = track_text
        self._mirror: str | None = None  # the text as a Python str, while tracking
        self._text_subscription: Any = None
        self.rev = 0
        self.snapshot_rev = 0
        self.state_bytes = 0  # size of the stored state: snapshot + updates since
        self.log_records = 0  # records since the last snapshot
        self.log_bytes = 0
        self.history: deque[Revision] = deque(maxlen=max(1, self.settings.history_in_memory))
        self.peers: dict[PeerId, Peer] = {}
        self._yjs_peers: list[PeerId] = []  # the Yjs peers' ids, for the hot broadcast loop
        self.awareness: dict[int, tuple[int, dict[str, Any] | None]] = {}
        self.acked: dict[str, tuple[int, int]] = {}  # text client -> (last seq, its rev)
        self._out: dict[PeerId, list[bytes | str | _Updates]] = {}
        self._records: list[Record] = []
        self._revisions: list[Revision] = []
        self._closes: list[tuple[PeerId, int, str]] = []
        self._captured_update: bytes | None = None
        self._captured_deltas: list[list[dict[str, Any]]] = []
        if stored is not None:
            self._load(stored)  # starts following the text after the snapshot
        else:
            self._track_text(track_text)

    # ------------------------------------------------------------------ loading

    def _load(self, stored: StoredDocument) -> None:
        if stored.snapshot:
            self.doc.apply_update(stored.snapshot)
            self._take_captured()
            self.state_bytes = len(stored.snapshot)
        self.rev = self.snapshot_rev = stored.snapshot_rev
        self._track_text(self.always_track_text)  # the history starts after the snapshot
        for record in stored.records:
            self.doc.apply_update(record.update)
            _, deltas = self._take_captured()
            self._add_revision(record, self._op_from_deltas(deltas))
        self.log_bytes = stored.log_bytes

    # ------------------------------------------------------------------ the text as ops

    @property
    def mirror(self) -> str:
        """The shared text as a Python str (code points)."""
        return self._mirror if self._mirror is not None else str(self.text)

    @property
    def tracking_text(self) -> bool:
        return self._mirror is not None

    def _track_text(self, on: bool) -> None:
        """Start or stop following the text as code-point ops (history for text peers).

        Starting takes the text as it is now: the history of ops begins here, so a text
        client that comes back from before is sent the whole text instead.
        """
        if on and self._mirror is None:
            self._mirror = str(self.text)
            self.history.clear()
            self._text_subscription = self.text.observe(self._on_text_event)
        elif not on and self._mirror is not None:
            self.text.unobserve(self._text_subscription)
            self._mirror, self._text_subscription = None, None
            self.history.clear()

    def _update_text_tracking(self) -> None:
        needed = self.always_track_text or any(p.kind == "text" for p in self.peers.values())
        self._track_text(needed)

    # ------------------------------------------------------------------ events

    def connect_yjs(self, peer_id: PeerId, user: str | None = None, readonly: bool = False) -> None:
        """A Yjs peer connected: send it sync step 1 and the awareness states we know."""
        self.peers[peer_id] = Peer(peer_id, "yjs", user, readonly)
        self._yjs_peers.append(peer_id)
        self._send(peer_id, protocol.encode_sync_step1(self.doc.get_state()))
        entries = self._awareness_entries()
        if entries:
            self._send(peer_id, protocol.encode_awareness(entries))

    def connect_text(
        self, peer_id: PeerId, user: str | None = None, readonly: bool = False
    ) -> None:
        """A text-operation peer connected; it says hello next."""
        self.peers[peer_id] = Peer(peer_id, "text", user, readonly)
        self._track_text(True)

    def disconnect(self, peer_id: PeerId) -> None:
        """A peer left: forget it and tell the others its awareness/presence is gone."""
        peer = self.peers.pop(peer_id, None)
        self._out.pop(peer_id, None)
        if peer is None:
            return
        if peer.kind == "yjs":
            self._yjs_peers.remove(peer_id)
        if peer.kind == "text":
            self._update_text_tracking()
        gone = [
            protocol.AwarenessEntry(cid, self.awareness[cid][0] + 1, None)
            for cid in sorted(peer.awareness_ids)
            if cid in self.awareness
        ]
        for entry in gone:
            self._forget_awareness(entry.client_id)
        if peer.kind == "text" and peer.client is not None:
            self._broadcast_text({"type": "presence", "client": peer.client, "left": True})
        if gone:
            self._broadcast_yjs(protocol.encode_awareness(gone))

    def receive(self, peer_id: PeerId, data: bytes | str) -> None:
        """One WebSocket message from a peer. Bad input closes that peer, never the session."""
        peer = self.peers.get(peer_id)
        if peer is None:
            return
        try:
            if peer.kind == "yjs":
                self._receive_yjs(peer, data)
            else:
                self._receive_text(peer, data)
        except Exception:  # a bug must cost one connection, not the document
            log.exception("%s: error handling a message from peer %s", self.name, peer_id)
            self.close_peer(peer_id, CLOSE_INTERNAL, "internal error handling your message")

    def close_peer(self, peer_id: PeerId, code: int, reason: str) -> None:
        """Ask the driver to close a peer (it will also call `disconnect`)."""
        self._closes.append((peer_id, code, protocol.close_reason(reason)))

    def resync(self, peer_id: PeerId) -> bool:
        """A peer fell behind and its queued messages were dropped: send it the full state.

        Returns False when the peer cannot be resynced (text peers reconnect instead).
        """
        peer = self.peers.get(peer_id)
        if peer is None or peer.kind != "yjs":
            return False
        self._out[peer_id] = [protocol.encode_sync_step2(self.doc.get_update())]
        return True

    def take_output(self) -> Output:
        """Everything the driver must do now: persist `records`, then send, then close."""
        output = Output(self._records, self._revisions, [], self._closes)
        merged: dict[object, bytes] = {}
        messages = output.messages
        for peer_id, items in self._out.items():
            for item in items:
                if type(item) is _Updates:
                    if not item.only_own:  # type: ignore[union-attr]
                        messages.append((peer_id, self._merged_message(item, merged)))
                else:
                    messages.append((peer_id, item))  # type: ignore[arg-type]
        self._records, self._revisions, self._closes, self._out = [], [], [], {}
        return output

    # ------------------------------------------------------------------ server-side edits

    def edit_text(
        self, op: textops.Op, origin: str = "server", user: str | None = None
    ) -> Revision | None:
        """Apply a code-point op made by server code to the current text.

        Raises `SessionError` when the op does not fit the text.
        """
        textops.check(op)
        return self._commit_op(op, origin, user, client=None, seq=None)

    def replace_text(self, new_text: str, origin: str = "server", user: str | None = None) -> None:
        """Make the shared text equal to `new_text` with the smallest single change."""
        self.edit_text(textops.diff(self.mirror, new_text), origin, user)

    def apply_update(self, update: bytes, origin: str, user: str | None = None) -> Record | None:
        """Apply a Yjs update from server code (or an import); returns its record, if any."""
        return self._apply_yjs_update(update, origin, user, sender=None)

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> bytes:
        """The whole document as one Yjs update."""
        return self.doc.get_update()

    def needs_compaction(self) -> bool:
        s = self.settings
        return self.log_records >= s.compact_log_records or self.log_bytes >= s.compact_log_bytes

    def compacted(self, rev: int, snapshot_bytes: int) -> None:
        """The driver wrote a snapshot at `rev`: the log starts again."""
        self.snapshot_rev = rev
        self.log_records = self.rev - rev
        self.log_bytes = 0
        self.state_bytes = snapshot_bytes

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

    # ------------------------------------------------------------------ Yjs peers

    def _receive_yjs(self, peer: Peer, data: bytes | str) -> None:
        if isinstance(data, str):
            self.close_peer(peer.id, CLOSE_UNSUPPORTED, "text frames are not y-websocket messages")
            return
        try:
            message = protocol.decode(data)
        except protocol.ProtocolError as error:
            self.close_peer(peer.id, error.close_code, error.reason)
            return
        try:
            self._handle_yjs(peer, message, data)
        except SessionError as error:
            code = CLOSE_TOO_BIG if error.code == "too-large" else CLOSE_PROTOCOL_ERROR
            self.close_peer(peer.id, code, error.message)

    def _handle_yjs(self, peer: Peer, message: protocol.Message, data: bytes) -> None:
        if isinstance(message, protocol.SyncStep1):
            self._answer_step1(peer, message.state_vector)
        elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
            if peer.readonly:
                self._send(peer.id, protocol.encode_auth_denied("read-only: update not applied"))
                return
            self._apply_yjs_update(message.update, f"yjs:{peer.id}", peer.user, sender=peer.id)
        elif isinstance(message, protocol.Awareness):
            self._receive_awareness(peer, message, data)
        elif isinstance(message, protocol.QueryAwareness):
            self._send(peer.id, protocol.encode_awareness(self._awareness_entries()))
        else:
            self.close_peer(peer.id, CLOSE_UNSUPPORTED, "unexpected message from a client")

    def _answer_step1(self, peer: Peer, state_vector: bytes) -> None:
        try:
            update = self.doc.get_update(state_vector)
        except Exception:
            raise SessionError("bad-message", "invalid state vector in sync step 1") from None
        self._send(peer.id, protocol.encode_sync_step2(update))

    def _apply_yjs_update(
        self, update: bytes, origin: str, user: str | None, sender: PeerId | None
    ) -> Record | None:
        if self.state_bytes + len(update) > self.settings.max_document_bytes:
            raise SessionError(
                "too-large",
                f"document would exceed {self.settings.max_document_bytes} bytes",
            )
        # Only deletions: new ones change the document's delete set, known ones do not.
        deletions_only = update[:1] == b"\x00"
        deleted_before = self._delete_set() if deletions_only else b""
        try:
            apply_update(self.doc, update)
        except InvalidUpdateError:
            self._take_captured()
            raise SessionError("bad-update", "invalid Yjs update") from None
        _, deltas = self._take_captured()
        if deletions_only and self._delete_set() == deleted_before:
            return None  # nothing new: no revision, nothing relayed
        # The update is stored and relayed as it came (as the reference server relays
        # it): parts still waiting for missing ones must be on disk too.
        record = Record(self.rev + 1, self.clock(), origin, user, update)
        op = self._op_from_deltas(deltas)
        revision = self._add_revision(record, op)
        self._emit(record, revision)
        self._broadcast_update(update, sender=sender)
        self._broadcast_revision(revision, exclude=None)
        return record

    def _broadcast_update(self, update: bytes, sender: PeerId | None) -> None:
        """Queue a Yjs update for every Yjs peer (hot path: kept lean)."""
        out = self._out
        for peer_id in self._yjs_peers:
            own = peer_id == sender
            items = out.get(peer_id)
            last = items[-1] if items else None
            if type(last) is _Updates:
                last.updates.append(update)  # type: ignore[union-attr]
                last.only_own = last.only_own and own  # type: ignore[union-attr]
            elif items is None:
                out[peer_id] = [_Updates([update], own)]
            else:
                items.append(_Updates([update], own))

    @staticmethod
    def _merged_message(item: _Updates, cache: dict[object, bytes]) -> bytes:
        """One update message per distinct run of updates, shared by the peers that get it."""
        updates = item.updates
        key: object = id(updates[0]) if len(updates) == 1 else tuple(map(id, updates))
        message = cache.get(key)
        if message is None:
            update = updates[0] if len(updates) == 1 else merge_updates(*updates)
            message = cache[key] = protocol.encode_sync_update(update)
        return message

    # ------------------------------------------------------------------ awareness

    def _receive_awareness(self, peer: Peer, message: protocol.Awareness, data: bytes) -> None:
        changed = False
        for entry in message.entries:
            known = self.awareness.get(entry.client_id)
            if known is not None and entry.clock < known[0]:
                continue
            changed = True
            if entry.state is None:
                self._forget_awareness(entry.client_id)
                peer.awareness_ids.discard(entry.client_id)
                self._broadcast_text(
                    {"type": "presence", "client": f"yjs:{entry.client_id}", "left": True}
                )
            else:
                if entry.client_id not in peer.awareness_ids and (
                    len(peer.awareness_ids) >= MAX_AWARENESS_PER_PEER
                ):
                    self.close_peer(peer.id, CLOSE_POLICY, "too many awareness states")
                    return
                self.awareness[entry.client_id] = (entry.clock, entry.state)
                peer.awareness_ids.add(entry.client_id)
                self._presence_from_awareness(entry.client_id, entry.state)
        if changed:
            self._broadcast_yjs(data)

    def _forget_awareness(self, client_id: int) -> None:
        self.awareness.pop(client_id, None)

    def _awareness_entries(self) -> list[protocol.AwarenessEntry]:
        return [
            protocol.AwarenessEntry(cid, clock, state)
            for cid, (clock, state) in self.awareness.items()
            if state is not None
        ]

    def _presence_from_awareness(self, client_id: int, state: dict[str, Any]) -> None:
        """Yjs awareness states that name a user appear to text clients as presence."""
        user = state.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("name"), str):
            return
        if (state.get("collab") or {}).get("kind") == "text":
            return  # a text client's own presence, mirrored into awareness
        self._broadcast_text(self._yjs_presence(client_id, user))

    @staticmethod
    def _yjs_presence(client_id: int, user: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "presence",
            "client": f"yjs:{client_id}",
            "user": {"name": str(user.get("name"))[:64], "color": str(user.get("color", ""))[:32]},
            "selection": None,
            "kind": "yjs",
        }

    def _broadcast_yjs(self, message: bytes) -> None:
        for peer_id in self._yjs_peers:
            self._send(peer_id, message)

    # ------------------------------------------------------------------ text peers

    def _receive_text(self, peer: Peer, data: bytes | str) -> None:
        if isinstance(data, bytes):
            self.close_peer(
                peer.id, CLOSE_UNSUPPORTED, "binary frames are not text-protocol messages"
            )
            return
        try:
            message = json.loads(data)
        except ValueError:
            self._send_error(peer, "bad-json", "message is not valid JSON")
            return
        if not isinstance(message, dict):
            self._send_error(peer, "bad-message", "message must be a JSON object")
            return
        try:
            self._handle_text(peer, message)
        except SessionError as error:
            self._send_error(peer, error.code, error.message, message.get("seq"))
        except textops.OpError as error:
            self._send_error(peer, "bad-op", str(error), message.get("seq"))

    def _handle_text(self, peer: Peer, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "hello":
            self._hello(peer, message)
        elif peer.client is None:
            raise SessionError("not-joined", "say hello first")
        elif kind == "op":
            self._text_op(peer, message)
        elif kind == "presence":
            self._presence(peer, message)
        else:
            raise SessionError("bad-message", f"unknown message type {kind!r}")

    def _hello(self, peer: Peer, message: dict[str, Any]) -> None:
        client = message.get("client")
        if not isinstance(client, str) or not 0 < len(client) <= 64:
            raise SessionError("bad-message", "hello needs a client id of 1 to 64 characters")
        if peer.client is not None:
            raise SessionError("bad-message", "hello was already said")
        rev = message.get("rev")
        if rev is not None and not _is_int(rev):
            raise SessionError("bad-message", "rev must be an integer or null")
        peer.client = client
        peer.presence = {"user": _clean_user(message.get("user")), "selection": None}
        welcome: dict[str, Any] = {"type": "welcome", "rev": self.rev}
        missed = None if rev is None else self.revisions_since(rev)
        if missed is None:
            welcome["text"] = self.mirror
        else:
            welcome["ops"] = [revision.as_message() for revision in missed]
        welcome["acked"] = self.acked.get(client, (0, 0))[0]
        welcome["presence"] = self._presence_list(exclude=peer.id)
        self._send_json(peer.id, welcome)
        self._announce_presence(peer)

    def _text_op(self, peer: Peer, message: dict[str, Any]) -> None:
        seq, base = message.get("seq"), message.get("rev")
        if not _is_int(seq) or seq < 1 or not _is_int(base) or base < 0:
            raise SessionError("bad-message", "op needs integer seq >= 1 and rev >= 0")
        assert peer.client is not None
        acked = self.acked.get(peer.client)
        if acked is not None and seq <= acked[0]:
            self._send_json(peer.id, {"type": "ack", "seq": seq, "rev": acked[1]})
            return  # a resubmission: acked again, never applied twice
        if peer.readonly:
            raise SessionError("readonly", "this connection is read-only")
        if base > self.rev:
            raise SessionError("future-rev", f"rev {base} is ahead of the server's {self.rev}")
        op = message.get("op")
        textops.check(op)
        missed = self.revisions_since(base)
        if missed is None:
            raise SessionError("too-old", f"rev {base} is no longer in memory: rejoin")
        op = textops.rebase(op, [revision.op for revision in missed])
        revision = self._commit_op(op, f"ot:{peer.client}:{seq}", peer.user, peer.client, seq)
        rev = revision.rev if revision else self.rev
        self._remember_ack(peer.client, seq, rev)
        self._send_json(peer.id, {"type": "ack", "seq": seq, "rev": rev})

    def _commit_op(
        self, op: textops.Op, origin: str, user: str | None, client: str | None, seq: int | None
    ) -> Revision | None:
        """Apply a code-point op to the shared text: one transaction, one revision."""
        text = self.mirror
        if textops.base_length(op) != len(text):
            raise SessionError(
                "bad-op", f"op base length {textops.base_length(op)} != text length {len(text)}"
            )
        if all(isinstance(part, int) and part > 0 for part in op):
            return None  # changes nothing: no revision
        inserted = sum(len(part.encode()) for part in op if isinstance(part, str))
        if self.state_bytes + inserted > self.settings.max_document_bytes:
            raise SessionError(
                "too-large", f"document would exceed {self.settings.max_document_bytes} bytes"
            )
        steps = textops.op_to_utf8_steps(text, op)
        subscription = self.doc.observe(self._on_transaction)  # to catch its update
        try:
            with self.doc.transaction(origin=origin):
                for kind, start, value in steps:
                    if kind == "insert":
                        self.text.insert(start, value)
                    else:
                        del self.text[start:value]
        finally:
            self.doc.unobserve(subscription)
        effective, _ = self._take_captured()
        if effective is None:
            return None
        record = Record(self.rev + 1, self.clock(), origin, user, effective)
        revision = self._add_revision(record, textops.normalize(op), client, seq)
        self._emit(record, revision)
        self._broadcast_update(effective, sender=None)
        self._broadcast_revision(revision, exclude=self._peer_of(client))
        return revision

    def _presence(self, peer: Peer, message: dict[str, Any]) -> None:
        assert peer.presence is not None
        if "user" in message:
            peer.presence["user"] = _clean_user(message.get("user"))
        selection = message.get("selection")
        rev = message.get("rev")
        if selection is not None:
            if not _is_int(rev) or rev > self.rev:
                raise SessionError("bad-message", "presence needs the rev of its selection")
            selection = self._transform_selection(_clean_selection(selection), rev)
            if selection is None:
                return  # too old to place: the client sends a fresher one soon
        peer.presence["selection"] = selection
        self._announce_presence(peer)

    def _transform_selection(self, selection: list[list[int]], rev: int) -> list[list[int]] | None:
        missed = self.revisions_since(rev)
        if missed is None:
            return None
        for revision in missed:
            selection = [
                [
                    textops.transform_position(a, revision.op),
                    textops.transform_position(h, revision.op),
                ]
                for a, h in selection
            ]
        limit = len(self.mirror)
        return [[min(a, limit), min(h, limit)] for a, h in selection]

    def _announce_presence(self, peer: Peer) -> None:
        """Tell text peers and Yjs peers (as awareness) where this text client is."""
        self._broadcast_text(self._presence_message(peer), exclude=peer.id)
        assert peer.client is not None and peer.presence is not None
        cid = awareness_id_for(peer.client)
        clock, known = self.awareness.get(cid, (0, None))
        state = {"user": peer.presence["user"], "collab": {"kind": "text", "client": peer.client}}
        if state == known:
            return  # only the selection moved: Yjs peers do not see text clients' carets
        clock += 1
        self.awareness[cid] = (clock, state)
        peer.awareness_ids.add(cid)
        self._broadcast_yjs(protocol.encode_awareness([protocol.AwarenessEntry(cid, clock, state)]))

    @staticmethod
    def _presence_message(peer: Peer) -> dict[str, Any]:
        assert peer.presence is not None
        return {
            "type": "presence",
            "client": peer.client,
            "user": peer.presence["user"],
            "selection": peer.presence["selection"],
            "kind": "text",
        }

    def _presence_list(self, exclude: PeerId) -> list[dict[str, Any]]:
        present = [
            self._presence_message(peer)
            for peer in self.peers.values()
            if peer.kind == "text" and peer.client is not None and peer.id != exclude
        ]
        for cid, (_, state) in self.awareness.items():
            user = (state or {}).get("user")
            is_text = ((state or {}).get("collab") or {}).get("kind") == "text"
            if isinstance(user, dict) and isinstance(user.get("name"), str) and not is_text:
                present.append(self._yjs_presence(cid, user))
        return present

    def _broadcast_revision(self, revision: Revision, exclude: PeerId | None) -> None:
        message = None
        for peer in self.peers.values():
            if peer.kind == "text" and peer.client is not None and peer.id != exclude:
                message = message or json.dumps(revision.as_message(), ensure_ascii=False)
                self._send(peer.id, message)
        self._move_selections(revision.op)

    def _move_selections(self, op: textops.Op) -> None:
        for peer in self.peers.values():
            if peer.presence and peer.presence.get("selection"):
                peer.presence["selection"] = [
                    [textops.transform_position(a, op), textops.transform_position(h, op)]
                    for a, h in peer.presence["selection"]
                ]

    def _broadcast_text(self, message: dict[str, Any], exclude: PeerId | None = None) -> None:
        encoded = None
        for peer in self.peers.values():
            if peer.kind == "text" and peer.client is not None and peer.id != exclude:
                encoded = encoded or json.dumps(message, ensure_ascii=False)
                self._send(peer.id, encoded)

    def _peer_of(self, client: str | None) -> PeerId | None:
        if client is None:
            return None
        for peer in self.peers.values():
            if peer.client == client:
                return peer.id
        return None

    def _send_error(self, peer: Peer, code: str, message: str, seq: object = None) -> None:
        error: dict[str, Any] = {"type": "error", "code": code, "message": message}
        if _is_int(seq):
            error["seq"] = seq
        self._send_json(peer.id, error)

    def _send_json(self, peer_id: PeerId, message: dict[str, Any]) -> None:
        self._send(peer_id, json.dumps(message, ensure_ascii=False))

    # ------------------------------------------------------------------ revisions

    def _add_revision(
        self,
        record: Record,
        op: textops.Op,
        client: str | None = None,
        seq: int | None = None,
    ) -> Revision:
        if client is None and (parsed := parse_origin(record.origin)):
            client, seq = parsed
        if client is not None and seq is not None:
            self._remember_ack(client, seq, record.rev)
        revision = Revision(record.rev, op, record.origin, record.user, client, seq)
        if self._mirror is not None:
            self.history.append(revision)
            self._mirror = textops.apply(self._mirror, op)
        self.rev = record.rev
        self.state_bytes += len(record.update)
        self.log_records += 1
        self.log_bytes += len(record.update)
        return revision

    def _emit(self, record: Record, revision: Revision) -> None:
        """A new revision for the driver to make durable."""
        self._records.append(record)
        self._revisions.append(revision)

    def _remember_ack(self, client: str, seq: int, rev: int) -> None:
        """Remember a text client's last applied op so a resubmission is acked, not re-applied."""
        self.acked.pop(client, None)
        self.acked[client] = (seq, rev)
        if len(self.acked) > MAX_REMEMBERED_CLIENTS:
            del self.acked[next(iter(self.acked))]

    def _op_from_deltas(self, deltas: list[list[dict[str, Any]]]) -> textops.Op:
        """The code-point op of one transaction's text events (the mirror is the old text).

        An empty op when the text is not tracked (no text peers: nobody needs it).
        """
        if self._mirror is None:
            return []
        text = self._mirror
        if len(deltas) == 1:
            return textops.delta_to_op(text, deltas[0])
        op: textops.Op = [len(text)] if text else []
        for delta in deltas:
            step = textops.delta_to_op(textops.apply(text, op), delta)
            op = textops.compose(op, step)
        return textops.normalize(op)

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

    def _send(self, peer_id: PeerId, data: bytes | str) -> None:
        if peer_id in self.peers:
            self._out.setdefault(peer_id, []).append(data)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _clean_user(user: object) -> dict[str, str]:
    """A user as presence carries it: a name and a colour, both short strings."""
    if not isinstance(user, dict):
        return {"name": "anonymous", "color": "#888888"}
    name, color = user.get("name"), user.get("color")
    return {
        "name": name[:64] if isinstance(name, str) and name else "anonymous",
        "color": color[:32] if isinstance(color, str) and color else "#888888",
    }


def _clean_selection(selection: object) -> list[list[int]]:
    if not isinstance(selection, list) or len(selection) > 16:
        raise SessionError("bad-message", "selection must be a list of [anchor, head] pairs")
    pairs = []
    for pair in selection:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(_is_int(p) and p >= 0 for p in pair)
        ):
            raise SessionError("bad-message", "selection must be a list of [anchor, head] pairs")
        pairs.append([pair[0], pair[1]])
    return pairs
