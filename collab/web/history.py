"""The HTTP history routes: revisions paged, one revision's change, the text at a revision.

A part the `WebApp` holds (app.py mounts its routes). History reads what a
`RevisionHistory` store keeps; it is CPU-bound (replaying updates), so only
`max_history_requests` requests run at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from collab.replay.history import DocumentHistory, StoreHistoryCache, parse_time
from collab.storage.contract import RevisionsGoneError, StoreUnavailableError
from collab.storage.errors import FileFormatError
from collab.storage.logs import RevisionNotFoundError

if TYPE_CHECKING:
    from collab.config import Settings
    from collab.hub import DocumentRunner

log = logging.getLogger("collab.web")

Refuse = Callable[[str, str, HTTPConnection], None]
"""Count and log a refusal: (reason, what, connection)."""
Existing = Callable[[Request], Awaitable["DocumentRunner | Response"]]
"""The request's document, checked (name, access) and loaded, or the error response."""


class Respond(Protocol):
    """A response that may be big: capped and sent within a deadline (`web.big`)."""

    def __call__(
        self, body: bytes, media_type: str, request: Request, **options: Any
    ) -> Response: ...


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class HistoryRoutes:
    """The history endpoints, given what they need of the web app."""

    def __init__(
        self,
        settings: Settings,
        histories: StoreHistoryCache | None,
        refuse: Refuse,
        existing: Existing,
        respond: Respond,
    ) -> None:
        """`histories`: None when the store keeps no old revisions (history answers 501)."""
        self.settings = settings
        self.histories = histories
        self.refuse = refuse
        self.existing = existing
        self.respond = respond
        self.requests = 0  # history requests running now

    async def text_at(self, request: Request, name: str) -> Response:
        """The text as it was (``?at=REV`` or ``?time=ISO-8601``), counted as history."""
        return await self._expensive(request, self._text_at(request, name))

    async def _expensive(self, request: Request, work: Coroutine[Any, Any, Response]) -> Response:
        """Serve CPU-bound work (history) only `max_history_requests` at a time; 503 beyond."""
        if self.requests >= self.settings.max_history_requests:
            work.close()
            why = "too many history requests at once: try again shortly"
            self.refuse("history-busy", why, request)
            response = error_response(503, why)
            response.headers["Retry-After"] = "1"
            return response
        self.requests += 1
        try:
            return await work
        finally:
            self.requests -= 1

    # ------------------------------------------------------------------ HTTP: history

    async def document_history(self, request: Request) -> Response:
        """The revisions, newest first: ``?limit=50&before=REV`` pages back in time."""
        runner = await self.existing(request)
        if isinstance(runner, Response):
            return runner
        return await self._expensive(request, self._history_page(request, runner))

    async def _history_page(self, request: Request, runner: DocumentRunner) -> Response:
        try:
            limit = min(max(int(request.query_params.get("limit", "50")), 1), 1000)
            before = request.query_params.get("before")
            before_rev = None if before is None else int(before)
        except ValueError:
            return error_response(400, "limit and before must be integers")
        history = await self._history(runner.name)
        if isinstance(history, Response):
            return history
        page = await asyncio.to_thread(history.page, before_rev, limit)
        more = bool(page) and page[-1].rev > history.base_rev + 1
        return JSONResponse(
            {
                "name": runner.name,
                "first_rev": history.base_rev,
                "last_rev": history.last_rev,
                "revisions": [revision.as_json() for revision in page],
                "next_before": page[-1].rev if more else None,
            }
        )

    async def document_revision(self, request: Request) -> Response:
        """One revision: who, when, and what it did (``op`` on ``text_before``)."""
        runner = await self.existing(request)
        if isinstance(runner, Response):
            return runner
        return await self._expensive(request, self._revision(request, runner.name))

    async def _revision(self, request: Request, name: str) -> Response:
        history = await self._history(name)
        if isinstance(history, Response):
            return history
        try:
            change = await asyncio.to_thread(history.change, request.path_params["rev"])
        except RevisionNotFoundError as error:
            return error_response(404, str(error))
        return JSONResponse(change.as_json())

    async def _text_at(self, request: Request, name: str) -> Response:
        history = await self._history(name)
        if isinstance(history, Response):
            return history
        try:
            if "at" in request.query_params:
                rev = int(request.query_params["at"])
            else:
                rev = history.rev_at_time(parse_time(request.query_params["time"]))
        except ValueError as error:
            return error_response(400, f"at must be a revision number, time ISO-8601: {error}")
        if rev > history.last_rev:
            return error_response(404, f"no revision {rev}: the latest is {history.last_rev}")
        if rev < history.base_rev:
            return error_response(410, f"revisions before {history.base_rev} are no longer kept")
        text = await asyncio.to_thread(history.text_at, rev)
        headers = {"X-Collab-Rev": str(rev)}
        return self.respond(text.encode(), "text/plain; charset=utf-8", request, headers=headers)

    async def _history(self, name: str) -> DocumentHistory | Response:
        """The document's history index, up to date with the store (indexed in a thread)."""
        if self.histories is None:
            return error_response(501, "history needs a store that keeps old revisions")
        try:
            history = await self.histories.get(name)
        except (FileFormatError, RevisionsGoneError) as error:
            log.error("%s: history cannot be read: %s", name, error)
            return error_response(500, "history cannot be read: damaged in the store")
        except StoreUnavailableError as error:
            log.error("%s: history cannot be read: %s", name, error)
            return error_response(503, "history cannot be read: the store is unavailable")
        if not history.exists:
            return error_response(404, "no history: the document has not been saved yet")
        return history
