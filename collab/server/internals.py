"""The fence: every private member of uvicorn, websockets and h11 that `collab serve`'s
fast path uses, with the shape it expects, and the check that they are there.

The fast path (`collab.server.websocket`, `collab.server.connections`) subclasses
uvicorn's `WebSocketsSansIOProtocol` and `H11Protocol` and reaches into websockets'
`ServerProtocol`: none of that is a public API, and a release may rename any of it. So
`collab serve` asks `fast_path_problem()` before it serves: on versions outside the tested
ranges (`TESTED`, the same as pyproject.toml's), or when a member below is missing or has
another shape, it serves on uvicorn's stock protocols instead (the public ASGI path: the
app already works under any ASGI server) and says why, once. tests/test_server_internals.py
checks each member on the installed versions, and that the package uses no other.

A method's shape is the names of its parameters after `self` (what we pass or override);
an attribute's is its type right after the class is constructed, or, for one that the
class sets later, the method whose source assigns it.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any

TESTED = {"uvicorn": ("0.55", "0.56"), "websockets": ("17.4", "18"), "h11": ("0.16", "0.17")}
"""package -> (lowest tested release, first release not tested): pyproject.toml's ranges."""

WS = "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol"
HTTP = "uvicorn.protocols.http.h11_impl:H11Protocol"
CONN = "websockets.server:ServerProtocol"  # the WebSocket protocol's `self.conn`
H11 = "h11:Connection"  # the HTTP protocol's `self.conn`
SERVER = "uvicorn.server:Server"
PROTOCOL = "websockets.protocol:Protocol"  # ServerProtocol's base: where frames are handled


@dataclass(frozen=True)
class Member:
    """One member of `owner` ("module:Class") that the fast path uses."""

    owner: str
    name: str
    params: tuple[str, ...] | None = None  # a method: its parameters after `self`
    type: type | tuple[type, ...] | None = None  # an attribute: its type once constructed
    set_in: str | None = None  # an attribute set later: the method that assigns it

    def __str__(self) -> str:
        return f"{self.owner.split(':')[1]}.{self.name}"


def _method(owner: str, name: str, *params: str) -> Member:
    return Member(owner, name, params=params)


def _attr(owner: str, name: str, kind: type | tuple[type, ...]) -> Member:
    return Member(owner, name, type=kind)


def _later(owner: str, name: str, method: str) -> Member:
    return Member(owner, name, set_in=method)


_OPTIONAL_FLOAT = (float, int, type(None))
MEMBERS: tuple[Member, ...] = (
    # uvicorn's WebSocket protocol: what collab.server.websocket overrides, calls and reads.
    _method(WS, "__init__", "config", "server_state", "app_state", "_loop"),
    _method(WS, "connection_made", "transport"),
    _method(WS, "connection_lost", "exc"),
    _method(WS, "data_received", "data"),
    _method(WS, "handle_connect", "event"),
    _method(WS, "handle_cont", "event"),
    _method(WS, "handle_ping"),
    _method(WS, "handle_pong", "event"),
    _method(WS, "handle_parser_exception"),
    _method(WS, "send_receive_event_to_app"),
    _method(WS, "start_keepalive"),
    _attr(WS, "conn", object),  # checked as websockets' ServerProtocol below
    _attr(WS, "queue", asyncio.Queue),  # replaced by LeanQueue: see QUEUE_METHODS
    _attr(WS, "writable", asyncio.Event),  # replaced by LeanEvent: see EVENT_METHODS
    _attr(WS, "loop", asyncio.AbstractEventLoop),
    _attr(WS, "logger", object),
    _attr(WS, "close_timeout", _OPTIONAL_FLOAT),
    _attr(WS, "transport", type(None)),  # set by connection_made, wrapped by us
    _attr(WS, "client", type(None)),  # set by connection_made
    _attr(WS, "close_sent", bool),
    _attr(WS, "close_timer", type(None)),
    _attr(WS, "disconnected", bool),
    _attr(WS, "handshake_complete", bool),
    _attr(WS, "initial_response", type(None)),
    _attr(WS, "read_paused", bool),
    _attr(WS, "frames", list),
    _attr(WS, "curr_msg_data_type", str),
    _later(WS, "scope", "handle_connect"),
    _later(WS, "request", "handle_connect"),
    _later(WS, "response", "handle_connect"),
    # websockets' server connection, as the WebSocket protocol's `self.conn`.
    _method(CONN, "send_binary", "data", "fin"),
    _method(CONN, "send_text", "data", "fin"),
    _method(CONN, "send_continuation", "data", "fin"),
    _method(CONN, "send_close", "code", "reason"),
    _method(CONN, "data_to_send"),
    _attr(CONN, "writes", list),  # one entry per queued write: a ping's pong is one
    _attr(CONN, "expect_continuation_frame", bool),
    _attr(CONN, "extensions", list),
    _attr(CONN, "handshake_exc", type(None)),
    _attr(CONN, "state", object),
    _attr(CONN, "logger", object),
    # uvicorn's h11 protocol: what collab.server.connections overrides, calls and reads.
    _method(HTTP, "__init__", "config", "server_state", "app_state", "_loop"),
    _method(HTTP, "connection_made", "transport"),
    _method(HTTP, "connection_lost", "exc"),
    _method(HTTP, "data_received", "data"),
    _method(HTTP, "pause_writing"),
    _method(HTTP, "resume_writing"),
    _attr(HTTP, "conn", object),  # checked as h11's Connection below
    _attr(HTTP, "loop", asyncio.AbstractEventLoop),
    # ... and what a whole upgrade head taken at once uses, as handle_websocket_upgrade
    _attr(HTTP, "config", object),
    _attr(HTTP, "server_state", object),
    _attr(HTTP, "app_state", dict),
    _attr(HTTP, "connections", set),
    _attr(HTTP, "ws_protocol_class", type),
    _later(HTTP, "transport", "connection_made"),
    _later(HTTP, "client", "connection_made"),
    # uvicorn's server: what `collab serve`'s subclass overrides and calls.
    _method(SERVER, "startup", "sockets"),
    _method(SERVER, "shutdown", "sockets"),
    _method(SERVER, "capture_signals"),
    _method(SERVER, "handle_exit", "sig", "frame"),
    # h11's connection, as the h11 protocol's `self.conn` (public h11 API, named here so
    # that a rename shows).
    _attr(H11, "their_state", type),
    _attr(H11, "our_state", type),
)


