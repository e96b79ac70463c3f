"""The fence around uvicorn's internals (collab/server/internals.py).

Every private member of uvicorn, websockets and h11 the fast path uses is listed there
with its shape; here each is checked on the installed versions, the package is checked to
use no member it does not list, and `collab serve` is checked to fall back to uvicorn's
stock protocols, with one warning, when the check fails.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, ServerProcess
from packaging.requirements import Requirement
from pyclient import YClient
from websockets.asyncio.client import connect

from collab.server import internals
from collab.text.client import TextClient

SERVER = REPO / "collab/server"
WARNING = "collab serve runs on uvicorn's stock protocols (the public ASGI path)"
TYPED = "héllo 👨‍👩‍👧 🇫🇷 中文 e\u0301\r\n"


@pytest.mark.parametrize("member", internals.MEMBERS, ids=str)
def test_each_listed_member_is_there_with_its_shape(member: internals.Member) -> None:
    assert internals._check(member, internals._constructed()) is None


@pytest.mark.parametrize("hook", internals.HOOKS, ids=str)
def test_each_call_the_fast_path_relies_on_is_made(hook: internals.Hook) -> None:
    assert internals._calls(hook)


def test_an_override_the_base_no_longer_calls_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    base = internals._owner_class(internals.WS)

    def handle_text(self: Any, event: Any) -> None:  # a release that inlined the hand-over
        self.queue.put_nowait({"type": "websocket.receive", "text": event.data.decode()})

    monkeypatch.setattr(base, "handle_text", handle_text)
    why = "handle_text -> self.send_receive_event_to_app( is no longer called"
    assert internals.member_problems() == [f"WebSocketsSansIOProtocol.{why}"]


def test_the_installed_versions_pass_the_whole_check() -> None:
    assert internals.member_problems() == []
    assert internals.version_problems(internals.installed_versions()) == []
    assert internals.fast_path_problem() is None


def test_the_tested_ranges_are_pyprojects() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ranges = {}
    for line in project["dependencies"]:
        requirement = Requirement(line)
        ranges[requirement.name] = {str(spec) for spec in requirement.specifier}
    for name, (low, high) in internals.TESTED.items():
        assert ranges[name] == {f">={low}", f"<{high}"}, name


@pytest.mark.parametrize(
    ("uvicorn", "fits"),
    [
        *[("0.55.0", True), ("0.55.12", True), ("0.55.0.post1", True)],
        *[("0.56.0", False), ("0.56.0rc1", False), ("0.54.9", False), ("1.0", False), ("?", False)],
    ],
)
def test_versions_outside_the_tested_range_are_named(uvicorn: str, fits: bool) -> None:
    installed = {"uvicorn": uvicorn, "websockets": "17.4", "h11": "0.16.0"}
    problems = internals.version_problems(installed)
    assert problems == (
        [] if fits else [f"uvicorn {uvicorn} is not in the tested range >=0.55,<0.56"]
    )


def test_a_missing_member_or_another_shape_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    WS, CONN = internals.WS, internals.CONN
    wrong = (
        internals.Member(WS, "handle_pong", params=("frame",)),  # renamed parameter
        internals.Member(WS, "gone_in_a_release", params=()),
        internals.Member(WS, "frames", type=dict),  # another type
        internals.Member(CONN, "writes_queue", type=list),
        internals.Member(WS, "scope", set_in="connection_made"),  # set elsewhere now
    )
    monkeypatch.setattr(internals, "MEMBERS", wrong)
    assert internals.member_problems() == [
        "WebSocketsSansIOProtocol.handle_pong takes ('event',), not ('frame',)",
        "WebSocketsSansIOProtocol.gone_in_a_release is missing",
        "WebSocketsSansIOProtocol.frames is list, not <class 'dict'>",
        "ServerProtocol.writes_queue is missing",
        "WebSocketsSansIOProtocol.scope is no longer set by connection_made",
    ]
    assert internals.fast_path_problem() is not None


def test_uvicorn_calling_more_of_the_lean_queue_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(internals, "QUEUE_METHODS", ("put_nowait", "get"))
    assert internals.member_problems() == ["uvicorn calls self.queue.empty"]


def test_a_check_that_breaks_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed_constructor() -> Any:
        raise TypeError("__init__() missing 1 required positional argument: 'limits'")

    monkeypatch.setattr(internals, "_constructed", changed_constructor)
    problem = internals.fast_path_problem()
    assert problem is not None and "check of uvicorn's internals failed" in problem
    assert "'limits'" in problem


# What the package uses of the classes it subclasses: only what MEMBERS lists.

SUBCLASSES = {  # our class -> the class it subclasses (an owner in MEMBERS)
    ("websocket.py", "WebSocketProtocol"): internals.WS,
    ("connections.py", "HTTPProtocol"): internals.HTTP,
    ("serve.py", "Server"): internals.SERVER,
}
CONNECTIONS = {internals.WS: internals.CONN, internals.HTTP: internals.H11}


def _class_node(file: str, name: str) -> ast.ClassDef:
    tree = ast.parse((SERVER / file).read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)


def _used(node: ast.ClassDef) -> tuple[set[str], set[str]]:
    """Names used as `self.X` or `super().X` (and methods defined), and as `self.conn.X` or
    `conn.X` (a local bound to `self.conn`)."""
    on_self, on_conn = set(), set()
    for child in ast.walk(node):
        if isinstance(child, ast.FunctionDef):
            on_self.add(child.name)
        elif isinstance(child, ast.Call) and getattr(child.func, "id", "") == "getattr":
            if _holder(child.args[0]) == "self" and isinstance(child.args[1], ast.Constant):
                on_self.add(child.args[1].value)
        elif isinstance(child, ast.Attribute):
            holder = _holder(child.value)
            if holder == "self":
                on_self.add(child.attr)
            elif holder == "conn":
                on_conn.add(child.attr)
    return on_self, on_conn


def _holder(target: ast.expr) -> str | None:
    """ "self" for `self` and `super()`, "conn" for `conn` and `self.conn`."""
    if isinstance(target, ast.Name) and target.id in ("self", "conn"):
        return target.id
    if isinstance(target, ast.Call) and getattr(target.func, "id", "") == "super":
        return "self"
    if isinstance(target, ast.Attribute) and target.attr == "conn":
        return "conn" if _holder(target.value) == "self" else None
    return None


def _members_of(owner: str) -> set[str]:
    """What the class offers: its attributes and methods, and what its code assigns to
    `self` anywhere (set after construction)."""
    import inspect

    cls = internals._owner_class(owner)
    names = set(dir(cls))
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in ("uvicorn", "websockets", "h11"):
            names |= set(re.findall(r"self\.(\w+)\s*[:=]", inspect.getsource(klass)))
    return names


def _listed(owner: str) -> set[str]:
    return {member.name for member in internals.MEMBERS if member.owner == owner}


@pytest.mark.parametrize(("where", "owner"), SUBCLASSES.items(), ids=lambda v: str(v))
def test_the_package_uses_no_member_it_does_not_list(where: tuple[str, str], owner: str) -> None:
    on_self, on_conn = _used(_class_node(*where))
    unlisted = (on_self & _members_of(owner)) - _listed(owner)
    assert unlisted == set(), f"{where[1]} uses {owner}'s {sorted(unlisted)}: list them"
    if owner in CONNECTIONS:
        connection = CONNECTIONS[owner]
        unlisted = (on_conn & _members_of(connection)) - _listed(connection)
        assert unlisted == set(), f"{where[1]} uses {connection}'s {sorted(unlisted)}"
    else:
        assert on_conn == set()


@pytest.mark.parametrize(("where", "owner"), SUBCLASSES.items(), ids=lambda v: str(v))
def test_what_the_package_adds_is_listed_so_a_clash_shows(
    where: tuple[str, str], owner: str
) -> None:
    on_self, _ = _used(_class_node(*where))
    added = on_self - _members_of(owner) - {"__init__"}
    assert added == set(internals.ADDED.get(owner, ())), where


def test_a_release_that_adds_one_of_our_names_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    base = internals._owner_class(internals.WS)
    monkeypatch.setattr(base, "send_now", lambda self, data: None, raising=False)
    assert internals.member_problems() == [
        "WebSocketsSansIOProtocol.send_now exists: our subclass would override it"
    ]


def test_the_member_scan_finds_a_use_that_is_not_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test above can fail: without `read_paused` in the list it names it."""
    members = tuple(m for m in internals.MEMBERS if m.name != "read_paused")
    monkeypatch.setattr(internals, "MEMBERS", members)
    on_self, _ = _used(_class_node("websocket.py", "WebSocketProtocol"))
    assert (on_self & _members_of(internals.WS)) - _listed(internals.WS) == {"read_paused"}


