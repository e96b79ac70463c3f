"""`collab serve` under uvicorn: processes and workers (serve.py), and the fast path that
reaches into uvicorn's, websockets' and h11's internals (websocket.py, connections.py,
lean.py, frames.py), fenced: internals.py lists every private member it uses and checks
them before `collab serve` takes the fast path."""
