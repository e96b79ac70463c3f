"""Signed access tokens: standard JWTs (HS256), so any backend with the secret can mint them.

Claims:

- ``doc``: the document name, or a pattern ending in ``*`` (``team/*`` for every name that
  starts with ``team/``, ``*`` for every document);
- ``sub``: the user (shown in the history), optional;
- ``ro``: true for read-only access, optional;
- ``exp`` / ``iat``: expiry and issue time (unix seconds); a token without ``exp`` is refused.

`collab token NAME [--user U] [--readonly] [--ttl SECONDS]` prints one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
DEFAULT_TTL = 3600.0


class TokenError(Exception):
    """A token that cannot be used: `status` 401 (missing, invalid, expired) or 403."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class Grant:
    """What a valid token allows."""

    doc: str  # a name or a pattern ending in "*"
    user: str | None = None
    readonly: bool = False
    expires: float = 0.0

    def covers(self, name: str) -> bool:
        """Whether this token opens document `name`."""
        return matches(self.doc, name)


def matches(pattern: str, name: str) -> bool:
    """``team/*`` matches every name starting with ``team/``; anything else matches itself."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def mint(
    secret: str,
    doc: str,
    *,
    user: str | None = None,
    readonly: bool = False,
    ttl: float = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """A token for `doc` (a name or pattern), signed with `secret`, valid `ttl` seconds."""
    if not secret:
        raise ValueError("no secret to sign with: set --auth-secret or COLLAB_AUTH_SECRET")
    issued = time.time() if now is None else now
    claims: dict[str, object] = {"doc": doc, "iat": int(issued), "exp": int(issued + ttl)}
    if user is not None:
        claims["sub"] = user
    if readonly:
        claims["ro"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str | None, now: float | None = None) -> Grant:
    """The grant of a valid token; raises `TokenError` (401) for anything else."""
    if not token:
        raise TokenError("a token is needed (?token=, Authorization: Bearer, or the cookie)")
    # With an explicit `now` (tests), expiry is checked below against it instead.
    options = {"require": ["exp", "doc"], "verify_exp": now is None}
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)  # type: ignore[arg-type]
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired") from None
    except jwt.InvalidTokenError as error:
        raise TokenError(f"invalid token: {error}") from None
    expires = claims["exp"]
    if now is not None and isinstance(expires, int | float) and expires <= now:
        raise TokenError("the token has expired")
    doc, user, readonly = claims["doc"], claims.get("sub"), claims.get("ro", False)
    if not isinstance(doc, str) or not doc:
        raise TokenError("invalid token: doc must be a non-empty string")
    if user is not None and not isinstance(user, str):
        raise TokenError("invalid token: sub must be a string")
    return Grant(doc, user, readonly is True, float(expires))


def access(secret: str, token: str | None, name: str, now: float | None = None) -> Grant:
    """The grant of `token` for document `name`: 401 when invalid, 403 for another document."""
    grant = verify(secret, token, now)
    if not grant.covers(name):
        raise TokenError(f"the token is not for this document (it is for {grant.doc!r})", 403)
    return grant
