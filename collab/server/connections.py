"""What uvicorn lacks against clients that prove nothing: caps and deadlines per connection.

- connections per client address and in total, counted from TCP accept to close (across
  the switch from HTTP to WebSocket), refused with a 503 past the caps;
- a deadline for the request, head and body (uvicorn only times out idle keep-alive
  connections after a response, never a silent new socket, a half-sent head or a body
  dribbled a byte at a time, before or after the response): 408 and hang up;
- a send deadline: a client that takes nothing of a response for `send_timeout` seconds
  while the server's buffer for it is full is dropped (uvicorn waits for ever);
- the file-descriptor limit raised to its hard limit, the connection cap kept below it;
- "accept out of system resource" (EMFILE) logged once per interval, not per attempt;
- a WebSocket upgrade head that arrives whole in the connection's first read goes straight
  to the WebSocket protocol, which parses it anyway: uvicorn would parse it with h11
  first, build an HTTP scope and write the head out again (~40 µs of a connection's
  set-up). Anything else (a head in pieces, bytes after it, another method or protocol
  version, no Host or two, a target h11 refuses) takes h11's path as before.

The caps themselves are pure bookkeeping in `collab.access.limits`. The protocol classes are
module-level (`--workers` hands them to the processes it spawns); each process installs
its `Gate` with `install_gate` before serving.
"""

from __future__ import annotations

import asyncio
import logging
import re
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from collab.access.limits import ConnectionCounter, LogThrottle
from collab.config import Settings
from collab.storage.files import MAX_OPEN_LOGS

log = logging.getLogger("collab")

# Descriptors kept from connections: the store's open logs, and 64 for its other files,
# the fsync threads' pipes and the listening socket.
FD_RESERVE = 64 + MAX_OPEN_LOGS


def raise_fd_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as error:
            log.warning("cannot raise the file-descriptor limit to %d: %s", hard, error)
    return soft


def connection_cap(settings: Settings, fd_limit: int) -> int:
    """The total connection cap: the setting, kept below the descriptor limit."""
    return max(1, min(settings.max_connections, fd_limit - FD_RESERVE))


MAX_DIRECT_HEAD = 16 * 1024  # bytes: uvicorn's default cap on an incomplete h11 event
_DIRECT_REQUEST_LINE = re.compile(rb"GET [\x21-\x7e]+ HTTP/1\.1")
"""A request line h11 takes (a target of visible ASCII) and websockets too (HTTP/1.1)."""


def websocket_upgrade_head(data: bytes) -> bytes | None:
    """`data` with its header names in lower case (as ASGI scopes carry them, and as
    uvicorn's h11 path hands the head on) when it is exactly one whole GET head that
    that path would upgrade to a WebSocket: its `Connection` tokens hold "upgrade" and
    its `Upgrade` is "websocket" (the last of each counting, as uvicorn reads them).
    None otherwise. The WebSocket protocol then checks the rest of the handshake; what
    h11 refuses and websockets does not check (a control character in the target, a
    second Host) is left to h11, which answers 400."""
    if not data.startswith(b"GET ") or len(data) > MAX_DIRECT_HEAD:
        return None
    if data.find(b"\r\n\r\n") != len(data) - 4:
        return None
    lines = data[:-4].split(b"\r\n")
    if not _DIRECT_REQUEST_LINE.fullmatch(lines[0]):
        return None
    connection: list[bytes] = []
    upgrade = None
    hosts = 0
    for index in range(1, len(lines)):
        name, colon, value = lines[index].partition(b":")
        if not colon:
            return None
        name = name.lower()
        lines[index] = name + b":" + value
        if name == b"connection":
            connection = [token.strip() for token in value.lower().split(b",")]
        elif name == b"upgrade":
            upgrade = value.strip().lower()
        elif name == b"host":
            hosts += 1
    if upgrade != b"websocket" or b"upgrade" not in connection or hosts != 1:
        return None
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _response(status: int, reason: str, body: str) -> bytes:
    data = body.encode()
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"connection: close\r\ncontent-length: {len(data)}\r\n\r\n"
    ).encode() + data


