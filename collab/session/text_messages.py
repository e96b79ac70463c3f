"""The text protocol's client messages: parsed from untrusted JSON, checked, typed.

Everything a text client sends passes through `parse` before any state is touched, and
each check costs time linear in the message: JSON nested too deeply is refused as
`bad-json`, ops with more components than the limit as `bad-op` (applying one costs a
pycrdt insert per component, and pycrdt's inserts grow with the document).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from collab.access.storable import first_unstorable, storable
from collab.session.revision import ChangeRefused
from collab.text import ops as textops
from collab.wire import SECRET_LENGTH, ErrorCode

MAX_SEQ = 2**53 - 1  # JSON numbers are exact up to here in every client
MAX_SELECTIONS = 16


@dataclass(frozen=True)
class Hello:
    secret: str
    rev: int | None
    user: dict[str, str]
    generation: str | None = None  # the generation of the copy the client holds


@dataclass(frozen=True)
class More:
    """What the next ops of one change still carry (the change goes in pieces): the UTF-8
    bytes they insert and how many insert/delete components they hold."""

    bytes: int
    parts: int


@dataclass(frozen=True)
class OpMessage:
    seq: int
    rev: int
    op: textops.Op
    more: More | None = None


@dataclass(frozen=True)
class PresenceMessage:
    rev: int | None
    selection: list[list[int]] | None
    user: dict[str, str] | None  # None: unchanged


ClientMessage = Hello | OpMessage | PresenceMessage


class MessageError(ChangeRefused):
    """A message that cannot be taken; `seq` is echoed in the error when it had one."""

    def __init__(self, code: ErrorCode, message: str, seq: int | None = None) -> None:
        super().__init__(code, message)
        self.seq = seq


def parse(data: str, max_op_components: int) -> ClientMessage:
    """One text-protocol message from a client; raises `MessageError`."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        raise MessageError(ErrorCode.BAD_JSON, "message is not valid JSON") from None
    if not isinstance(message, dict):
        raise MessageError(ErrorCode.BAD_MESSAGE, "message must be a JSON object")
    kind = message.get("type")
    if kind == "hello":
        return _hello(message)
    if kind == "op":
        return _op(message, max_op_components)
    if kind == "presence":
        return _presence(message)
    raise MessageError(ErrorCode.BAD_MESSAGE, f"unknown message type {str(kind)[:40]!r}")


def _hello(message: dict[str, Any]) -> Hello:
    secret = message.get("secret")
    shortest, longest = SECRET_LENGTH
    if not isinstance(secret, str) or not shortest <= len(secret) <= longest:
        raise MessageError(
            ErrorCode.BAD_MESSAGE, f"hello needs a secret of {shortest} to {longest} characters"
        )
    if first_unstorable(secret) is not None:  # the client id is a hash of its UTF-8
        raise MessageError(ErrorCode.BAD_MESSAGE, "the secret holds a NUL or a lone surrogate")
    rev = message.get("rev")
    if rev is not None and not is_int(rev):
        raise MessageError(ErrorCode.BAD_MESSAGE, "rev must be an integer or null")
    generation = message.get("generation")
    if generation is not None and not (isinstance(generation, str) and len(generation) <= 64):
        raise MessageError(ErrorCode.BAD_MESSAGE, "generation must be a short string or null")
    return Hello(secret, rev, clean_user(message.get("user")), generation)


def _op(message: dict[str, Any], max_components: int) -> OpMessage:
    seq, rev = message.get("seq"), message.get("rev")
    echo = seq if is_int(seq) else None
    if not is_int(seq) or not 1 <= seq <= MAX_SEQ or not is_int(rev) or rev < 0:
        raise MessageError(ErrorCode.BAD_MESSAGE, "op needs integer seq >= 1 and rev >= 0", echo)
    op = message.get("op")
    try:
        textops.check(op, max_components=max_components)
    except textops.OpError as error:
        raise MessageError(ErrorCode.BAD_OP, str(error), seq) from None
    return OpMessage(seq, rev, op, _more(message.get("more"), seq))  # type: ignore[arg-type]


def _more(more: object, seq: int) -> More | None:
    """The `more` of an op message: null, or {"bytes": n, "parts": n}."""
    if more is None:
        return None
    fields = (more.get("bytes"), more.get("parts")) if isinstance(more, dict) else (None,)
    if not all(is_int(n) and 0 <= n <= MAX_SEQ for n in fields):
        raise MessageError(ErrorCode.BAD_MESSAGE, "more needs integer bytes and parts >= 0", seq)
    return More(*fields)  # type: ignore[arg-type]


def _presence(message: dict[str, Any]) -> PresenceMessage:
    user = clean_user(message["user"]) if "user" in message else None
    selection, rev = message.get("selection"), message.get("rev")
    if selection is None:
        return PresenceMessage(rev if is_int(rev) else None, None, user)
    if not is_int(rev) or rev < 0:
        raise MessageError(ErrorCode.BAD_MESSAGE, "presence needs the rev of its selection")
    return PresenceMessage(rev, _clean_selection(selection), user)


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def clean_user(user: object) -> dict[str, str]:
    """A user as presence carries it: a name and a colour, both short strings.

    Shown to everyone and, without an authenticated user, written in the records: a NUL or
    a lone surrogate becomes U+FFFD (`collab.access.storable`), as anywhere else a name comes in.
    """
    if not isinstance(user, dict):
        return {"name": "anonymous", "color": "#888888"}
    name, color = user.get("name"), user.get("color")
    return {
        "name": storable(name[:64]) if isinstance(name, str) and name else "anonymous",
        "color": storable(color[:32]) if isinstance(color, str) and color else "#888888",
    }


def _clean_selection(selection: object) -> list[list[int]]:
    if not isinstance(selection, list) or len(selection) > MAX_SELECTIONS:
        raise MessageError(
            ErrorCode.BAD_MESSAGE, "selection must be a list of [anchor, head] pairs"
        )
    pairs = []
    for pair in selection:
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(is_int(p) and p >= 0 for p in pair)
        ):
            raise MessageError(
                ErrorCode.BAD_MESSAGE, "selection must be a list of [anchor, head] pairs"
            )
        pairs.append([pair[0], pair[1]])
    return pairs
