"""Presence: where text clients' carets are, and who is here, across the two doors.

A text client's selection is kept in code points at the session's current revision and
moved through every revision. Text clients are mirrored into awareness (so Yjs peers see
who is here); Yjs awareness states that name a user appear to text clients as presence.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from collab.access.storable import storable
from collab.text import ops as textops

Selection = list[list[int]]


TEXT_CLIENT_BIT = 0x10_0000_0000_0000
"""Set in the awareness ids of text clients. Browsers' Yjs ids are 32-bit, but pycrdt's are
53-bit: about half of them have this bit too, so it does not tell a text client's id
(`is_text_state` and the session's knowledge do: `collab.session.roster`)."""


def awareness_id_for(client: str) -> int:
    """A stable Yjs awareness client id for a text client (ids stay below 2**53)."""
    return TEXT_CLIENT_BIT | zlib.crc32(client.encode()) << 16 | len(client) & 0xFFFF


def is_text_state(state: object) -> bool:
    """Whether an awareness state says it is a text client's (as `awareness_state` makes)."""
    collab = state.get("collab") if isinstance(state, dict) else None
    return isinstance(collab, dict) and collab.get("kind") == "text"


def awareness_state(
    client: str, user: dict[str, str], cursor: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What Yjs peers see of a text client: who, and its caret as a Yjs cursor (relative
    positions, `collab.session.mirror.cursor_of`) when it has one."""
    state: dict[str, Any] = {"user": user, "collab": {"kind": "text", "client": client}}
    if cursor is not None:
        state["cursor"] = cursor
    return state


def transform_selection(selection: Selection, ops: list[textops.Op], length: int) -> Selection:
    """A selection made before `ops` (canonical, applied in order), moved to after them.

    Positions are clamped to `length`, the text's length after the ops. Each op costs one
    pass over it and the positions (`textops.transform_positions_through`).
    """
    flat = textops.transform_positions_through([p for pair in selection for p in pair], ops)
    pairs = zip(flat[::2], flat[1::2], strict=True)
    return [[min(anchor, length), min(head, length)] for anchor, head in pairs]


def move_selections(selections: list[Selection], op: textops.Op) -> list[Selection]:
    """Every selection moved through one canonical op, in one pass over the op."""
    flat = [pos for selection in selections for pair in selection for pos in pair]
    moved = iter(textops.transform_positions(flat, op))
    return [[[next(moved), next(moved)] for _ in selection] for selection in selections]


def move_shown(shown: list[dict[str, Any]], op: textops.Op) -> None:
    """Move the selection of every text client's shown presence through one canonical op."""
    moving = [entry for entry in shown if entry["selection"]]
    if moving:
        moved = move_selections([entry["selection"] for entry in moving], op)
        for entry, selection in zip(moving, moved, strict=True):
            entry["selection"] = selection


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
            return storable(client[:64])
    return yjs_client(awareness_id)


def yjs_client(awareness_id: int) -> str:
    """The presence id of a Yjs peer's awareness client."""
    return f"yjs:{awareness_id}"


def yjs_presence(
    awareness_id: int,
    state: dict[str, Any] | None,
    is_local: Callable[[str], bool],
    resolve: Callable[[object], Selection | None] = lambda cursor: None,
) -> dict[str, Any] | None:
    """An awareness state as text clients see it; None unless it names a user.

    A text client's state mirrored into awareness is shown as that text client when it is
    connected to another process, and not at all when it is ours (it has its own presence).
    `resolve` turns the state's ``cursor`` (Yjs relative positions) into a selection in
    code points at the current revision (None: no caret).
    """
    if not isinstance(state, dict):
        return None
    user = state.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("name"), str):
        return None
    # Any peer chose these strings: what a frame cannot carry becomes U+FFFD, as at the text door.
    name, color = str(user.get("name"))[:64], str(user.get("color", ""))[:32]
    shown_user = {"name": storable(name), "color": storable(color)}
    collab = state.get("collab")
    if isinstance(collab, dict) and collab.get("kind") == "text":
        client = collab.get("client")
        if not isinstance(client, str) or is_local(client):
            return None
        return text_presence(storable(client[:64]), shown_user, resolve(state.get("cursor")))
    return {
        "type": "presence",
        "client": yjs_client(awareness_id),
        "user": shown_user,
        "selection": resolve(state.get("cursor")),
        "kind": "yjs",
    }
