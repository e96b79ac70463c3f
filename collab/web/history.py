"""The HTTP history routes: revisions paged, one revision's change, the text at a revision.

A part the `WebApp` holds (app.py mounts its routes). History reads what a
`RevisionHistory` store keeps; it is CPU-bound (replaying updates), so only
`max_history_requests` requests run at once. A document of `--text-worker-bytes` or more
is not replayed in the server at all: its index keeps only metadata, and its texts (also
the current one, `current_text`) and its whole state (`current_state`) are built by a
worker process (`replay.worker_texts`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import IO, TYPE_CHECKING, Any, Protocol

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from collab.replay.history import (
    DocumentHistory,
    NotReplayedError,
    StoreHistoryCache,
    parse_time,
)
from collab.replay.worker_texts import WorkerTexts
from collab.storage.backends import reader_for
from collab.storage.contract import RevisionsGoneError, StoreUnavailableError
from collab.storage.errors import FileFormatError
from collab.storage.logs import RevisionNotFoundError
from collab.storage.worker import WorkerError
from collab.web.big import FileBody

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
        self, body: bytes | FileBody, media_type: str, request: Request, **options: Any
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
        """`histories`: None when the store keeps no old revisions (history answers 501).
        Texts are built by worker processes when one can read the store (`reader_for`)."""
        self.settings = settings
        self.histories = histories
        self.refuse = refuse
        self.existing = existing
        self.respond = respond
        self.texts: WorkerTexts | None = None
        self.worker_from = worker_from(settings)
        opener = reader_for(histories.store) if histories is not None else None
        if opener is not None and settings.text_worker_bytes > 0:
            self.texts = WorkerTexts(opener, settings.text_name, settings.text_worker_timeout)
            histories.replay_below = self.worker_from  # type: ignore[union-attr]
        self.requests = 0  # history requests running now

    def built_elsewhere(self, runner: DocumentRunner) -> bool:
        """Whether the document's texts are built by a worker process (it is big)."""
        return self.texts is not None and runner.size_bytes >= self.worker_from

    async def text_at(self, request: Request, runner: DocumentRunner) -> Response:
        """The text as it was (``?at=REV`` or ``?time=ISO-8601``), counted as history."""
        return await self._expensive(request, self._text_at(request, runner))

    async def current_text(self, request: Request, runner: DocumentRunner) -> Response:
        """A big document's text at the store's last revision (`X-Collab-Rev`), built by
        a worker process; counted as history (a process per request)."""
        return await self._expensive(request, self._from_worker(request, runner.name, None))

    async def current_state(self, request: Request, runner: DocumentRunner) -> Response:
        """A big document's whole state (one Yjs update) at the store's last revision
        (`X-Collab-Rev`), built by a worker process: the server's own pycrdt document is
        left alone (a detached one is not rebuilt). Counted as history."""
        return await self._expensive(request, self._state_from_worker(request, runner.name))

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
        history = await self._history(runner)
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
        return await self._expensive(request, self._revision(request, runner))

    async def _revision(self, request: Request, runner: DocumentRunner) -> Response:
        history = await self._history(runner)
        if isinstance(history, Response):
            return history
        rev = request.path_params["rev"]
        try:
            history.info(rev)
            if history.replays:
                return JSONResponse((await asyncio.to_thread(history.change, rev)).as_json())
        except RevisionNotFoundError as error:
            return error_response(404, str(error))
        except NotReplayedError:
            pass  # it grew past the limit meanwhile
        assert self.texts is not None  # an index stops replaying only when there are workers
        try:
            body = await self.texts.change(runner.name, rev)
        except (RevisionNotFoundError, WorkerError) as error:
            return self._not_built(runner.name, error)
        return self.respond(FileBody(body, _length(body)), "application/json", request)

    async def _text_at(self, request: Request, runner: DocumentRunner) -> Response:
        history = await self._history(runner)
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
        if history.replays:
            try:
                text = await asyncio.to_thread(history.text_at, rev)
            except NotReplayedError:
                pass  # it grew past the limit meanwhile
            else:
                headers = {"X-Collab-Rev": str(rev)}
                body = text.encode()
                return self.respond(body, "text/plain; charset=utf-8", request, headers=headers)
        return await self._from_worker(request, runner.name, rev)

    async def _from_worker(self, request: Request, name: str, rev: int | None) -> Response:
        """The text at `rev` (None: the store's last revision) built by a worker process,
        sent from the file it wrote."""
        assert self.texts is not None
        build = self.texts.text(name, rev)
        return await self._send_built(request, name, build, "text", "text/plain; charset=utf-8")

    async def _state_from_worker(self, request: Request, name: str) -> Response:
        assert self.texts is not None
        build = self.texts.state(name)
        return await self._send_built(request, name, build, "state", "application/octet-stream")

    async def _send_built(
        self,
        request: Request,
        name: str,
        build: Awaitable[tuple[int, IO[bytes]]],
        what: str,
        media_type: str,
    ) -> Response:
        """What a worker built (the text or the state), with the revision it is at."""
        try:
            built, body = await build
        except (RevisionNotFoundError, WorkerError) as error:
            return self._not_built(name, error, what)
        headers = {"X-Collab-Rev": str(built)}
        return self.respond(FileBody(body, _length(body)), media_type, request, headers=headers)

    def _not_built(
        self, name: str, error: RevisionNotFoundError | WorkerError, what: str = "text"
    ) -> Response:
        """404 for a revision the store no longer has (compacted away meanwhile); 500 with
        the reason when the worker failed or died (the next request starts another)."""
        if isinstance(error, RevisionNotFoundError):
            return error_response(404, str(error))
        log.error("%s: a worker process could not build the %s: %s", name, what, error)
        reason = str(error).split(" (/", 1)[0]  # not where in the server's files it raised
        return error_response(500, f"the {what} could not be built: {reason}")

    async def _history(self, runner: DocumentRunner) -> DocumentHistory | Response:
        """The document's history index, up to date with the store (indexed in a thread).
        A new index of a big document keeps only the metadata."""
        if self.histories is None:
            return error_response(501, "history needs a store that keeps old revisions")
        name = runner.name
        try:
            history = await self.histories.get(name, replay=not self.built_elsewhere(runner))
        except (FileFormatError, RevisionsGoneError) as error:
            log.error("%s: history cannot be read: %s", name, error)
            return error_response(500, "history cannot be read: damaged in the store")
        except StoreUnavailableError as error:
            log.error("%s: history cannot be read: %s", name, error)
            return error_response(503, "history cannot be read: the store is unavailable")
        if not history.exists:
            return error_response(404, "no history: the document has not been saved yet")
        return history


def worker_from(settings: Settings) -> int:
    """The size (bytes of state) from which a document's texts and state are built by a
    worker: `--text-worker-bytes`, or `--detach-from-bytes` when smaller (a detached
    document keeps no pycrdt document: reading it in the server would rebuild one)."""
    detach, texts = settings.detach_from_bytes, settings.text_worker_bytes
    return min(texts, detach) if detach > 0 else texts


def _length(file: IO[bytes]) -> int:
    return os.fstat(file.fileno()).st_size
