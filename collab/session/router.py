"""The session: one document and everyone connected to it, as a sans-I/O state machine.

Drivers feed it events (a peer connected, a message arrived, a peer left, server code
changed the text) and take its output: records to make durable, then messages to send,
then connections to close. It never awaits, opens a socket or touches a file, so the web
server, an embedding server, the replay tools and the tests all drive the very same code.

The session routes; the parts decide: the `Document` (state and revisions), the
`OTServer` (text clients' ops), the `Roster` (awareness and presence), and the `Outbox`.

Durable before visible: `take_output()` hands back the records of every change together
with the messages that reveal them. The driver writes the records (one fsync) before it
sends any of the messages.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from collab.config import Settings
from collab.session import presence
from collab.session.acks import AckTable
from collab.session.awareness import AwarenessTable
from collab.session.document import Document
from collab.session.kept import Clocks
from collab.session.ot_server import (
    OTServer,
    inserted_bytes,
    refuse_if_too_big,
    too_big_for_text,
)
from collab.session.outbox import Message, Outbox, Output
from collab.session.peers import Peer, PeerId, PeerKind, PeerState
from collab.session.revision import ChangeRefused, Committed, Revision
from collab.session.roster import Outlets, Roster
from collab.session.sync_answers import EMPTY_STATE_VECTOR, SyncAnswers
from collab.session.text_messages import Hello, MessageError, OpMessage, parse
from collab.session.welcome import welcome_message
from collab.storage.contract import Record
from collab.storage.generations import OLD_GENERATION, OLD_YJS_COPY, Generation
from collab.text import ops as textops
from collab.wire import CloseCode, ErrorCode, client_id_from_secret
from collab.yjs import hocuspocus, protocol

if TYPE_CHECKING:
    from collab.storage.contract import StoredDocument

log = logging.getLogger(__name__)

ACKED_UNKNOWN = (
    "the server no longer remembers this client's ops (more text clients edited since your "
    "revision than it keeps): do not send your in-flight op again, take this text"
)


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
        self.document = Document(self.settings, stored, clock, client_id, track_text)
        self.acks = AckTable.from_stored(stored, self.settings.max_remembered_clients)
        self.ot = OTServer(self.document, self.acks, self.settings.max_catch_up_steps)
        self.outbox = Outbox()
        self.generation = Generation()  # the hub sets the stored one
        self.peers: dict[PeerId, Peer] = {}
        self._yjs_peers: list[PeerId] = []  # the Yjs peers' ids, for the hot broadcast loop
        outlets = Outlets(self._send, self._broadcast_text, self.close_peer, self._peer_of)
        self.roster = Roster(
            name, self.settings, self.document, self.peers, self._yjs_peers, outlets
        )
        self._text_peers = 0  # how many text peers: none, and a revision skips their loops
        self.sync_answers = SyncAnswers(self.document)
        self._records: list[Record] = []
        self._revisions: list[Revision] = []
        self._closes: list[tuple[PeerId, int, str]] = []

    # ------------------------------------------------------------------ reading

    @property
    def rev(self) -> int:
        return self.document.rev

    @property
    def mirror(self) -> str:
        """The shared text as a Python str (code points)."""
        return self.document.mirror

    @property
    def state(self) -> bytes:
        """The whole document as one Yjs update."""
        return self.document.state

    @property
    def history(self) -> deque[Revision]:
        """The revisions kept in memory for text clients to catch up (oldest first)."""
        return self.document.history

    @property
    def awareness(self) -> AwarenessTable:
        """Every awareness state known (the roster's)."""
        return self.roster.awareness

    @property
    def snapshot_meta(self) -> bytes:
        """What a snapshot taken now must carry besides the state (the ack table)."""
        return self.acks.encode()

    # ------------------------------------------------------------------ events

    def connect_yjs(
        self,
        peer_id: PeerId,
        user: str | None = None,
        readonly: bool = False,
        sync_status: bool = False,
    ) -> None:
        """A Yjs peer connected: send it sync step 1 and the awareness states we know.

        `sync_status` (a Hocuspocus peer): its step 2s and updates are answered with
        SyncStatus in the output holding their record (so sent after the commit), and each
        step 1 it sends with ours, none on connect: its provider counts on exactly that.
        """
        self.peers[peer_id] = Peer(peer_id, PeerKind.YJS, user, readonly, sync_status=sync_status)
        self._yjs_peers.append(peer_id)
        if not sync_status:
            self._send(peer_id, protocol.encode_sync_step1(self.document.encoded_state_vector()))
        self.roster.joined_yjs(peer_id)

    def connect_text(
        self, peer_id: PeerId, user: str | None = None, readonly: bool = False
    ) -> None:
        """A text-operation peer connected; it says hello next (or is closed: too big)."""
        self.peers[peer_id] = Peer(peer_id, PeerKind.TEXT, user, readonly)
        self._text_peers += 1
        if (why := too_big_for_text(self.document, joining=True)) is not None:
            self.close_peer(peer_id, CloseCode.TOO_BIG, why)
        else:
            self.document.track_text(True)

    def disconnect(self, peer_id: PeerId) -> None:
        """A peer left: forget it and tell the others its awareness/presence is gone."""
        peer = self.peers.pop(peer_id, None)
        self.outbox.drop(peer_id)
        if peer is None:
            return
        if peer.kind is PeerKind.YJS:
            self._yjs_peers.remove(peer_id)
        else:
            self._text_peers -= 1
            following = (p.kind is PeerKind.TEXT and not p.closing for p in self.peers.values())
            self.document.track_text(any(following))
        self.roster.left(peer)

    def receive(self, peer_id: PeerId, data: bytes | str) -> None:
        """One WebSocket message from a peer. Bad input closes that peer, never the session."""
        peer = self.peers.get(peer_id)
        if peer is None or peer.closing:
            return
        try:
            if peer.kind is PeerKind.YJS:
                self._receive_yjs(peer, data)
            else:
                self._receive_text(peer, data)
        except Exception:  # a bug must cost one connection, not the document
            log.exception("%s: error handling a message from peer %s", self.name, peer_id)
            self.close_peer(peer_id, CloseCode.INTERNAL, "internal error handling your message")

    def close_peer(self, peer_id: PeerId, code: int, reason: str) -> None:
        """Ask the driver to close a peer (it will also call `disconnect`).

        From now on the peer's messages are ignored.
        """
        peer = self.peers.get(peer_id)
        if peer is not None:
            peer.state = PeerState.CLOSING
        self._closes.append((peer_id, code, protocol.close_reason(reason)))

    def resync(self, peer_id: PeerId) -> bool:
        """A peer fell behind and its queued messages were dropped: send it the full state.

        Returns False when the peer cannot be resynced: text peers reconnect instead, and
        so do Hocuspocus peers (their provider counts the SyncStatus messages dropped).
        """
        peer = self.peers.get(peer_id)
        if peer is None or peer.kind is not PeerKind.YJS or peer.sync_status:
            return False
        self.outbox.replace(peer_id, self.sync_answers.answer(EMPTY_STATE_VECTOR))
        return True

    def take_output(self) -> Output:
        """Everything the driver must do now: persist `records`, then send, then close."""
        output = Output(
            self._records,
            self._revisions,
            self.outbox.take(),
            self._closes,
            self.roster.take_outgoing(),
        )
        self._records, self._revisions, self._closes = [], [], []
        self.sync_answers.batch_ended()
        return output

    # ------------------------------------------------------------------ presence (the roster)

    def tick(self, now: float | None = None) -> bool:
        """Time passed: held-back caret moves and renewals go out (`Roster.tick`)."""
        return self.roster.tick(now)

    def next_tick_at(self) -> float | None:
        """When `tick` is next needed (`Roster.next_tick_at`)."""
        return self.roster.next_tick_at()

    def receive_remote_awareness(self, process: str, data: bytes) -> None:
        """Awareness from another process's peers: kept, and shown to ours."""
        self.roster.receive_remote(process, data)

    def share_local_awareness(self) -> None:
        """Publish our peers' awareness states (after the bus came back)."""
        self.roster.share_local()

    def forget_process(self, process: str) -> None:
        """Another process is gone: its peers' awareness goes with it."""
        self.roster.forget_process(process)

    # ------------------------------------------------------------------ other processes

    def apply_committed(self, record: Record) -> None:
        """A revision another process committed (durable there): show it to our peers.

        Raises ValueError when it does not follow this session's revision: the driver
        fetches what it missed from the store first.
        """
        revision = self.document.apply_committed(record)
        self.ot.observe(revision)
        self.outbox.send_update(self._yjs_peers, record.update, None)
        self._broadcast_revision(revision, exclude=None)
        self._close_text_door_if_too_big()

    def compacted(
        self, rev: int, state: bytes, framed: bytes | None = None, clocks: Clocks | None = None
    ) -> None:
        """The driver wrote a snapshot of `state` at `rev`: the log now starts there.
        `framed`: `state` framed off the loop, `clocks`: its state vector (`Document`)."""
        self.document.compacted(rev, state, framed, clocks)

    # ------------------------------------------------------------------ server-side edits

    def edit_text(
        self, op: textops.Op, origin: str = "server", user: str | None = None
    ) -> Revision | None:
        """Apply a code-point op made by server code to the current text.

        Raises `ChangeRefused` when the op does not fit the text or the document is too big
        for text operations (`too_big_for_text`; an op on a text not followed takes it
        whole), `textops.OpError` when it is not a well-formed op.
        """
        textops.check(op)
        refuse_if_too_big(self.document, inserted_bytes(op), not self.document.tracking_text)
        committed = self.document.apply_op(op, origin, user)
        if committed is None:
            return None
        self._publish(committed, sender=None)
        return committed.revision

    def replace_text(self, new_text: str, origin: str = "server", user: str | None = None) -> None:
        """Make the shared text equal to `new_text` with the smallest single change."""
        self.edit_text(textops.diff(self.mirror, new_text), origin, user)

    def apply_update(self, update: bytes, origin: str, user: str | None = None) -> Record | None:
        """Apply a Yjs update from server code (or an import); returns its record, if any."""
        committed = self.document.apply_update(update, origin, user)
        if committed is None:
            return None
        self._publish(committed, sender=None)
        return committed.record

    # ------------------------------------------------------------------ Yjs peers

    def _receive_yjs(self, peer: Peer, data: bytes | str) -> None:
        if isinstance(data, str):
            self.close_peer(
                peer.id, CloseCode.UNSUPPORTED, "text frames are not y-websocket messages"
            )
            return
        try:
            message = protocol.decode(data)
        except protocol.ProtocolError as error:
            self.close_peer(peer.id, error.close_code, error.reason)
            return
        try:
            self._handle_yjs(peer, message, data)
        except ChangeRefused as error:
            too_big = error.code is ErrorCode.TOO_LARGE
            code = CloseCode.TOO_BIG if too_big else CloseCode.PROTOCOL_ERROR
            self.close_peer(peer.id, code, error.message)

    def _handle_yjs(self, peer: Peer, message: protocol.Message, data: bytes) -> None:
        if isinstance(message, protocol.SyncStep1):
            if not self._old_copy(peer, message.state_vector, None):
                for answer in self.sync_answers.answer_peer(peer, message.state_vector):
                    self._send(peer.id, answer)
                if peer.sync_status:
                    state_vector = self.document.encoded_state_vector()
                    self._send(peer.id, protocol.encode_sync_step1(state_vector))
        elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
            if peer.readonly:  # a Hocuspocus peer hears SyncStatus false
                denied = protocol.encode_auth_denied("read-only: update not applied")
                self._send(peer.id, hocuspocus.SYNC_STATUS_REFUSED if peer.sync_status else denied)
                return
            if self._old_copy(peer, None, message.update):
                return
            author = self.roster.author_of(peer)
            committed = self.document.apply_update(message.update, f"yjs:{peer.id}", author)
            if committed is not None:
                self._publish(committed, sender=peer.id)
            if peer.sync_status:
                self._send(peer.id, hocuspocus.SYNC_STATUS_APPLIED)
        elif isinstance(message, protocol.Awareness):
            self.roster.receive(peer, message, data)
        elif isinstance(message, protocol.QueryAwareness):
            self._send(peer.id, protocol.encode_awareness(self.awareness.entries()))
        else:
            self.close_peer(peer.id, CloseCode.UNSUPPORTED, "unexpected message from a client")

    def _old_copy(self, peer: Peer, state_vector: bytes | None, update: bytes | None) -> bool:
        """Close a peer holding an earlier generation's items (checked until a step 1 passes)."""
        if not self.generation.retired or (update is not None and peer.current_copy):
            return False
        old = self.generation.old_copy(self.document.state_vector(), state_vector, update)
        peer.current_copy = state_vector is not None and not old
        if old:
            self.close_peer(peer.id, CloseCode.OLD_GENERATION, OLD_YJS_COPY)
        return old

    # ------------------------------------------------------------------ text peers

    def _receive_text(self, peer: Peer, data: bytes | str) -> None:
        if isinstance(data, bytes):
            self.close_peer(
                peer.id, CloseCode.UNSUPPORTED, "binary frames are not text-protocol messages"
            )
            return
        try:
            message = parse(data, self.settings.max_op_components)
            if isinstance(message, Hello):
                self._hello(peer, message)
            elif not peer.joined:
                raise MessageError(ErrorCode.NOT_JOINED, "say hello first")
            elif isinstance(message, OpMessage):
                self._text_op(peer, message)
            else:
                self.roster.presence(peer, message)
        except MessageError as error:
            self._send_error(peer, error.code, error.message, error.seq)
        except ChangeRefused as error:
            seq = message.seq if isinstance(message, OpMessage) else None
            self._send_error(peer, error.code, error.message, seq)
        except textops.OpError as error:
            seq = message.seq if isinstance(message, OpMessage) else None
            self._send_error(peer, ErrorCode.BAD_OP, str(error), seq)

    def _hello(self, peer: Peer, hello: Hello) -> None:
        if peer.joined:
            raise MessageError(ErrorCode.BAD_MESSAGE, "hello was already said")
        client = client_id_from_secret(hello.secret)
        older = self._peer_of(client)
        if older is not None:  # the same client reconnected before its old socket died
            self._supersede(self.peers[older])
        peer.client, peer.state = client, PeerState.JOINED
        peer.presence = {"user": peer.shown_user(hello.user), "selection": None}
        welcome: dict[str, Any] = {"type": "welcome", "client": client, "rev": self.rev}
        welcome["generation"] = self.generation.id
        if hello.generation not in (None, self.generation.id):
            welcome["reset"] = OLD_GENERATION  # its copy is not this document's: start over
            hello = Hello(hello.secret, None, hello.user)
        missed = None if hello.rev is None else self.document.revisions_since(hello.rev)
        text = self.document.text_now if missed is None else None  # last, in parts if long
        if missed is not None:
            welcome["ops"] = [revision.as_message() for revision in missed]
        welcome["acked"] = self.acks.acked(client, hello.rev)
        if welcome["acked"] is None and missed is None and hello.rev is not None:
            self._send_error(peer, ErrorCode.ACKED_UNKNOWN, ACKED_UNKNOWN)
        welcome["max_message_bytes"] = self.settings.max_message_bytes  # bigger ops: split
        if peer.readonly:
            welcome["readonly"] = True  # the page shows the text, not editable
        if peer.user is not None:
            welcome["user"] = peer.user  # who presence and history show, not the hello's name
        welcome["presence"] = self.roster.presence_list(exclude=peer.id)
        self._send(peer.id, welcome_message(welcome, text))
        self.roster.announce(peer)

    def _supersede(self, old: Peer) -> None:
        """Close an older connection of a text client; the new one takes its presence."""
        assert old.client is not None
        old.awareness_ids.discard(presence.awareness_id_for(old.client))
        old.client = None
        self.close_peer(old.id, CloseCode.SUPERSEDED, "a newer connection of this client")

    def _text_op(self, peer: Peer, message: OpMessage) -> None:
        assert peer.client is not None
        author, readonly = self.roster.author_of(peer), peer.readonly
        rev, op, more = message.rev, message.op, message.more
        submitted = self.ot.submit(peer.client, message.seq, rev, op, author, readonly, more)
        if submitted.committed is not None:
            self._publish(submitted.committed, sender=peer.id)
        self._send_json(peer.id, {"type": "ack", "seq": message.seq, "rev": submitted.ack_rev})

    def submit_op(self, client: str, message: OpMessage, user: str | None = None) -> int:
        """A text op without a connection (HTTP), transformed and acked like a client's."""
        refuse_if_too_big(self.document, joining=not self.document.tracking_text)
        self.document.follow_text()  # from now on, so that the next ops may be late
        submitted = self.ot.submit(client, message.seq, message.rev, message.op, user, False)
        if submitted.committed is not None:
            self._publish(submitted.committed, sender=None)
        return submitted.ack_rev

    # ------------------------------------------------------------------ publishing changes

    def _publish(self, committed: Committed, sender: PeerId | None) -> None:
        """A new revision: to the log first, then to every peer."""
        record, revision = committed.record, committed.revision
        self._records.append(record)
        self._revisions.append(revision)
        self.ot.observe(revision)
        # A text client's change is echoed to Yjs peers; a Yjs peer's own update is
        # echoed to it too (as the reference server does) unless the batch is all its own.
        self.outbox.send_update(self._yjs_peers, record.update, sender)
        author = self._peer_of(revision.client)
        self._broadcast_revision(revision, exclude=author)
        self._close_text_door_if_too_big()

    def _close_text_door_if_too_big(self) -> None:
        """Too big for text clients now (`too_big_for_text`), whichever process made the
        change: close them, stop following."""
        if not self.document.tracking_text or not (why := too_big_for_text(self.document)):
            return
        for peer in self.peers.values():
            if peer.kind is PeerKind.TEXT and not peer.closing:
                self.close_peer(peer.id, CloseCode.TOO_BIG, why)
        self.document.follow_text(False)

    def _broadcast_revision(self, revision: Revision, exclude: PeerId | None) -> None:
        if not self._text_peers:  # only Yjs peers: they had the update (the hot path)
            return
        message = None
        for peer in self.peers.values():
            if peer.joined and peer.id != exclude:
                message = message or json.dumps(revision.as_message(), ensure_ascii=False)
                self._send(peer.id, message)
        # Every caret moves through the revision in one pass over its op.
        presence.move_shown([p.presence for p in self.peers.values() if p.presence], revision.op)

    def _broadcast_text(self, message: dict[str, Any], exclude: PeerId | None = None) -> None:
        encoded = None
        for peer in self.peers.values():
            if peer.joined and peer.id != exclude:
                encoded = encoded or json.dumps(message, ensure_ascii=False)
                self._send(peer.id, encoded)

    def _peer_of(self, client: str | None) -> PeerId | None:
        if client is None:
            return None
        for peer in self.peers.values():
            if peer.client == client and not peer.closing:
                return peer.id
        return None

    def _send_error(self, peer: Peer, code: str, message: str, seq: int | None = None) -> None:
        error: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
        if seq is not None:
            error["seq"] = seq
        self._send_json(peer.id, error)

    def _send_json(self, peer_id: PeerId, message: dict[str, Any]) -> None:
        self._send(peer_id, json.dumps(message, ensure_ascii=False))

    def _send(self, peer_id: PeerId, data: Message) -> None:
        if peer_id in self.peers:
            self.outbox.send(peer_id, data)
