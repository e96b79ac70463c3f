"""A revision as text clients see it, and the error a refused change raises."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from collab.text import ops as textops
from collab.wire import ErrorCode

if TYPE_CHECKING:
    from collab.storage.contract import Record


class ChangeRefused(Exception):
    """A change was refused and nothing changed; `code` is the text protocol's error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Revision:
    """One revision as text clients see it: the change as a code-point op."""

    rev: int
    op: textops.Op
    origin: str
    user: str | None
    client: str | None = None
    seq: int | None = None

    def as_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "op", "rev": self.rev, "op": self.op}
        if self.client is not None:
            message["client"] = self.client
            message["seq"] = self.seq
        if self.user is not None:
            message["user"] = self.user
        return message


@dataclass(frozen=True)
class Committed:
    """A change that became a revision: the record to log, the op text clients see."""

    record: Record
    revision: Revision


def revisions_after(history: Sequence[Revision], last: int, rev: int) -> list[Revision] | None:
    """The revisions after `rev` in `history` (which ends with revision `last`), or None
    when they are no longer in it.

    Taken from the newest end: a client is usually zero or a few revisions behind, and the
    history holds thousands.
    """
    first = history[0].rev if history else last + 1
    if rev < first - 1 or rev > last:
        return None
    missed = list(itertools.islice(reversed(history), last - rev))
    missed.reverse()
    return missed
