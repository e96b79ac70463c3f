"""Signed access tokens: standard JWTs (HS256), so any backend with the secret can mint them.

Claims:

- ``doc``: the document name, or a pattern ending in ``*`` (``team/*`` for every name that
  starts with ``team/``, ``*`` for every document);
- ``sub``: the user (shown in the history), optional;
- ``ro``: true for read-only access, optional;
- ``adm``: true to delete documents (`collab token NAME --admin`), optional;
- ``exp`` / ``iat``: expiry and issue time (unix seconds); a token without ``exp`` is refused;
- ``jti``: the token's id, so that it alone can be revoked (`collab.access.revocations`).

Claims are read strictly: each must have exactly the type `mint` gives it (``ro`` is
``true`` or ``false``, never ``1`` or ``"yes"``; times are numbers; ``doc`` and ``sub`` are
text that can be stored), and a claim the server does not know is refused (a misspelled
``readonly`` must not grant write access), except the registered ``nbf``, ``iss`` and
``jti``. A token that is not exactly right is refused, never read generously.

`collab token NAME [--user U] [--readonly] [--ttl SECONDS]` prints one.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
DEFAULT_TTL = 3600.0
# What `mint` writes, and the registered claims that are harmless to ignore.
KNOWN_CLAIMS = frozenset({"doc", "sub", "ro", "adm", "exp", "iat", "nbf", "iss", "jti"})


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
    token_id: str | None = None  # jti
    issued: float | None = None  # iat
    admin: bool = False  # may delete the documents it covers

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
    admin: bool = False,
    ttl: float = DEFAULT_TTL,
    now: float | None = None,
) -> str:
    """A token for `doc` (a name or pattern), signed with `secret`, valid `ttl` seconds."""
    if not secret:
        raise ValueError("no secret to sign with: set --auth-secret or COLLAB_AUTH_SECRET")
    if not is_pattern(doc):
        raise ValueError(f"not a document name or a pattern ending in '*': {doc!r}")
    if user is not None and not is_text(user):
        raise ValueError(f"not a user name: {user!r}")
    issued = time.time() if now is None else now
    claims: dict[str, object] = {"doc": doc, "iat": int(issued), "exp": int(issued + ttl)}
    claims["jti"] = secrets.token_urlsafe(12)
    if user is not None:
        claims["sub"] = user
    if readonly:
        claims["ro"] = True
    if admin:
        claims["adm"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str | None, now: float | None = None) -> Grant:
    """The grant of a valid token; raises `TokenError` (401) for anything else."""
    if not token:
        raise TokenError("a token is needed (?token=, Authorization: Bearer, or the cookie)")
    # The signature is PyJWT's to check; the claims are read below, types before times.
    options = {"require": ["exp", "doc"], "verify_exp": False, "verify_nbf": False}
    options["verify_iat"] = False
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options=options)  # type: ignore[arg-type]
    except jwt.InvalidTokenError as error:
        raise TokenError(f"invalid token: {error}") from None
    grant = read_claims(claims)
    moment = time.time() if now is None else now
    if grant.expires <= moment:
        raise TokenError("the token has expired")
    for claim in ("nbf", "iat"):
        if claim in claims and claims[claim] > moment:
            raise TokenError(f"the token is not valid yet ({claim} is in the future)")
    return grant


def read_claims(claims: dict[str, Any]) -> Grant:
    """The grant the claims of a signed token describe, if each is exactly right."""
    unknown = sorted(set(claims) - KNOWN_CLAIMS)
    if unknown:
        raise TokenError(f"invalid token: unknown claim {unknown[0]!r}")
    for claim in ("exp", "nbf", "iat"):
        if claim in claims and not _is_seconds(claims[claim]):
            raise TokenError(f"invalid token: {claim} must be a number of seconds")
    doc = claims["doc"]
    if not is_pattern(doc):
        raise TokenError("invalid token: doc must be a document name or a pattern ending in '*'")
    user = claims.get("sub")
    if "sub" in claims and not is_text(user):
        raise TokenError("invalid token: sub must be a non-empty string (no NUL or lone surrogate)")
    readonly, admin = claims.get("ro", False), claims.get("adm", False)
    for claim, value in (("ro", readonly), ("adm", admin)):
        if type(value) is not bool:
            raise TokenError(f"invalid token: {claim} must be true or false")
    token_id = claims.get("jti")
    if "jti" in claims and not is_text(token_id):
        raise TokenError("invalid token: jti must be a non-empty string (no NUL or lone surrogate)")
    issued = float(claims["iat"]) if "iat" in claims else None
    return Grant(doc, user, readonly, float(claims["exp"]), token_id, issued, admin)


def is_text(value: object) -> bool:
    """Whether `value` is text a store and every encoder can carry: a non-empty string,
    no NUL, no lone surrogate."""
    if not isinstance(value, str) or not value or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_pattern(doc: object) -> bool:
    """A document name, or a pattern whose only ``*`` is its last character."""
    return isinstance(doc, str) and is_text(doc) and "*" not in doc[:-1]


def _is_seconds(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def access(secret: str, token: str | None, name: str, now: float | None = None) -> Grant:
    """The grant of `token` for document `name`: 401 when invalid, 403 for another document."""
    grant = verify(secret, token, now)
    if not grant.covers(name):
        raise TokenError(f"the token is not for this document (it is for {grant.doc!r})", 403)
    return grant
