"""Documents by name and the loops that drive them.

- `registry`: the `Hub`: load each document once, unload it when idle, shut down;
- `runner`: the `DocumentRunner` of one document: persist → send → close, compaction;
- `channel`: one peer's bounded send queue;
- `changes`: the on_change hook's ordered feed.
"""

from collab.hub.channel import Connection, PeerChannel
from collab.hub.registry import DocumentNotFoundError, Hub
from collab.hub.runner import DocumentRunner

__all__ = ["Connection", "DocumentNotFoundError", "DocumentRunner", "Hub", "PeerChannel"]
