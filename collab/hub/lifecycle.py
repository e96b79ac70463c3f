"""What the document lifecycle asks of a runner: changes from services, and a drop.

Creating, importing and replacing a document (`put`), what the errors are, and the reasons
peers hear when a document is deleted or restored. A service's op or update goes through
the runner's `ServerChanges`; a deleted document leaves memory unsaved (`DocumentRunner.drop`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from collab.session import Session
from collab.wire import CloseCode, OriginPrefix

IMPORT = OriginPrefix.IMPORT.value


class DocumentNotFoundError(LookupError):
    """The document has never been stored and the caller did not ask to create it."""


class DocumentExistsError(Exception):
    """The document exists and the caller did not ask to replace it."""


DELETED = "the document was deleted"
RESTORED = "the document was restored from a backup: reconnect"

if TYPE_CHECKING:
    from collab.config import Settings
    from collab.hub.registry import Hub


# ---------------------------------------------------------------------- create, import


async def exists(hub: Hub, name: str) -> bool:
    """Whether document `name` holds anything (a document only opened holds nothing)."""
    try:
        return (await hub.open(name, create=False)).rev > 0
    except DocumentNotFoundError:
        return False


async def put(
    hub: Hub, name: str, content: str | bytes, *, replace: bool = False, user: str | None = None
) -> tuple[int, bool, str]:
    """Make document `name` hold `content`: a text (str) or a Yjs update (bytes). An
    existing one raises `DocumentExistsError` unless `replace`, which makes its text the
    content's in one new revision. Returns (revision, created, generation). Raises
    `ChangeRefused` for content that does not fit; a document made for it is then not kept.
    """
    existed = await exists(hub, name)
    if existed and not replace:
        raise DocumentExistsError(name)
    if isinstance(content, bytes) and existed:  # checked before the document is touched
        content = await asyncio.to_thread(text_of, content, name, hub.settings)
    runner = await hub.open(name)
    try:
        if isinstance(content, bytes):
            rev = await runner.changes.apply_update(content, IMPORT, user)
        else:
            rev = await runner.changes.set_text(content, IMPORT, user)
    except Exception:
        if runner.rev == 0 and not runner.peer_count:  # made for this: not kept
            await runner.drop(CloseCode.TRY_LATER, "the document could not be made")
        raise
    return rev, not existed, runner.generation


def text_of(update: bytes, name: str, settings: Settings) -> str:
    """The shared text a Yjs update holds, checked as a peer's update is (ChangeRefused)."""
    session = Session(name, settings)
    session.apply_update(update, IMPORT)
    return session.mirror
