"""A change sent in pieces lands whole or not at all (issue 23): an op that says what the
next pieces of its change carry (`more`) is refused `too-large` before anything of the
change is applied when the whole would not fit the document."""

from __future__ import annotations

import json

from conftest import ServerProcess
from ot_ids import secret_for
from pyclient import url_name
from websockets.asyncio.client import connect


async def exchange(ws, message: dict) -> dict:
    """Send `message`; the first ack or error that answers it."""
    await ws.send(json.dumps(message))
    while True:
        reply = json.loads(await ws.recv())
        if reply["type"] in ("ack", "error"):
            return reply


async def test_the_whole_change_is_checked_before_its_first_piece(start_server) -> None:
    server: ServerProcess = start_server("--fsync", "never", "--max-document-bytes", "20000")
    name = "pieces 中文"
    async with connect(f"{server.ws_url}/ot/{url_name(name)}", proxy=None) as ws:
        await ws.send(json.dumps({"type": "hello", "secret": secret_for("a"), "rev": None}))
        welcome = json.loads(await ws.recv())
        piece = "😀 中文 " * 500  # 2,500 code points, 6,000 bytes
        too_much = {"bytes": 15_000, "parts": 3}
        op = {"type": "op", "seq": 1, "rev": welcome["rev"], "op": [piece], "more": too_much}
        reply = await exchange(ws, op)
        assert (reply["type"], reply["code"], reply["seq"]) == ("error", "too-large", 1)
        fits = {"bytes": 10_000, "parts": 3}
        reply = await exchange(ws, {**op, "more": fits})
        assert reply == {"type": "ack", "seq": 1, "rev": 1}
        for bad in ({"bytes": -1, "parts": 0}, {"bytes": 1}, [1, 2], "many", {"bytes": True}):
            message = {"type": "op", "seq": 2, "rev": 1, "op": [2500, "x"], "more": bad}
            reply = await exchange(ws, message)
            assert (reply["code"], reply["seq"]) == ("bad-message", 2)
        reply = await exchange(ws, {"type": "op", "seq": 2, "rev": 1, "op": [2500, "👍🏽"]})
        assert reply == {"type": "ack", "seq": 2, "rev": 2}
