"""A text-operation client as a sans-I/O state machine (docs/text-protocol.md).

The Python twin of the page's script: at most one op in flight, local edits composed into
a buffer meanwhile, server ops transformed over both, reconnects that re-send the op in
flight with the same `seq` so it is never applied twice. It owns no socket: feed it the
server's messages, send what it returns.

    client = TextClient()  # a random secret; client.client_id is its public id
    socket.send(client.hello())
    for message in client.receive(welcome): socket.send(message)
    for message in client.edit([0, "hi"]): socket.send(message)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from collab.text import ops as textops
from collab.text.ops import Op
from collab.wire import client_id_from_secret


@dataclass
class InFlight:
    seq: int
    op: Op  # transformed to apply to the server's text at the client's `rev`


class TextClient:
    """One client of one document."""

    def __init__(self, secret: str | None = None, user: dict[str, str] | None = None) -> None:
        """`secret` proves who this client is across reconnects: keep it private."""
        self.secret = secret or secrets.token_hex(16)
        self.client_id = client_id_from_secret(self.secret)
        self.user = user or {"name": self.client_id}
        self.text = ""  # what the user sees: the server's text plus pending edits
        self.server_text = ""  # the text at `rev`, as the server has it
        self.rev: int | None = None
        self.generation: str | None = None  # of the copy held (welcome), said in hello
        self.reset: str | None = None  # why the last welcome dropped what was not sent
        self.seq = 0
        self.inflight: InFlight | None = None
        self.buffer: Op | None = None
        self.joined = False
        self.errors: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ outgoing

    def hello(self) -> dict[str, Any]:
        """The first message on every (re)connection."""
        self.joined = False
        hello = {"type": "hello", "secret": self.secret, "rev": self.rev, "user": self.user}
        return hello if self.generation is None else {**hello, "generation": self.generation}

    def edit(self, op: Op) -> list[dict[str, Any]]:
        """The user changed the text by `op`; returns what to send now."""
        self.text = textops.apply(self.text, op)
        if self.buffer is None:
            self.buffer = textops.normalize(op)
        else:
            self.buffer = textops.compose(self.buffer, op)
        return self._send_buffer()

    def replace(self, new_text: str) -> list[dict[str, Any]]:
        """The user's text is now `new_text` (a textarea's value): diff and send."""
        if new_text == self.text:
            return []
        return self.edit(textops.diff(self.text, new_text))

    @property
    def pending(self) -> bool:
        """True while some local edit is not acknowledged (not yet on the server's disk)."""
        return self.inflight is not None or self.buffer is not None

    def _send_buffer(self) -> list[dict[str, Any]]:
        if self.inflight is not None or self.buffer is None or not self.joined:
            return []
        self.seq += 1
        self.inflight, self.buffer = InFlight(self.seq, self.buffer), None
        return [self._op_message(self.inflight)]

    def _op_message(self, inflight: InFlight) -> dict[str, Any]:
        return {"type": "op", "seq": inflight.seq, "rev": self.rev, "op": inflight.op}

    # ------------------------------------------------------------------ incoming

    def receive(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """One message from the server; returns what to send in answer."""
        kind = message.get("type")
        if kind == "welcome":
            return self._welcome(message)
        if kind == "ack":
            return self._ack(message["seq"], message["rev"])
        if kind == "op":
            return self._server_op(message)
        if kind == "error":
            self.errors.append(message)
        return []

    def _welcome(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        acked = message.get("acked", 0)
        self.generation = message.get("generation", self.generation)
        self.reset = message.get("reset")
        if self.reset:  # another generation: what was not sent belongs to a text gone
            self.inflight = self.buffer = None
            self.server_text = self.text = message["text"]
            self.rev = message["rev"]
        elif "text" in message:
            self._rebase_onto(message["text"], message["rev"], acked)
        else:
            for entry in message["ops"]:  # our own in-flight op among them acks it
                self._server_op(entry)
        self.joined = True
        if self.inflight is not None:  # not applied yet: the same seq, so never twice
            return [self._op_message(self.inflight)]
        return self._send_buffer()

    def _rebase_onto(self, text: str, rev: int, acked: int | None) -> None:
        """The server sent its whole text: keep what we typed, on top of it.

        `acked` None: the server cannot tell whether the op in flight was applied (error
        `acked-unknown`). It is not sent again: `text` decides, and the error says so."""
        base = self.server_text
        pending: Op = [len(base)] if base else []
        if self.inflight is not None:
            if acked is None or self.inflight.seq <= acked:  # in `text`, or unknowable
                base = textops.apply(base, self.inflight.op)
                pending = [len(base)] if base else []
            else:
                pending = self.inflight.op
        if self.buffer is not None:
            pending = textops.compose(pending, self.buffer)
        theirs = textops.diff(base, text)
        _, mine = textops.transform(theirs, pending)
        self.server_text, self.rev = text, rev
        self.text = textops.apply(text, mine)
        self.inflight = None
        identity = all(isinstance(part, int) and part > 0 for part in mine)
        self.buffer = None if identity else textops.normalize(mine)

    def _ack(self, seq: int, rev: int) -> list[dict[str, Any]]:
        if self.inflight is None or self.inflight.seq != seq:
            return []
        self.server_text = textops.apply(self.server_text, self.inflight.op)
        self.rev, self.inflight = rev, None
        return self._send_buffer()

    def _server_op(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        inflight = self.inflight
        own = message.get("client") == self.client_id
        if inflight is not None and own and message.get("seq") == inflight.seq:
            return self._ack(inflight.seq, message["rev"])
        op: Op = message["op"]
        self.server_text = textops.apply(self.server_text, op)
        if self.inflight is not None:
            op, inflight_op = textops.transform(op, self.inflight.op)
            self.inflight.op = inflight_op
        if self.buffer is not None:
            op, self.buffer = textops.transform(op, self.buffer)
        self.text = textops.apply(self.text, op)
        self.rev = message["rev"]
        return []
