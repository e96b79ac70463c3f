"""A revision as text clients see it, and the error a refused change raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collab.text import ops as textops
from collab.wire import ErrorCode


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
