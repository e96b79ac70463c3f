"""When the server itself fails inside a document: what it costs, and who hears of it.

Bad input never raises: the session refuses it with a close code and a reason. An exception
while handling or sending one peer's message is therefore a bug, and it costs that peer
only: it is closed with 1011, a line is logged (throttled: whoever found the bug may repeat
it, at the price of a connection each time) and `collab_peer_internal_errors_total` counts
it. Anything else that breaks a batch (a pycrdt panic, which is not an `Exception`) leaves a
session that may hold changes the store does not have: the runner restarts the document
(`Supervisor.restart`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from collab.session import PeerId, Session
from collab.wire import CloseCode

if TYPE_CHECKING:
    from collab.hub.channel import PeerChannel
    from collab.hub.context import DocumentContext

log = logging.getLogger("collab.hub.runner")

FATAL = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)
"""What must go on up: the process is stopping, or the task is cancelled."""


def peer_failed(
    context: DocumentContext, name: str, peer_id: object, stage: str, error: Exception
) -> None:
    """Log (throttled by the hub: one log for all its documents) and count an internal
    error that closes one peer; `stage` is "handling" or "sending" (its message)."""
    if context.metrics is not None:
        context.metrics.peer_errors.labels(stage).inc()
    held = context.failure_log.should_log()
    if held is None:
        return
    more = f" ({held} more since the last report)" if held else ""
    log.error(
        "%s: internal error %s a message of peer %s: it is closed%s",
        name,
        stage,
        peer_id,
        more,
        exc_info=error,
    )


class Supervisor:
    """The failure handling of one document's runner: what a failure costs, and who hears."""

    def __init__(
        self,
        context: DocumentContext,
        name: str,
        close_peer: Callable[[PeerId, int, str], None],
        fail: Callable[[str], None],
    ) -> None:
        self.context = context
        self.name = name
        self._close_peer = close_peer
        self._fail = fail  # every peer closed, the session dropped (`DocumentRunner._fail`)

    def apply_inbox(
        self,
        inbox: deque[tuple[Callable[[Session], None], PeerId | None]],
        session: Session,
        work: float | None = None,
    ) -> None:
        """Feed waiting events to the session: every one, or (`work` seconds) until that
        much time has gone, at least one. One that raises (a bug: the session refuses bad
        input itself) costs its peer, never the batch or the document."""
        until = None if work is None else time.perf_counter() + work
        while inbox:
            event, peer_id = inbox.popleft()
            try:
                event(session)
            except Exception as error:
                self.peer_failed(peer_id, "handling", error)
            if until is not None and time.perf_counter() >= until:
                return

    def peer_failed(self, peer_id: PeerId | None, stage: str, error: Exception) -> None:
        """The server failed on one peer's message: that peer is closed with 1011."""
        peer_failed(self.context, self.name, peer_id, stage, error)
        if peer_id is not None:  # else a bus event (dropped) or a server edit (it reports)
            self._close_peer(peer_id, CloseCode.INTERNAL, f"internal error {stage} your message")

    def send_failed(self, channel: PeerChannel, error: Exception) -> None:
        """A queued message could not be sent to a peer still there (`PeerChannel`)."""
        self.peer_failed(channel.peer_id, "sending", error)

    def pump_ended(self, task: asyncio.Task[None]) -> None:
        """The pump ends only when the runner stops (cancelled); anything else is a failure
        no batch caught."""
        if not task.cancelled() and task.exception() is not None:
            self.restart(task.exception())  # type: ignore[arg-type]

    def restart(self, error: BaseException) -> None:
        """The document failed beyond one peer's message: its session may hold changes the
        store does not have. Every peer is closed with 1011 (clients reconnect and send
        again what was not acknowledged; what was acknowledged was stored first), the
        session is dropped and the document loaded again from the store (`Hub.reload`:
        /healthz answers 503 until it is)."""
        log.error("%s: the document failed, reloading it from the store", self.name, exc_info=error)
        if self.context.metrics is not None:
            self.context.metrics.document_restarts.inc()
        self._fail("internal error: reconnect")
        self.context.reload(self.name)


def settle_edits(edits: list[asyncio.Future[int]], outcome: int | Exception) -> None:
    """Tell server edits how their batch ended: the revision, or why it was not saved."""
    for done in edits:
        if done.done():
            continue
        if isinstance(outcome, Exception):
            done.set_exception(outcome)
        else:
            done.set_result(outcome)
