"""The HTTP lifecycle routes: create or import, edit from a service, delete.

``PUT /api/docs/{name}`` makes a document from a ``text/plain`` body (its text) or an
``application/octet-stream`` body (a Yjs update); 409 when it exists, unless ``?replace=1``,
which makes the current text equal to the body's in one new revision. ``POST
/api/docs/{name}/ops`` submits a text op against a revision as a text client would (same
transform, same exactly-once per (client, seq)); ``POST /api/docs/{name}/update`` applies a
Yjs update. ``DELETE /api/docs/{name}`` needs an admin token (docs/http.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from collab.access.names import InvalidNameError
from collab.hooks import Access, AccessDenied
from collab.hub import DocumentNotFoundError, lifecycle
from collab.hub.lifecycle import DocumentExistsError
from collab.session.revision import ChangeRefused
from collab.session.text_messages import Hello, MessageError, OpMessage, parse
from collab.storage.errors import CorruptDocumentError
from collab.text import ops as textops
from collab.web.history import error_response
from collab.wire import ErrorCode, OriginPrefix, client_id_from_secret

if TYPE_CHECKING:
    from collab.config import Settings
    from collab.hub import DocumentRunner, Hub

log = logging.getLogger("collab.web")
T = TypeVar("T")

TEXT_TYPES = ("text/plain",)
UPDATE_TYPES = ("application/octet-stream",)
STATUS = {  # a refused change: the text protocol's error code -> HTTP status
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.FUTURE_REV: 409,
    ErrorCode.TOO_OLD: 409,
    ErrorCode.READONLY: 403,
}


class RequestError(Exception):
    """An HTTP answer other than success: `status` and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class LifecycleRoutes:
    """The lifecycle endpoints, given what they need of the web app."""

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        access: Callable[[HTTPConnection, str], Awaitable[Access]],
        refuse: Callable[[str, str, HTTPConnection], None],
        count_new: Callable[[str, str], str | None],
    ) -> None:
        """`access`: what a request may do (raises AccessDenied); `count_new`: a document
        creation counted against the caps (which limit refused it, or None)."""
        self.hub = hub
        self.settings = settings
        self.access = access
        self.refuse = refuse
        self.count_new = count_new
        self.secret = settings.auth_secret
        self._changing: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()  # per name: one PUT or DELETE at a time
        )

    async def document_resource(self, request: Request) -> Response:
        """PUT (create, import, replace) or DELETE a document."""
        try:
            deleting = request.method == "DELETE"
            name, access = await self._allowed(request, admin=deleting, makes=not deleting)
            lock = self._changing.setdefault(name, asyncio.Lock())
            async with lock:  # one PUT or DELETE of a name at a time in this process
                if request.method == "DELETE":
                    return await self._delete(name, access, request)
                return await self._put(name, access, request)
        except RequestError as error:
            return error_response(error.status, error.reason)

    async def restore_document(self, request: Request) -> Response:
        """Load a backed-up state (``application/octet-stream``) in a new generation
        (admin only; what `collab restore --server` sends) -> ``{"rev", "generation"}``."""
        try:
            name, _ = await self._allowed(request, admin=True, makes=True)
            _content_type(request, UPDATE_TYPES)
            state = await _body(request, self.settings.max_document_bytes)
            await _changed(asyncio.to_thread(lifecycle.text_of, state, name, self.settings))
            async with self._changing.setdefault(name, asyncio.Lock()):
                generation = await _changed(self.hub.restore(name, state))
            return JSONResponse({"name": name, "rev": 1, "generation": generation})
        except RequestError as error:
            return error_response(error.status, error.reason)

    async def document_ops(self, request: Request) -> Response:
        """A text op from a service: ``{"secret", "seq", "rev", "op"}`` -> ``{"rev"}``."""
        try:
            name, access = await self._allowed(request)
            body = await _body(request, self.settings.max_message_bytes)
            message, client = self._op_message(body)
            runner = await self._runner(name, create=False)
            rev = await _changed(runner.changes.submit(client, message, access.user))
            return JSONResponse({"seq": message.seq, "rev": rev})
        except RequestError as error:
            return error_response(error.status, error.reason)

    async def post_update(self, request: Request) -> Response:
        """A Yjs update from a service (``application/octet-stream``) -> ``{"rev"}``."""
        try:
            name, access = await self._allowed(request)
            _content_type(request, UPDATE_TYPES)
            body = await _body(request, self.settings.max_message_bytes)
            runner = await self._runner(name, create=False)
            origin = f"{OriginPrefix.SERVER}http"
            rev = await _changed(runner.changes.apply_update(body, origin, access.user))
            return JSONResponse({"rev": rev})
        except RequestError as error:
            return error_response(error.status, error.reason)

    # ------------------------------------------------------------------ the steps

    async def _allowed(
        self, request: Request, admin: bool = False, makes: bool = False
    ) -> tuple[str, Access]:
        """The valid name and an access that may write (with `admin`: delete, restore),
        else a RequestError. A request that `makes` a document needs a name an address can
        hold (`names.validate_address`)."""
        validate = self.hub.validate_address if makes else self.hub.validate
        try:
            name = validate(request.path_params["name"])
            access = await self.access(request, name)
        except InvalidNameError as error:
            raise RequestError(400, f"invalid document name: {error}") from None
        except AccessDenied as denied:
            self.refuse("token" if self.secret else "authenticate", denied.reason, request)
            raise RequestError(denied.status, denied.reason) from None
        if access.readonly:
            raise RequestError(403, "read-only access: may not change documents")
        if admin and not access.admin:
            why = "deleting or restoring needs an admin token (collab token NAME --admin)"
            self.refuse("token" if self.secret else "authenticate", why, request)
            raise RequestError(403, why)
        return name, access

    async def _runner(self, name: str, create: bool) -> DocumentRunner:
        try:
            return await self.hub.open(name, create=create)
        except DocumentNotFoundError:
            raise RequestError(404, "no such document") from None
        except CorruptDocumentError as error:
            log.error("%s: cannot load: %s", name, error)
            raise RequestError(500, "document cannot be loaded: damaged on disk") from None

    async def _put(self, name: str, access: Access, request: Request) -> Response:
        kind = _content_type(request, TEXT_TYPES + UPDATE_TYPES)
        body = await _body(request, self.settings.max_document_bytes)
        replace = request.query_params.get("replace", "") in ("1", "true")
        content = _decoded(body) if kind in TEXT_TYPES else body
        if not await _changed(lifecycle.exists(self.hub, name)):
            address = request.client.host if request.client else ""
            limit = self.count_new(name, address)
            if limit is not None:
                raise RequestError(429, f"too many new documents ({limit} limit per minute)")
        try:
            put = lifecycle.put(self.hub, name, content, replace=replace, user=access.user)
            rev, created, generation = await _changed(put)
        except DocumentExistsError:
            raise RequestError(
                409, "the document exists: PUT with ?replace=1 to replace it"
            ) from None
        answer = {"name": name, "rev": rev, "generation": generation}
        return JSONResponse(answer, status_code=201 if created else 200)

    async def _delete(self, name: str, access: Access, request: Request) -> Response:
        try:
            generation = await _changed(self.hub.delete(name))
        except DocumentNotFoundError:
            raise RequestError(404, "no such document") from None
        log.info("%s: deleted by %s", name, access.user or "an admin")
        return JSONResponse({"name": name, "deleted": True, "generation": generation})

    def _op_message(self, body: bytes) -> tuple[OpMessage, str]:
        """The op and the client id of a service's op request (a RequestError if bad)."""
        try:
            value = json.loads(body)
            secret = value.pop("secret") if isinstance(value, dict) else None
            hello = parse(json.dumps({"type": "hello", "secret": secret}), 1)
            value["type"] = "op"
            message = parse(json.dumps(value), self.settings.max_op_components)
        except (ValueError, KeyError, RecursionError):
            raise RequestError(400, "the body must be JSON: {secret, seq, rev, op}") from None
        except MessageError as error:
            raise RequestError(400, f"{error.code}: {error.message}") from None
        assert isinstance(hello, Hello) and isinstance(message, OpMessage)
        return message, client_id_from_secret(hello.secret)


# ---------------------------------------------------------------------- helpers


async def _changed(change: Awaitable[T]) -> T:
    """The revision of a change, or the RequestError that tells why it was refused."""
    try:
        return await change
    except ChangeRefused as error:
        raise RequestError(STATUS.get(error.code, 400), f"{error.code}: {error.message}") from None
    except textops.OpError as error:
        raise RequestError(400, f"{ErrorCode.BAD_OP}: {error}") from None
    except CorruptDocumentError as error:
        log.error("%s", error)
        raise RequestError(500, "document cannot be loaded: damaged on disk") from None
    except (RuntimeError, ConnectionError, OSError) as error:  # the store refused, a delete
        log.warning("a lifecycle change was not saved: %r", error)  # dropped it meanwhile
        raise RequestError(503, f"not saved: {error}") from None


def _content_type(request: Request, allowed: tuple[str, ...]) -> str:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in allowed:
        raise RequestError(415, f"the body must be {' or '.join(allowed)}")
    return kind


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, read no further than `limit` bytes (413 beyond)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the body is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decoded(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(400, f"the body is not UTF-8: {error.reason}") from None
