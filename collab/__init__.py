"""collab: a real-time collaborative text editing server (Yjs and text operations).

The public API for embedding: `Collab` (the engine, mountable in any Starlette/FastAPI
app), its hooks' types (`Access`, `AccessDenied`, `Change`), the stores (`Store`,
`FileStore`, `MemoryStore`), and `Session`, the sans-I/O state machine of one document
for driving by hand.
"""

from collab.config import Settings
from collab.engine import Collab
from collab.hooks import Access, AccessDenied, Change
from collab.records import Record
from collab.session import Output, Session
from collab.store import FileStore, MemoryStore, Store, StoredDocument

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
    "Store",
    "StoredDocument",
]
