"""Text clients and the session, with random interleavings, disconnects and resubmissions.

No sockets: each connection is a pair of in-order queues that a disconnect empties (what
was on the wire is lost), so every order of delivery the network allows can happen.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ot_ids import secret_for

from collab.session import Session
from collab.text.client import TextClient

ALPHABET = ["a", "b", " ", "😀", "👨‍👩‍👧", "👍🏽", "🇫🇷", "中文", "e\u0301", "\r\n"]


@dataclass
class Link:
    """One client's connection: in-order queues both ways."""

    client: TextClient
    peer: str
    up: deque[dict[str, Any]] = field(default_factory=deque)
    down: deque[str] = field(default_factory=deque)
    connected: bool = False


class World:
    def __init__(self, clients: int) -> None:
        self.session = Session("fuzz")
        self.links = [Link(TextClient(secret_for(f"c{i}")), f"c{i}-0") for i in range(clients)]
        self.generation = 0
        for link in self.links:
            self.connect(link)

    def connect(self, link: Link) -> None:
        self.generation += 1
        link.peer = f"{link.client.client_id}-{self.generation}"
        link.connected = True
        self.session.connect_text(link.peer)
        link.up.append(link.client.hello())

    def disconnect(self, link: Link) -> None:
        self.session.disconnect(link.peer)
        link.connected = False
        link.up.clear()
        link.down.clear()

    def pump_server(self) -> None:
        output = self.session.take_output()
        by_peer = {link.peer: link for link in self.links if link.connected}
        for peer, data in output.messages:
            if peer in by_peer:
                by_peer[peer].down.append(data)

    def step(self, link: Link, action: str, draw: Any) -> None:
        if action == "edit":
            text = link.client.text
            at = draw(st.integers(0, len(text)))
            cut = draw(st.integers(0, min(3, len(text) - at)))
            insert = "".join(draw(st.lists(st.sampled_from(ALPHABET), max_size=3)))
            op = [n for n in (at, -cut, insert, len(text) - at - cut) if n not in (0, "")]
            if op and not all(isinstance(p, int) and p > 0 for p in op):
                link.up.extend(link.client.edit(op))
        elif action == "up" and link.connected and link.up:
            self.session.receive(link.peer, json.dumps(link.up.popleft()))
            self.pump_server()
        elif action == "down" and link.connected and link.down:
            link.up.extend(link.client.receive(json.loads(link.down.popleft())))
        elif action == "reconnect":
            if link.connected:
                self.disconnect(link)
            self.connect(link)

    def settle(self) -> None:
        for link in self.links:
            if not link.connected:
                self.connect(link)
        for _ in range(10_000):
            moved = False
            for link in self.links:
                while link.up:
                    self.session.receive(link.peer, json.dumps(link.up.popleft()))
                    self.pump_server()
                    moved = True
                while link.down:
                    link.up.extend(link.client.receive(json.loads(link.down.popleft())))
                    moved = True
            if not moved:
                return
        raise AssertionError("the clients never settled")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_clients_converge_and_no_op_is_applied_twice(data: st.DataObject) -> None:
    world = World(data.draw(st.integers(2, 4)))
    actions = st.sampled_from(["edit", "edit", "up", "down", "down", "reconnect"])
    for _ in range(data.draw(st.integers(1, 60))):
        link = data.draw(st.sampled_from(world.links))
        world.step(link, data.draw(actions), data.draw)
    world.settle()
    for link in world.links:
        assert not link.client.pending, "an edit was never acknowledged"
        assert link.client.text == world.session.mirror
        assert link.client.rev == world.session.rev
    origins = [r.origin for r in world.session.history]
    assert len(origins) == len(set(origins)), "an op was applied twice"
