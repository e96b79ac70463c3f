"""`collab serve` under uvicorn: processes and workers, connection caps, and the
fast path that reaches into uvicorn's and websockets' internals (fenced here)."""
