"""collab: a real-time collaborative text editing server (Yjs and text operations).

The public API for embedding: `Collab` (the engine, mountable in any Starlette/FastAPI
app), its hooks' types (`Access`, `AccessDenied`, `Change`), the stores (`Store`,
`FileStore`, `MemoryStore`, with `Record`, `Snapshot` and `StoredDocument` for writing
one), and `Session`, the sans-I/O state machine of one document for driving by hand.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Each public name and the module that defines it: imported on first use, so that
# `import collab.session` or `collab.text` does not load Starlette and uvicorn.
_EXPORTS = {
    "Access": "collab.hooks",
    "AccessDenied": "collab.hooks",
    "Change": "collab.hooks",
    "Collab": "collab.web.engine",
    "FileStore": "collab.storage.files",
    "MemoryStore": "collab.storage.memory",
    "Output": "collab.session",
    "Record": "collab.storage.contract",
    "Session": "collab.session",
    "Settings": "collab.config",
    "Snapshot": "collab.storage.contract",
    "Store": "collab.storage.contract",
    "StoredDocument": "collab.storage.contract",
}

if TYPE_CHECKING:
    from collab.config import Settings
    from collab.hooks import Access, AccessDenied, Change
    from collab.session import Output, Session
    from collab.storage.contract import Record, Snapshot, Store, StoredDocument
    from collab.storage.files import FileStore
    from collab.storage.memory import MemoryStore
    from collab.web.engine import Collab


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'collab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Access",
    "AccessDenied",
    "Change",
    "Collab",
    "FileStore",
    "MemoryStore",
    "Output",
    "Record",
    "Session",
    "Settings",
    "Snapshot",
    "Store",
    "StoredDocument",
]
