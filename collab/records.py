"""One revision of a document as it is stored: the `Record`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Record:
    """One revision: the Yjs update of exactly one change, and who made it when.

    `origin` says which peer or protocol made the change: ``yjs:<connection>``,
    ``ot:<client>:<seq>``, ``server:<tag>`` or ``import``.
    """

    rev: int
    time: float
    origin: str
    user: str | None
    update: bytes