class Gate:
    """Shared by every connection of one server: the counter and the log throttles."""

    def __init__(self, settings: Settings, total: int, metrics: Any = None) -> None:
        self.settings = settings
        self.counter = ConnectionCounter(settings.max_connections_per_address, total)
        self.metrics = metrics
        self.throttles: dict[str, LogThrottle] = {}
        self._holders: dict[int, Any] = {}  # id(transport) -> address

    def note(self, reason: str, message: str, *args: Any) -> None:
        """Count a refusal, and log it at most once per 10 s per reason."""
        if self.metrics is not None:
            self.metrics.refused(reason)
        throttle = self.throttles.setdefault(reason, LogThrottle(10.0))
        held = throttle.should_log()
        if held is not None:
            suffix = f" ({held} more since the last line)" if held else ""
            log.warning(message + suffix, *args)

    def admit(self, transport: Any) -> str | None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) else str(peer)
        limit = self.counter.open(address)
        if limit is None:
            self._holders[id(transport)] = address
        return limit

    def release(self, transport: Any) -> None:
        address = self._holders.pop(id(transport), None)
        if address is not None:
            self.counter.close(address)


_gate: Gate | None = None


def install_gate(gate: Gate) -> None:
    """The caps of this process's server (its protocols read them)."""
    global _gate
    _gate = gate


def current_gate() -> Gate | None:
    return _gate


class HTTPProtocol(H11Protocol):
    """uvicorn's h11 protocol with connection caps and a request deadline: from the first
    byte of a request head (or the connection's opening) the head and its body must be
    in within `head_timeout` seconds (the API takes no bodies: a body is only read to be
    dropped)."""

    head_timer: asyncio.TimerHandle | None = None
    send_timer: asyncio.TimerHandle | None = None
    refused = False
    fresh = True  # nothing received yet

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        gate = _gate
        if gate is None:
            return
        limit = gate.admit(transport)
        if limit is not None:
            self.refused = True
            gate.note(
                "connections",
                "refused a connection from %s: %s connection limit",
                self.client[0] if self.client else "?",
                limit,
            )
            transport.write(_response(503, "Service Unavailable", "too many connections"))
            transport.close()
            return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        timeout = _gate.settings.head_timeout if _gate is not None else 0
        if self.head_timer is None and timeout > 0:
            self.head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return
        their_state = self.conn.their_state
        if their_state is h11.IDLE:
            what = "no request head"
        elif their_state is h11.SEND_BODY:
            what = "request body not received"
        else:
            return  # the request is in; uvicorn owns the rest
        if _gate is not None:
            _gate.note(
                "head-timeout",
                "closed a connection from %s: %s in %g s",
                self.client[0] if self.client else "?",
                what,
                _gate.settings.head_timeout,
            )
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # no response begun
            self.transport.write(_response(408, "Request Timeout", "request too slow"))
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        head = websocket_upgrade_head(data) if self.fresh else None
        if head is not None and self.ws_protocol_class is not None:
            self._upgrade_at_once(head)
        else:
            super().data_received(data)
        self.fresh = False
        receiving = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if self.transport.get_protocol() is not self or not receiving:
            self._cancel_head_timer()  # upgraded, or the whole request is in
        else:
            self._arm_head_timer()  # (part of) a head or a body: the deadline runs

    def _upgrade_at_once(self, head: bytes) -> None:
        """What uvicorn's `handle_websocket_upgrade` does, without h11: the WebSocket
        protocol takes the connection and parses the head itself."""
        self.connections.discard(self)
        protocol = self.ws_protocol_class(  # type: ignore[call-arg, misc]
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        protocol.data_received(head)

    def pause_writing(self) -> None:
        """The write buffer is full: the client has `send_timeout` seconds to take some."""
        super().pause_writing()
        timeout = _gate.settings.send_timeout if _gate is not None else 0
        if self.send_timer is None and timeout > 0:
            self.send_timer = self.loop.call_later(timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_send_timer()

    def _cancel_send_timer(self) -> None:
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def _send_timed_out(self) -> None:
        self.send_timer = None
        if _gate is not None:
            _gate.note(
                "send-stall",
                "dropped a connection from %s: it took nothing of a response in %g s",
                self.client[0] if self.client else "?",
                _gate.settings.send_timeout,
            )
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_send_timer()
        if _gate is not None:
            _gate.release(self.transport)
        super().connection_lost(exc)


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, interval: float = 10.0) -> None:
    """Log "socket.accept() out of system resource" once per `interval`, with a count,
    instead of once per attempt (asyncio retries every second per listening socket, and
    under a descriptor flood that was 139 MB of log in 25 s)."""
    throttle = LogThrottle(interval)
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if "out of system resource" in str(context.get("message", "")):
            held = throttle.should_log()
            if held is not None:
                log.error(
                    "accept failed: %s (%s); %d more since the last line",
                    context.get("message"),
                    context.get("exception"),
                    held,
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
