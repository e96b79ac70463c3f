"""The Hocuspocus door on two processes sharing PostgreSQL and Redis: a provider on one
and a y-websocket peer on the other edit one document, and SyncStatus still means the
change is committed."""

from __future__ import annotations

import asyncio

import pytest
from test_e2e_hocuspocus import UNICODE, node, stored_text  # noqa: F401 (fixture)
from test_e2e_yjs import server_text
from test_scale_out import processes  # noqa: F401 (fixture)
from yjs_node import NodeYjs

pytestmark = pytest.mark.node


def test_a_provider_and_a_y_websocket_peer_on_two_processes(
    processes,  # noqa: F811
    node,  # noqa: F811
    postgres_url: str,
) -> None:
    first, second = processes(2)
    hocus = node().provider(first.ws_url, "scaled")
    ynode = NodeYjs()
    try:
        y = ynode.peer(second.ws_url, "scaled")
        hocus.insert(0, UNICODE)
        hocus.wait_saved()
        assert asyncio.run(stored_text(postgres_url, "scaled")) == UNICODE  # committed
        y.wait_text(UNICODE)
        y.insert(0, "from the other process ✍️ ")
        hocus.wait_text("from the other process ✍️ " + UNICODE)
        assert server_text(first, "scaled") == "from the other process ✍️ " + UNICODE
    finally:
        ynode.kill()