# Only collab/server/ touches uvicorn, websockets and h11.

FENCED = ("uvicorn", "websockets", "h11")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_collab_server_imports_uvicorn_websockets_or_h11() -> None:
    outside = [
        f"{path.relative_to(REPO)}: {sorted(_imports(path) & set(FENCED))}"
        for path in sorted((REPO / "collab").rglob("*.py"))
        if SERVER not in path.parents and _imports(path) & set(FENCED)
    ]
    assert outside == []


def test_the_web_edge_uses_only_the_extension_keys_the_server_offers() -> None:
    """collab/web/ reaches the server through the scope extensions only: each key it reads
    is one `WebSocketProtocol.handle_connect` puts in the dict it offers."""
    offered = set(re.findall(r'socket\["(\w+)"\]', (SERVER / "websocket.py").read_text()))
    offered |= set(re.findall(r'"(\w+)": self\.', (SERVER / "websocket.py").read_text()))
    read = set()
    for path in (REPO / "collab/web").glob("*.py"):
        read |= set(re.findall(r'extension\["(\w+)"\]', path.read_text()))
    assert read and read <= offered, (read, offered)
    assert offered == {"abort", "send_now", "buffered", "receive_directly", "send_fragment"}


# On an untested uvicorn, `collab serve` runs on the public path, and says so once.


