"""Who may connect, and for how long: the token (read strictly, revocations checked), then
the authenticate hook; and a connection's access as the hub's `LiveAccess` watches it."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from collab.access import http as security
from collab.access import tokens
from collab.access.live import LiveAccess, Ticket
from collab.access.revocations import REVOKED
from collab.hooks import Access, AccessDenied, Authenticate, call_hook

if TYPE_CHECKING:
    from collab.hub import DocumentRunner

log = logging.getLogger("collab.web")


class Admission:
    """The access checks of one web app (a part `WebApp` holds)."""

    def __init__(self, secret: str, authenticate: Authenticate | None, live: LiveAccess) -> None:
        self.secret = secret
        self.authenticate = authenticate
        self.live = live

    async def access(
        self, connection: HTTPConnection, name: str, token: str = ""
    ) -> tuple[Access, float | None]:
        """What the connection may do, and the hook's own end of it (no fresh token moves it).
        `token`: one the client sent in a message (the Hocuspocus door), else the request's.

        A hook that fails refuses. A read-only token stays read-only whatever the hook says,
        and the access ends at the earlier of the token's and the hook's `expires`. A
        revoked token (or user) is refused.
        """
        granted = Access(issued=time.time())
        if self.secret:
            found = token or security.find_token(
                connection.query_params, connection.headers, connection.cookies, name
            )
            try:
                grant = self.grant(found, name)
            except tokens.TokenError as error:
                raise AccessDenied(error.reason, error.status) from None
            granted = Access(
                grant.user,
                grant.readonly,
                grant.expires,
                grant.token_id,
                grant.issued,
                grant.admin,
            )
        elif self.authenticate is None:
            granted = Access(issued=granted.issued, admin=True)  # an open server: anyone
        if self.authenticate is None:
            return granted, None
        try:
            hooked = await call_hook(self.authenticate, connection, name)
        except AccessDenied:
            raise
        except Exception as error:
            log.exception("authenticate hook failed for %r", name)
            raise AccessDenied(f"authentication failed: {type(error).__name__}", 403) from None
        if not isinstance(hooked, Access):
            return granted, None
        ends = [end for end in (hooked.expires, granted.expires) if end is not None]
        user, readonly = hooked.user or granted.user, hooked.readonly or granted.readonly
        admin = granted.admin if self.secret else hooked.admin  # the token's, else the hook's
        access = Access(
            user, readonly, min(ends, default=None), granted.token_id, granted.issued, admin
        )
        if self.live.revoked(access.token_id, access.user, access.issued):
            raise AccessDenied(REVOKED, 401)
        return access, hooked.expires

    def grant(self, token: str | None, name: str | None = None) -> tokens.Grant:
        """A valid token's grant (for document `name`, if given); raises `TokenError`,
        also for a revoked token."""
        if name is None:
            grant = tokens.verify(self.secret, token)
        else:
            grant = tokens.access(self.secret, token, name)
        if self.live.revoked(grant.token_id, grant.user, grant.issued):
            raise tokens.TokenError(REVOKED)
        return grant


def ticket_for(runner: DocumentRunner, peer_id: Any, access: Access) -> Ticket:
    """The connection's access, as the hub's `LiveAccess` watches it."""

    def close(code: int, reason: str) -> None:
        runner.close_peer(peer_id, code, reason)

    return Ticket(close, access.user, access.token_id, access.issued, access.expires)
