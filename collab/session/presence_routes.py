"""The session's presence routes: who is here and where their carets are, across the doors.

A mixin of `Session` (router.py), kept apart so each module stays readable: awareness from
Yjs peers and other processes, text clients' presence, their mirror into awareness
(`mirror.TextAwareness`: coalesced, renewed on `tick`) and Yjs cursors shown to text
clients in code points.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from collab.session import presence
from collab.session.awareness import AwarenessChange, AwarenessTable, TooManyStates
from collab.session.mirror import TextAwareness, selection_of
from collab.session.ot_server import catch_up
from collab.session.peers import Peer, PeerId
from collab.session.text_messages import MessageError, PresenceMessage
from collab.wire import CloseCode, ErrorCode
from collab.yjs import protocol

if TYPE_CHECKING:
    from collab.config import Settings
    from collab.session.document import Document

log = logging.getLogger(__name__)


class PresenceRoutes:
    """Awareness and presence handling of a `Session` (which provides what is declared)."""

    name: str
    settings: Settings
    document: Document
    awareness: AwarenessTable
    text_awareness: TextAwareness
    peers: dict[PeerId, Peer]
    _yjs_peers: list[PeerId]
    _awareness_out: list[bytes]
    _remote_awareness: dict[str, set[int]]

    if TYPE_CHECKING:

        @property
        def rev(self) -> int: ...
        @property
        def mirror(self) -> str: ...
        def close_peer(self, peer_id: PeerId, code: int, reason: str) -> None: ...
        def _broadcast_text(
            self, message: dict[str, Any], exclude: PeerId | None = None
        ) -> None: ...
        def _peer_of(self, client: str | None) -> PeerId | None: ...
        def _send(self, peer_id: PeerId, data: bytes | str) -> None: ...

    def tick(self, now: float | None = None) -> bool:
        """Time passed (`now`: the session's clock by default). Text clients' caret moves
        held back by the coalescing, and renewals of their awareness, go out; True when
        there is output to take."""
        now = self.document.clock() if now is None else now
        entries = self.text_awareness.tick(now, self.document.text_items)
        if entries:
            self._share_awareness(protocol.encode_awareness(entries))
        return bool(entries)

    def next_tick_at(self) -> float | None:
        """When `tick` is next needed, on the session's clock; None: not until an event
        (a document with only Yjs peers needs none)."""
        return self.text_awareness.next_due()

    def receive_remote_awareness(self, process: str, data: bytes) -> None:
        """Awareness from another process's peers: kept, and shown to ours."""
        try:
            message = protocol.decode(data)
        except protocol.ProtocolError:
            log.warning("%s: bad awareness message from process %s", self.name, process)
            return
        if not isinstance(message, protocol.Awareness):
            return
        owned = self._remote_awareness.setdefault(process, set())
        try:
            change = self.awareness.receive(owned, message.entries, limit=None)
        except TooManyStates as error:  # the document's awareness bytes are capped
            log.warning("%s: awareness from process %s dropped: %s", self.name, process, error)
            return
        self._show_awareness(change, data, publish=False)

    def share_local_awareness(self) -> None:
        """Publish every awareness state this process's peers hold (after the bus came
        back, the other processes may have forgotten them)."""
        local = {cid for peer in self.peers.values() for cid in peer.awareness_ids}
        entries = [e for e in self.awareness.entries() if e.client_id in local]
        if entries:
            self._awareness_out.append(protocol.encode_awareness(entries))

    def forget_process(self, process: str) -> None:
        """Another process is gone: its peers' awareness goes with it."""
        owned = self._remote_awareness.pop(process, set())
        states = {cid: self.awareness.states.get(cid, (0, None))[1] for cid in owned}
        gone = self.awareness.remove(owned)
        for entry in gone:
            who = presence.presence_id(entry.client_id, states[entry.client_id])
            self._broadcast_text(presence.left(who))
        if gone:
            self._broadcast_yjs(protocol.encode_awareness(gone))

    def _receive_awareness(self, peer: Peer, message: protocol.Awareness, data: bytes) -> None:
        """A Yjs peer's awareness entries; those for text clients' ids are ignored.

        Only the server speaks for text clients. Ignored, not refused: y-websocket
        providers send back every awareness change they hear of (and the removals their
        30 s timeout makes), text clients' entries included, so honest peers send them too.
        """
        entries = [e for e in message.entries if not presence.is_text_client_id(e.client_id)]
        if len(entries) != len(message.entries):
            data = protocol.encode_awareness(entries)
        try:
            change = self.awareness.receive(peer.awareness_ids, entries)
        except TooManyStates as error:
            self.close_peer(peer.id, CloseCode.POLICY, error.reason)
            return
        self._show_awareness(change, data, publish=True)

    def _show_awareness(self, change: AwarenessChange, data: bytes, publish: bool) -> None:
        for client_id, old in change.removed:
            who = presence.presence_id(client_id, old)
            if not self._is_local_text_client(who):
                self._broadcast_text(presence.left(who))
        text_peers = any(peer.joined for peer in self.peers.values())
        for client_id, state in change.updated if text_peers else ():
            shown = presence.yjs_presence(
                client_id, state, self._is_local_text_client, self._resolve_cursor
            )
            if shown is not None:
                self._broadcast_text(shown)
        if change.changed:
            if publish:
                self._share_awareness(data)
            else:
                self._broadcast_yjs(data)

    def _share_awareness(self, message: bytes) -> None:
        """An awareness change of this process: to our Yjs peers and the other processes."""
        self._broadcast_yjs(message)
        self._awareness_out.append(message)

    def _resolve_cursor(self, cursor: object) -> presence.Selection | None:
        """A Yjs awareness cursor in code points at the current revision."""
        if cursor is None:
            return None
        return selection_of(self.document.text_items(), cursor, self.settings.text_name)

    def _is_local_text_client(self, client: str) -> bool:
        return self._peer_of(client) is not None

    def _broadcast_yjs(self, message: bytes) -> None:
        for peer_id in self._yjs_peers:
            self._send(peer_id, message)

    def _presence(self, peer: Peer, message: PresenceMessage) -> None:
        assert peer.presence is not None
        if message.user is not None:
            peer.presence["user"] = peer.shown_user(message.user)
        selection = message.selection
        if selection is not None:
            assert message.rev is not None
            if message.rev > self.rev:
                raise MessageError(ErrorCode.BAD_MESSAGE, "presence needs the rev of its selection")
            steps = self.settings.max_catch_up_steps
            missed = catch_up(self.document, message.rev, 1, steps)
            if missed is None:  # the client sends a fresh one, at its current revision
                raise MessageError(ErrorCode.TOO_OLD, f"presence at rev {message.rev} is too old")
            ops = [revision.op for revision in missed]
            selection = presence.transform_selection(selection, ops, len(self.mirror))
        peer.presence["selection"] = selection
        self._announce_presence(peer)

    def _announce_presence(self, peer: Peer) -> None:
        """Tell text peers and Yjs peers (as awareness) where this text client is."""
        assert peer.client is not None and peer.presence is not None
        self._broadcast_text(self._presence_message(peer), exclude=peer.id)
        peer.awareness_ids.add(presence.awareness_id_for(peer.client))
        now, items = self.document.clock(), self.document.text_items
        entry = self.text_awareness.changed(peer.client, peer.presence, now, items)
        if entry is not None:  # else held back a moment (coalesced): `tick` sends it
            self._share_awareness(protocol.encode_awareness([entry]))

    @staticmethod
    def _presence_message(peer: Peer) -> dict[str, Any]:
        assert peer.client is not None and peer.presence is not None
        return presence.text_presence(
            peer.client, peer.presence["user"], peer.presence["selection"]
        )

    def _presence_list(self, exclude: PeerId) -> list[dict[str, Any]]:
        present = [
            self._presence_message(peer)
            for peer in self.peers.values()
            if peer.joined and peer.client is not None and peer.id != exclude
        ]
        for client_id, (_, state) in self.awareness.states.items():
            shown = presence.yjs_presence(
                client_id, state, self._is_local_text_client, self._resolve_cursor
            )
            if shown is not None:
                present.append(shown)
        return present
