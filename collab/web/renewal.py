"""A fresh token on an open connection: long sessions need not drop when a token expires.

On the text door a client sends ``{"type": "token", "token": "..."}`` and is answered
``{"type": "token", "expires": SECONDS}`` or an ``error`` ``bad-token`` (the old token
still counts until its own end). On the Yjs door it sends collab's auth message
``[2, 1, varString(token)]`` (`collab.yjs.protocol.encode_auth_token`); a token that
cannot be used is answered with y-websocket's permission-denied auth message and its
reason (the provider logs it). Nothing else answers a good one there.

A fresh token moves only the end of the access: it must open this document, speak for
the same user, not be revoked, and may not make a writable connection read-only (to
change what a connection may do, reconnect). The authenticate hook's own end
(`Access.expires`) is not moved by any token.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from collab.access.live import LiveAccess, Ticket
from collab.access.tokens import Grant, TokenError
from collab.hub.channel import Connection
from collab.wire import ErrorCode
from collab.yjs import protocol

TEXT_MARK = '"token"'  # only a text message holding this is parsed here


def text_token(data: bytes | str) -> str | None:
    """The token of a text-door renewal; None for any other message (even a broken one:
    the session answers those)."""
    if not isinstance(data, str) or TEXT_MARK not in data:
        return None
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") != "token":
        return None
    token = message.get("token")
    return token if isinstance(token, str) else ""


_replies: set[asyncio.Task[None]] = set()


def replier(connection: Connection) -> Callable[[bytes | str], None]:
    """Send an answer to one connection beside its document's messages (a whole message,
    written at once when the socket can take it, else by a task of its own)."""

    def reply(data: bytes | str) -> None:
        if not connection.send_now(data):
            task = asyncio.ensure_future(connection.send(data))
            _replies.add(task)
            task.add_done_callback(_sent)

    return reply


def _sent(task: asyncio.Task[None]) -> None:
    _replies.discard(task)
    if not task.cancelled():
        task.exception()  # the connection went away: its reader sees it


class Renewal:
    """One connection's fresh tokens: read from its messages, checked, its ticket moved.

    `check(token)` is the door's token check for this document (raises `TokenError`);
    `reply` sends a message to this connection only.
    """

    def __init__(
        self,
        kind: str,
        live: LiveAccess,
        ticket: Ticket,
        check: Callable[[str], Grant],
        reply: Callable[[bytes | str], None],
        *,
        readonly: bool,
        bound: float | None,
    ) -> None:
        self.kind = kind
        self.live = live
        self.ticket = ticket
        self.check = check
        self.reply = reply
        self.readonly = readonly
        self.bound = bound  # the authenticate hook's end: no token moves it

    def __call__(self, data: bytes | str) -> bool:
        """Whether `data` was a fresh token (answered, and not for the session)."""
        if self.kind == "yjs":
            try:
                token = protocol.decode_auth_token(data)
            except protocol.ProtocolError as error:
                self.reply(protocol.encode_auth_denied(f"bad token message: {error}"))
                return True
        else:
            token = text_token(data)
        if token is None:
            return False
        why = self.present(token)
        if self.kind == "yjs":
            if why is not None:
                self.reply(protocol.encode_auth_denied(why))
        elif why is not None:
            error = {"type": "error", "code": ErrorCode.BAD_TOKEN.value, "message": why}
            self.reply(json.dumps(error))
        else:
            self.reply(json.dumps({"type": "token", "expires": self.ticket.expires}))
        return True

    def present(self, token: str) -> str | None:
        """Take a fresh token; why not, or None when the access now ends at its end."""
        try:
            grant = self.check(token)
        except TokenError as error:
            return error.reason
        if grant.user != self.ticket.user:
            return "the fresh token is for another user: reconnect with it"
        if grant.readonly and not self.readonly:
            return "the fresh token is read-only: reconnect with it"
        ends = [end for end in (grant.expires, self.bound) if end is not None]
        self.live.renew(self.ticket, min(ends), grant.token_id, grant.issued)
        return None