@dataclass(frozen=True)
class Hook:
    """A call the fast path relies on: `owner.caller`'s code makes it (`call` is in its
    source). An override that its base class stopped calling would be skipped silently."""

    owner: str
    caller: str
    call: str

    def __str__(self) -> str:
        return f"{self.owner.split(':')[1]}.{self.caller} -> {self.call}"


HOOKS: tuple[Hook, ...] = (
    Hook(WS, "handle_events", "self.handle_connect("),
    Hook(WS, "handle_events", "self.handle_cont("),
    Hook(WS, "handle_events", "self.handle_ping("),
    Hook(WS, "handle_events", "self.handle_pong("),
    Hook(WS, "handle_text", "self.send_receive_event_to_app("),
    Hook(WS, "handle_bytes", "self.send_receive_event_to_app("),
    Hook(WS, "handle_cont", "self.send_receive_event_to_app("),
    Hook(WS, "send", "self.start_keepalive("),  # once the 101 is written
    Hook(PROTOCOL, "recv_frame", "Frame(PONG, frame.data)"),  # a pong queued per ping...
    Hook(PROTOCOL, "send_frame", "self.writes.append("),  # ... as one entry of `writes`
    Hook(HTTP, "handle_websocket_upgrade", "self.transport.set_protocol("),  # the switch
    # A head taken at once (`HTTPProtocol._upgrade_at_once`) does what the upgrade does:
    Hook(HTTP, "handle_websocket_upgrade", "self.connections.discard(self)"),
    Hook(HTTP, "handle_websocket_upgrade", "protocol.connection_made(self.transport)"),
    Hook(HTTP, "handle_websocket_upgrade", "protocol.data_received("),
    Hook(HTTP, "data_received", "self._unset_keepalive_if_required()"),  # none when fresh
    Hook(HTTP, "_get_upgrade", 'if b"upgrade" in connection:'),  # as is_websocket_upgrade
)

ADDED = {
    WS: (
        *("_early_frames", "_fail", "_fragmenting", "_frame_allowed", "_on_frame"),
        *("_raw_transport", "_receiver", "buffered", "close_timeout_setting"),
        *("early_frames_setting", "receive_directly", "send_budget_setting", "send_fragment"),
        "send_now",
    ),
    HTTP: (
        *("_arm_head_timer", "_cancel_head_timer", "_cancel_send_timer", "_head_timed_out"),
        *("_send_timed_out", "_upgrade_at_once", "fresh", "head_timer", "refused"),
        "send_timer",
    ),
}
"""What our subclasses add, by the class they subclass: a release that gives the base a
member of the same name would have it overridden without a word, so none may exist there."""

QUEUE_METHODS = ("put_nowait", "get", "empty")
"""What uvicorn's WebSocket protocol may call on `self.queue` (all that LeanQueue has)."""
EVENT_METHODS = ("set", "clear", "is_set", "wait")
"""What uvicorn's WebSocket protocol may call on `self.writable` (all that LeanEvent has)."""
H11_STATES = ("IDLE", "SEND_BODY", "SEND_RESPONSE")
"""h11's states that the request deadline compares with."""


