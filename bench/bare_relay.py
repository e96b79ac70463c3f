"""The baseline for the fan-out benchmark: a bare WebSocket relay on the same stack as collab.

Starlette + uvicorn + websockets, the same path shape (`/yjs/{name}`), and nothing else:
every binary message from a peer is sent, as is, to the other peers of the same name. No CRDT,
no store, no sync handshake, no queues. Whatever collab spends per delivered update above
what this spends is the cost of collab's own work (merging, storing, bookkeeping).

    python bench/bare_relay.py --port 8765
"""

from __future__ import annotations

import argparse
import contextlib

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

rooms: dict[str, set[WebSocket]] = {}


async def relay(websocket: WebSocket) -> None:
    """Send every binary message from this peer to the room's other peers, in order."""
    name = websocket.path_params["name"]
    await websocket.accept()
    room = rooms.setdefault(name, set())
    room.add(websocket)
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                continue
            for other in list(room):
                if other is not websocket:
                    # A peer that went away mid-send is dropped by its own loop.
                    with contextlib.suppress(Exception):
                        await other.send_bytes(data)
    except WebSocketDisconnect:
        return
    finally:
        room.discard(websocket)
        if not room:
            rooms.pop(name, None)


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        WebSocketRoute("/yjs/{name:path}", relay),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--ws",
        default="websockets-sansio",
        help="uvicorn WebSocket implementation (as collab serve)",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, ws=args.ws, log_level=args.log_level)


if __name__ == "__main__":
    main()
