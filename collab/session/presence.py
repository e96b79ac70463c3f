"""Presence: where text clients' carets are, and who is here, across the two doors.

A text client's selection is kept in code points at the session's current revision and
moved through every revision. Text clients are mirrored into awareness (so Yjs peers see
who is here); Yjs awareness states that name a user appear to text clients as presence.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from collab import textops

Selection = list[list[int]]

# Transforming a selection costs one pass over each missed op: an old one is refused
# (the client sends a fresh one soon) rather than carried through thousands of ops.
MAX_PRESENCE_LAG = 1_000


def awareness_id_for(client: str) -> int:
    """A stable Yjs awareness client id for a text client (ids stay below 2**53)."""
    return 0x10_0000_0000_0000 | zlib.crc32(client.encode()) << 16 | len(client) & 0xFFFF


def awareness_state(client: str, user: dict[str, str]) -> dict[str, Any]:
    """What Yjs peers see of a text client."""
    return {"user": user, "collab": {"kind": "text", "client": client}}


def transform_selection(selection: Selection, ops: list[textops.Op], length: int) -> Selection:
    """A selection made before `ops` (applied in order), moved to after them.

    Positions are clamped to `length`, the text's length after the ops.
    """
    for op in ops:
        selection = move_selection(selection, op)
    return [[min(anchor, length), min(head, length)] for anchor, head in selection]


def move_selection(selection: Selection, op: textops.Op) -> Selection:
    return [
        [textops.transform_position(anchor, op), textops.transform_position(head, op)]
        for anchor, head in selection
    ]


def text_presence(client: str, user: dict[str, str], selection: Selection | None) -> dict[str, Any]:
    return {
        "type": "presence",
        "client": client,
        "user": user,
        "selection": selection,
        "kind": "text",
    }


def left(client: str) -> dict[str, Any]:
    return {"type": "presence", "client": client, "left": True}


def presence_id(awareness_id: int, state: dict[str, Any] | None) -> str:
    """Who an awareness state is to text clients: a text client's id when it mirrors one."""
    collab = state.get("collab") if isinstance(state, dict) else None
    if isinstance(collab, dict) and collab.get("kind") == "text":
        client = collab.get("client")
        if isinstance(client, str):
            return client[:64]
    return yjs_client(awareness_id)


def yjs_client(awareness_id: int) -> str:
    """The presence id of a Yjs peer's awareness client."""
    return f"yjs:{awareness_id}"


def yjs_presence(
    awareness_id: int, state: dict[str, Any] | None, is_local: Callable[[str], bool]
) -> dict[str, Any] | None:
    """An awareness state as text clients see it; None unless it names a user.

    A text client's state mirrored into awareness is shown as that text client when it is
    connected to another process, and not at all when it is ours (it has its own presence).
    """
    if not isinstance(state, dict):
        return None
    user = state.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("name"), str):
        return None
    shown_user = {"name": str(user.get("name"))[:64], "color": str(user.get("color", ""))[:32]}
    collab = state.get("collab")
    if isinstance(collab, dict) and collab.get("kind") == "text":
        client = collab.get("client")
        if not isinstance(client, str) or is_local(client):
            return None
        return text_presence(client[:64], shown_user, None)
    return {
        "type": "presence",
        "client": yjs_client(awareness_id),
        "user": shown_user,
        "selection": None,
        "kind": "yjs",
    }
