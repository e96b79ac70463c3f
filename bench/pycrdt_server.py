"""pycrdt-websocket as a bench target: its `WebsocketServer` and `ASGIServer` under uvicorn.

The same stack as collab and the bare relay (uvicorn + websockets sans-I/O), the same path
shape (`/yjs/{name}`: the room is the whole path) and a `/healthz` the benchmarks poll. No
store: pycrdt-websocket keeps rooms in memory only (as it is usually run).

    pip install -e '.[bench]'
    python bench/pycrdt_server.py --port 8765
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import uvicorn
from pycrdt.websocket import ASGIServer, WebsocketServer


def make_app() -> Any:
    websocket_server = WebsocketServer(auto_clean_rooms=True)
    asgi = ASGIServer(websocket_server)
    stack = contextlib.AsyncExitStack()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await stack.enter_async_context(websocket_server)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await stack.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
        else:
            await asgi(scope, receive, send)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--ws", default="websockets-sansio", help="uvicorn WebSocket protocol")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    uvicorn.run(make_app(), host=args.host, port=args.port, ws=args.ws, log_level=args.log_level)


if __name__ == "__main__":
    main()
