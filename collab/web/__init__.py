"""The Starlette edge: WebSocket endpoints, the HTTP API, the pages and their
middleware."""
