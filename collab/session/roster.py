"""The roster: who is here and where their carets are, across the doors and processes.

A part the `Session` (router.py) holds. It keeps the awareness table (Yjs peers', other
processes' and text clients' states), mirrors text clients' presence into awareness
(`mirror.TextAwareness`: coalesced, renewed on `tick`), shows Yjs cursors to text clients
in code points, and collects the awareness changes meant for the other processes. It
reaches peers only through the narrow `Outlets` the session gives it.

Who may speak for an awareness id: a Yjs peer for its own ids, the server alone for a text
client's (see `Roster.speaks_for_text_client`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from collab.config import Settings
from collab.session import presence
from collab.session.awareness import AwarenessChange, AwarenessTable, TooManyStates
from collab.session.document import Document
from collab.session.mirror import TextAwareness, selection_of
from collab.session.ot_server import catch_up
from collab.session.peers import Peer, PeerId
from collab.session.text_messages import MessageError, PresenceMessage
from collab.wire import CloseCode, ErrorCode
from collab.yjs import protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outlets:
    """What the roster may ask of its session."""

    send: Callable[[PeerId, bytes | str], None]
    broadcast_text: Callable[[dict[str, Any], PeerId | None], None]  # to joined text peers
    close_peer: Callable[[PeerId, int, str], None]
    peer_of: Callable[[str], PeerId | None]  # the live peer of a text client id


class Roster:
    """Awareness and presence of one document's peers (and other processes' peers)."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        document: Document,
        peers: dict[PeerId, Peer],
        yjs_peers: list[PeerId],
        outlets: Outlets,
    ) -> None:
        """`peers` and `yjs_peers` are the session's own collections, read here only."""
        self.name = name
        self.settings = settings
        self.document = document
        self.peers = peers
        self.yjs_peers = yjs_peers
        self.outlets = outlets
        self.awareness = AwarenessTable(
            settings.max_awareness_bytes_per_peer, settings.max_awareness_bytes_per_document
        )
        self.text_awareness = TextAwareness(
            self.awareness, settings.text_name, settings.awareness_renew_seconds
        )
        self.outgoing: list[bytes] = []  # awareness changes for the other processes (bus)
        self._remote: dict[str, set[int]] = {}  # process -> client ids it speaks for

    # ------------------------------------------------------------------ time

    def tick(self, now: float | None = None) -> bool:
        """Time passed (`now`: the session's clock by default). Text clients' caret moves
        held back by the coalescing, and renewals of their awareness, go out; True when
        there is output to take."""
        now = self.document.clock() if now is None else now
        entries = self.text_awareness.tick(now, self.document.text_items)
        if entries:
            self._share(protocol.encode_awareness(entries))
        return bool(entries)

    def next_tick_at(self) -> float | None:
        """When `tick` is next needed, on the session's clock; None: not until an event."""
        return self.text_awareness.next_due()

    def take_outgoing(self) -> list[bytes]:
        outgoing, self.outgoing = self.outgoing, []
        return outgoing

    # ------------------------------------------------------------------ other processes

    def receive_remote(self, process: str, data: bytes) -> None:
        """Awareness from another process's peers: kept, and shown to ours."""
        try:
            message = protocol.decode(data)
        except protocol.ProtocolError:
            log.warning("%s: bad awareness message from process %s", self.name, process)
            return
        if not isinstance(message, protocol.Awareness):
            return
        owned = self._remote.setdefault(process, set())
        try:
            change = self.awareness.receive(owned, message.entries, limit=None)
        except TooManyStates as error:  # the document's awareness bytes are capped
            log.warning("%s: awareness from process %s dropped: %s", self.name, process, error)
            return
        self._show(change, data, publish=False)

    def share_local(self) -> None:
        """Publish every awareness state this process's peers hold (after the bus came
        back, the other processes may have forgotten them)."""
        local = {cid for peer in self.peers.values() for cid in peer.awareness_ids}
        entries = [e for e in self.awareness.entries() if e.client_id in local]
        if entries:
            self.outgoing.append(protocol.encode_awareness(entries))

    def forget_process(self, process: str) -> None:
        """Another process is gone: its peers' awareness goes with it."""
        owned = self._remote.pop(process, set())
        states = {cid: self.awareness.states.get(cid, (0, None))[1] for cid in owned}
        gone = self.awareness.remove(owned)
        for entry in gone:
            who = presence.presence_id(entry.client_id, states[entry.client_id])
            self.outlets.broadcast_text(presence.left(who), None)
        if gone:
            self._broadcast_yjs(protocol.encode_awareness(gone))

    # ------------------------------------------------------------------ Yjs peers

    def joined_yjs(self, peer_id: PeerId) -> None:
        """A Yjs peer connected: it learns who is here."""
        entries = self.awareness.entries()
        if entries:
            self.outlets.send(peer_id, protocol.encode_awareness(entries))

    def receive(self, peer: Peer, message: protocol.Awareness, data: bytes) -> None:
        """A Yjs peer's awareness entries; those that speak for a text client are ignored.

        Ignored, not refused: y-websocket providers send back every awareness change they
        hear of (and the removals their 30 s timeout makes), text clients' entries
        included, so honest peers send them too.
        """
        entries = [e for e in message.entries if not self.speaks_for_text_client(e)]
        if len(entries) != len(message.entries):
            data = protocol.encode_awareness(entries)
        try:
            change = self.awareness.receive(peer.awareness_ids, entries)
        except TooManyStates as error:
            self.outlets.close_peer(peer.id, CloseCode.POLICY, error.reason)
            return
        self._show(change, data, publish=True)

    def speaks_for_text_client(self, entry: protocol.AwarenessEntry) -> bool:
        """Whether a Yjs peer's entry speaks for a text client (only the server may).

        It does when its state says it is a text client's (``collab.kind == "text"``), or
        when the id it names holds a text client's state here: one this server set for a
        text client connected to it, or one another process set for its own. Those states
        enter the table only from the server and other processes, since a Yjs peer's never
        pass this check. The id alone says nothing: text clients' ids have bit 52 set
        (`presence.TEXT_CLIENT_BIT`), but so do about half of pycrdt's 53-bit client ids.
        An id a Yjs peer claimed before a text client came to need it is taken from it
        when the text client announces itself (`_claim`), and a Yjs peer that leaves never
        takes a text client's state with it (`left`: the claim may have been another
        process's).
        """
        return presence.is_text_state(entry.state) or self._holds_text_client(entry.client_id)

    # ------------------------------------------------------------------ text peers

    def presence(self, peer: Peer, message: PresenceMessage) -> None:
        """A text client's presence message: its user and its selection at a revision."""
        assert peer.presence is not None
        if message.user is not None:
            peer.presence["user"] = peer.shown_user(message.user)
        selection = message.selection
        if selection is not None:
            assert message.rev is not None
            if message.rev > self.document.rev:
                raise MessageError(ErrorCode.BAD_MESSAGE, "presence needs the rev of its selection")
            steps = self.settings.max_catch_up_steps
            missed = catch_up(self.document, message.rev, 1, steps)
            if missed is None:  # the client sends a fresh one, at its current revision
                raise MessageError(ErrorCode.TOO_OLD, f"presence at rev {message.rev} is too old")
            ops = [revision.op for revision in missed]
            selection = presence.transform_selection(selection, ops, self.document.text_length)
        peer.presence["selection"] = selection
        self.announce(peer)

    def announce(self, peer: Peer) -> None:
        """Tell text peers and Yjs peers (as awareness) where this text client is."""
        assert peer.client is not None and peer.presence is not None
        self.outlets.broadcast_text(self.presence_message(peer), peer.id)
        awareness_id = presence.awareness_id_for(peer.client)
        if awareness_id not in peer.awareness_ids:
            self._claim(awareness_id)
            peer.awareness_ids.add(awareness_id)
        now, items = self.document.clock(), self.document.text_items
        entry = self.text_awareness.changed(peer.client, peer.presence, now, items)
        if entry is not None:  # else held back a moment (coalesced): `tick` sends it
            self._share(protocol.encode_awareness([entry]))

    def left(self, peer: Peer) -> None:
        """A peer is gone: its awareness states and presence go with it."""
        ids = peer.awareness_ids
        if peer.client is None:  # not a text client: never take a text client's state
            ids = {i for i in ids if not self._holds_text_client(i)}
        gone = self.awareness.remove(ids)
        if peer.client is not None:
            self.text_awareness.forget(peer.client)
            self.outlets.broadcast_text(presence.left(peer.client), None)
        if gone:
            self._share(protocol.encode_awareness(gone))

    @staticmethod
    def presence_message(peer: Peer) -> dict[str, Any]:
        assert peer.client is not None and peer.presence is not None
        return presence.text_presence(
            peer.client, peer.presence["user"], peer.presence["selection"]
        )

    def presence_list(self, exclude: PeerId) -> list[dict[str, Any]]:
        """Everyone here but `exclude`, as text clients see them (for a welcome)."""
        present = [
            self.presence_message(peer)
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

    # ------------------------------------------------------------------ inside

    def _claim(self, awareness_id: int) -> None:
        """A text client's id is the server's to speak for from now on: no Yjs peer or
        other process that held it (a 53-bit pycrdt id, or a peer that chose it on
        purpose) can change or remove the text client's state any more."""
        for peer in self.peers.values():
            peer.awareness_ids.discard(awareness_id)
        for owned in self._remote.values():
            owned.discard(awareness_id)

    def _holds_text_client(self, awareness_id: int) -> bool:
        """Whether the state kept for an id is a text client's (ours or another process's)."""
        known = self.awareness.states.get(awareness_id)
        return known is not None and presence.is_text_state(known[1])

    def _show(self, change: AwarenessChange, data: bytes, publish: bool) -> None:
        for client_id, old in change.removed:
            who = presence.presence_id(client_id, old)
            if not self._is_local_text_client(who):
                self.outlets.broadcast_text(presence.left(who), None)
        text_peers = any(peer.joined for peer in self.peers.values())
        for client_id, state in change.updated if text_peers else ():
            shown = presence.yjs_presence(
                client_id, state, self._is_local_text_client, self._resolve_cursor
            )
            if shown is not None:
                self.outlets.broadcast_text(shown, None)
        if change.changed:
            if publish:
                self._share(data)
            else:
                self._broadcast_yjs(data)

    def _share(self, message: bytes) -> None:
        """An awareness change of this process: to our Yjs peers and the other processes."""
        self._broadcast_yjs(message)
        self.outgoing.append(message)

    def _resolve_cursor(self, cursor: object) -> presence.Selection | None:
        """A Yjs awareness cursor in code points at the current revision."""
        if cursor is None:
            return None
        return selection_of(self.document.text_items(), cursor, self.settings.text_name)

    def _is_local_text_client(self, client: str) -> bool:
        return self.outlets.peer_of(client) is not None

    def _broadcast_yjs(self, message: bytes) -> None:
        for peer_id in self.yjs_peers:
            self.outlets.send(peer_id, message)

    def author_of(self, peer: Peer) -> str | None:
        """Who a peer's changes are by, in their records: the authenticate hook's user;
        without one, "~" and the name the client gave (hello/presence or awareness),
        marked so that a name nobody verified is never taken for one somebody did."""
        if peer.user is not None:
            return peer.user
        user = peer.presence["user"] if peer.presence is not None else None
        for awareness_id in peer.awareness_ids if user is None else ():
            state = self.awareness.states.get(awareness_id, (0, None))[1]
            user = state.get("user") if isinstance(state, dict) else None
            if isinstance(user, dict) and user.get("name"):
                break
        name = user.get("name") if isinstance(user, dict) else None
        return f"~{str(name)[:64]}" if isinstance(name, str) and name else None
