"""Drive real Yjs peers (y-websocket providers under Node) from the Python tests.

`NodeYjs` runs one `node tests/node/yclient.mjs` process; each `YPeer` is one Y.Doc with its
own WebsocketProvider in it. Commands go to the process as JSON lines on stdin, replies and
events come back as JSON lines on stdout, read by a background thread.

    with NodeYjs() as node:
        a = node.peer(server.ws_url, "doc")
        a.insert(0, "héllo 😀")
        a.wait_text("héllo 😀")
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent / "node"


class NodeError(AssertionError):
    """The Node process answered a command with an error, or did not answer in time."""


class Pending:
    """A command sent to Node whose reply has not been read yet."""

    def __init__(self, node: NodeYjs, request_id: int, what: str) -> None:
        self._node = node
        self.id = request_id
        self.what = what

    def result(self, timeout: float = 10.0) -> dict[str, Any]:
        return self._node._await_reply(self, timeout)


class NodeYjs:
    """One Node process holding any number of Yjs peers."""

    def __init__(self, script: str = "yclient.mjs") -> None:
        self._process = subprocess.Popen(
            ["node", str(NODE_DIR / script)],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._ids = itertools.count(1)
        self._names = itertools.count(1)
        self._lock = threading.Condition()
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- plumbing --------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message = json.loads(line)
            with self._lock:
                if "event" in message:
                    self.events.append(message)
                else:
                    self._replies[message["id"]] = message
                self._lock.notify_all()
        with self._lock:
            self._lock.notify_all()

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self.stderr.append(line)

    def send(self, cmd: str, **args: Any) -> Pending:
        """Send a command without waiting: call `.result()` on what it returns."""
        request_id = next(self._ids)
        assert self._process.stdin is not None
        line = json.dumps({"id": request_id, "cmd": cmd, **args}, ensure_ascii=False)
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        return Pending(self, request_id, f"{cmd} {args.get('peer', '')}")

    def request(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        """Send a command and return its reply; raise NodeError on an error or a timeout."""
        return self.send(cmd, **args).result(timeout)

    def _await_reply(self, pending: Pending, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while pending.id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._process.poll() is not None:
                    state = "exited" if self._process.poll() is not None else "is silent"
                    raise NodeError(f"no reply to {pending.what}: node {state}; {self._tail()}")
                self._lock.wait(min(left, 0.5))
            reply = self._replies.pop(pending.id)
        if not reply["ok"]:
            raise NodeError(f"{pending.what}: {reply['error']}")
        return reply

    def _tail(self) -> str:
        return "stderr: " + "".join(self.stderr[-20:])

    def events_of(self, peer: str, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["peer"] == peer and e["event"] == kind]

    # -- peers -------------------------------------------------------------------------------

    def peer(
        self,
        ws_url: str,
        room: str,
        *,
        name: str | None = None,
        params: dict[str, str] | None = None,
        awareness: dict[str, Any] | None = None,
        wait_synced: bool = True,
    ) -> YPeer:
        """A new Yjs peer on `ws_url/yjs/room` (room is URL-escaped by the caller if needed)."""
        name = name or f"p{next(self._names)}"
        reply = self.request(
            "connect",
            peer=name,
            url=f"{ws_url}/yjs",
            room=room,
            params=params or {},
            awareness=awareness,
        )
        peer = YPeer(self, name, reply["clientId"])
        if wait_synced:
            peer.wait_synced()
        return peer

    def peers_at_once(self, ws_url: str, room: str, count: int) -> list[YPeer]:
        """`count` peers on one room, all connect commands sent before any reply is read."""
        names = [f"p{next(self._names)}" for _ in range(count)]
        url = f"{ws_url}/yjs"
        pending = [self.send("connect", peer=n, url=url, room=room) for n in names]
        return [YPeer(self, n, p.result()["clientId"]) for n, p in zip(names, pending, strict=True)]

    def close(self) -> None:
        """End the process (and so every peer in it)."""
        if self._process.poll() is None:
            try:
                self.send("exit")
                self._process.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()

    def kill(self) -> None:
        """SIGKILL: every peer in this process vanishes without a goodbye."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(5)

    def __enter__(self) -> NodeYjs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class YPeer:
    """One Y.Doc + WebsocketProvider inside a `NodeYjs` process; positions are UTF-16 units."""

    def __init__(self, node: NodeYjs, name: str, client_id: int) -> None:
        self.node = node
        self.name = name
        self.client_id = client_id

    def _call(self, cmd: str, timeout: float = 10.0, **args: Any) -> dict[str, Any]:
        return self.node.request(cmd, timeout, peer=self.name, **args)

    def insert(self, index: int, text: str) -> None:
        self._call("insert", index=index, text=text)

    def delete(self, index: int, length: int) -> None:
        self._call("delete", index=index, length=length)

    def insert_embed(self, index: int, embed: dict[str, Any]) -> None:
        """`ytext.insertEmbed(index, embed)`: an object inside the shared text."""
        self._call("insert-embed", index=index, embed=embed)

    def insert_many(self, text: str, count: int, timeout: float = 60.0) -> int:
        """Append `text` `count` times, one transaction (one update message) each."""
        return self._call("insert-many", timeout, text=text, count=count)["length"]

    def type_randomly(self, count: int, seed: int, pause_ms: float = 1.0) -> Pending:
        """Start `count` random edits (never splitting a surrogate pair); returns at once."""
        return self.node.send("type", peer=self.name, count=count, seed=seed, pauseMs=pause_ms)

    def text(self) -> str:
        return self._call("text")["text"]

    def connected(self) -> bool:
        return self._call("status")["connected"]

    def synced(self) -> bool:
        return self._call("status")["synced"]

    def wait_synced(self, timeout: float = 10.0) -> None:
        self._call("wait-synced", timeout + 5, timeoutMs=int(timeout * 1000))

    def wait_text(self, expected: str, timeout: float = 10.0) -> None:
        """Wait until this peer's text is `expected`; the error shows the text it has."""
        try:
            self._call("wait-text", timeout + 5, text=expected, timeoutMs=int(timeout * 1000))
        except NodeError as error:
            raise NodeError(f"{self.name} has {self.text()!r}, expected {expected!r}") from error

    def wait_until(self, condition: Callable[[YPeer], bool], timeout: float = 10.0) -> None:
        """Poll `condition(self)` until it holds."""
        deadline = time.monotonic() + timeout
        while not condition(self):
            if time.monotonic() > deadline:
                raise NodeError(f"{self.name}: condition not met in {timeout}s")
            time.sleep(0.02)

    def set_awareness(self, state: dict[str, Any] | None) -> None:
        self._call("awareness-set", state=state)

    def awareness_states(self) -> dict[int, Any]:
        """Every awareness state this peer knows, by client id (its own included)."""
        return {int(k): v for k, v in self._call("awareness-states")["states"].items()}

    def set_cursor(self, anchor: int, head: int, user: dict[str, Any] | None = None) -> None:
        """Set this peer's caret as y-codemirror does (UTF-16 indices, relative positions)."""
        self._call("cursor-set", anchor=anchor, head=head, user=user)

    def cursors(self) -> dict[int, dict[str, Any]]:
        """The others' cursors resolved in this peer's text: {anchor, head} in UTF-16, user."""
        return {int(k): v for k, v in self._call("cursors")["cursors"].items()}

    def disconnect(self) -> None:
        """Go offline (the provider says goodbye); edits made now are kept and merged later."""
        self._call("disconnect")

    def reconnect(self) -> None:
        self._call("reconnect")

    def drop(self) -> None:
        """Cut the TCP connection with no close frame and no awareness goodbye."""
        self._call("drop")

    def destroy(self) -> None:
        self._call("destroy")

    def state_vector(self) -> bytes:
        return base64.b64decode(self._call("state-vector")["stateVector"])

    def encode_state(self) -> bytes:
        """The whole document as one Yjs update (Y.encodeStateAsUpdate)."""
        return base64.b64decode(self._call("encode-state")["update"])

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self.node.events_of(self.name, kind)