def release(version: str) -> tuple[int, ...]:
    """A version's release numbers ("0.55.1rc1" -> (0, 55, 1)): what the ranges compare."""
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.end() < len(part):
            break
    return tuple(numbers)


def installed_versions() -> dict[str, str]:
    """The installed version of each package in `TESTED`."""
    return {name: metadata.version(name) for name in TESTED}


def version_problems(installed: dict[str, str]) -> list[str]:
    """One line per package whose installed version is outside its tested range."""
    problems = []
    for name, (low, high) in TESTED.items():
        version = installed.get(name, "?")
        if not release(low) <= release(version) < release(high):
            problems.append(f"{name} {version} is not in the tested range >={low},<{high}")
    return problems


def member_problems() -> list[str]:
    """One line per member of `MEMBERS` that is missing or has another shape."""
    instances = _constructed()
    problems = [why for member in MEMBERS if (why := _check(member, instances)) is not None]
    problems += [f"{hook} is no longer called" for hook in HOOKS if not _calls(hook)]
    problems += [why for owner, names in ADDED.items() for why in _clashes(owner, names)]
    problems += _calls_only(instances[WS], "queue", QUEUE_METHODS)
    problems += _calls_only(instances[WS], "writable", EVENT_METHODS)
    import h11

    problems += [f"h11.{state} is missing" for state in H11_STATES if not hasattr(h11, state)]
    return problems


def fast_path_problem() -> str | None:
    """Why the fast path cannot run on what is installed, or None when it can."""
    try:
        problems = version_problems(installed_versions())
        if not problems:
            problems = member_problems()
    except Exception as error:  # a release that changed what the check itself constructs
        problems = [f"the check of uvicorn's internals failed: {error!r}"]
    return "; ".join(problems) or None


def _owner_class(owner: str) -> type:
    module, _, name = owner.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def _constructed() -> dict[str, Any]:
    """An instance of each owner, as uvicorn makes them (a loop that never runs)."""
    import uvicorn
    from uvicorn.server import ServerState

    ws_class, http_class = _owner_class(WS), _owner_class(HTTP)
    config = uvicorn.Config(_no_app, log_config=None, ws=ws_class, http=http_class, lifespan="off")
    config.load()
    loop = asyncio.new_event_loop()
    try:
        ws = ws_class(config, ServerState(), {}, _loop=loop)
        http = http_class(config, ServerState(), {}, _loop=loop)
    finally:
        loop.close()
    return {WS: ws, HTTP: http, CONN: ws.conn, H11: http.conn}


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """The app of the instances `_constructed` makes: never called."""


def _check(member: Member, instances: dict[str, Any]) -> str | None:
    cls = _owner_class(member.owner)
    if member.params is not None:
        method = getattr(cls, member.name, None)
        if not callable(method):
            return f"{member} is missing"
        names = list(inspect.signature(method).parameters)[1:]
        if names[: len(member.params)] != list(member.params):
            return f"{member} takes {tuple(names)}, not {member.params}"
        return None
    if member.set_in is not None:
        source = inspect.getsource(getattr(cls, member.set_in))
        if f"self.{member.name} =" not in source and f"self.{member.name}:" not in source:
            return f"{member} is no longer set by {member.set_in}"
        return None
    instance = instances[member.owner]
    if not hasattr(instance, member.name):
        return f"{member} is missing"
    kind = member.type or object
    if member.name == "conn":  # uvicorn's protocols hold the connections listed here
        kind = _owner_class(CONN if member.owner == WS else H11)
    value = getattr(instance, member.name)
    if not isinstance(value, kind):
        return f"{member} is {type(value).__name__}, not {kind}"
    return None


def _calls(hook: Hook) -> bool:
    return hook.call in inspect.getsource(getattr(_owner_class(hook.owner), hook.caller))


def _module_source(cls: type) -> str:
    """The source of the module that defines `cls` (read whole: `getsource` of a class
    tokenizes it, ten times slower, and the module holds no other protocol)."""
    return inspect.getsource(sys.modules[cls.__module__])


def _clashes(owner: str, names: tuple[str, ...]) -> list[str]:
    """The names our subclass adds that the base class (or its module, on `self`) has too."""
    cls = _owner_class(owner)
    source = _module_source(cls)
    return [
        f"{cls.__name__}.{name} exists: our subclass would override it"
        for name in names
        if hasattr(cls, name) or re.search(rf"self\.{name}\b", source)
    ]


def _calls_only(instance: Any, attribute: str, allowed: tuple[str, ...]) -> list[str]:
    """The methods uvicorn's module calls on `self.<attribute>` beyond `allowed`."""
    source = _module_source(type(instance))
    called = set(re.findall(rf"self\.{attribute}\.(\w+)", source))
    return [f"uvicorn calls self.{attribute}.{name}" for name in sorted(called - set(allowed))]