@pytest.fixture(params=["version", "member"])
def public_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    """`collab serve` with the fence's check failing: an untested version, or a missing
    member (tests/public_edge.py)."""
    monkeypatch.setenv("FENCE_BREAK", request.param)
    server = ServerProcess(tmp_path / "data", ["--fsync", "never"], edge="public")
    server.start()
    yield server
    server.kill()


async def test_an_untested_uvicorn_serves_both_doors_on_the_public_path(
    public_server: ServerProcess,
) -> None:
    name = "fence-ü"
    async with (
        await YClient.connect(f"{public_server.ws_url}/yjs/{name}") as a,
        await YClient.connect(f"{public_server.ws_url}/yjs/{name}") as b,
    ):
        await a.synced()
        await b.synced()
        a.insert(0, TYPED)
        await b.wait_text(TYPED)
        ot = TextClient()
        async with connect(f"{public_server.ws_url}/ot/{name}", proxy=None) as ws:
            await ws.send(json.dumps(ot.hello()))
            await _read_until(ws, ot, lambda m: m["type"] == "welcome")
            assert ot.text == TYPED
            for message in ot.edit([len(TYPED), "末尾 🇫🇷"]):
                await ws.send(json.dumps(message))
            await _read_until(ws, ot, lambda m: m["type"] == "ack")
        await a.wait_text(TYPED + "末尾 🇫🇷")
    log = public_server.log()
    assert log.count(WARNING) == 1, log
    reason = "uvicorn 0.99.0 is not in the tested range" in log or "a_member_no_release_has" in log
    assert reason, log
    assert "Traceback" not in log
    assert "file-descriptor limit" not in log  # the caps are the fast path's: not claimed
    async with httpx.AsyncClient(base_url=public_server.http_url, trust_env=False) as http:
        assert (await http.get(f"/api/docs/{name}/text")).text == TYPED + "末尾 🇫🇷"


async def _read_until(ws: Any, client: TextClient, done: Callable[[dict[str, Any]], bool]) -> None:
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            for answer in client.receive(message):
                await ws.send(json.dumps(answer))
            if done(message):
                return


def test_the_fast_path_says_nothing_about_the_public_one(server: ServerProcess) -> None:
    assert WARNING not in server.log()
    assert "file-descriptor limit" in server.log()
