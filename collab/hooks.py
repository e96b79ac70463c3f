"""The hooks an embedding server gives the engine: who may connect, and what changed.

Every hook may be a plain function or a coroutine function.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collab.text import ops as textops
from collab.wire import CloseCode

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection


@dataclass(frozen=True)
class Access:
    """What the authenticate hook grants a connection.

    `expires` (unix time, None: never): an open WebSocket is closed then with 4401 "the
    token has expired" (a token's ``exp`` sets it too). `token_id` and `issued` (unix
    time) are the token's ``jti`` and ``iat``, which revocations match; without a token,
    `issued` is when the access was granted.
    """

    user: str | None = None
    readonly: bool = False
    expires: float | None = None
    token_id: str | None = None
    issued: float | None = None
    admin: bool = False  # may delete documents (without --auth-secret, only the hook grants it)


class AccessDenied(Exception):
    """Raise from the authenticate hook to refuse a connection.

    `status` 401 (who are you?) closes the WebSocket with 4401 and answers HTTP 401;
    403 (not allowed) closes with 4403 and answers HTTP 403.
    """

    def __init__(self, reason: str = "access denied", status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    @property
    def close_code(self) -> int:
        return CloseCode.UNAUTHORIZED if self.status == 401 else CloseCode.FORBIDDEN


@dataclass(frozen=True)
class Change:
    """One durable change, as the on_change hook sees it."""

    name: str
    rev: int
    time: float
    origin: str
    user: str | None
    update: bytes  # the Yjs update
    op: textops.Op  # the change to the shared text, in code points ([] past the text door)


# authenticate(connection, document_name) -> Access | None (None: default access)
Authenticate = Callable[["HTTPConnection", str], "Access | Awaitable[Access | None] | None"]
# on_change(change) -> None, called after the change is on disk
OnChange = Callable[[Change], "Awaitable[None] | None"]
# on_load(document_name) -> initial Yjs state for a document the store does not have, or None
OnLoad = Callable[[str], "bytes | Awaitable[bytes | None] | None"]
# on_stateless(document_name, payload, access) -> None: a Hocuspocus Stateless message
OnStateless = Callable[[str, str, Access], "Awaitable[None] | None"]


async def call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async hook and return its result."""
    result = hook(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
