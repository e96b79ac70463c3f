"""collab: a real-time collaborative text editing server (Yjs and text operations).

The public API for embedding: `Collab` (the engine, mountable in any Starlette/FastAPI
app), its hooks' types (`Access`, `AccessDenied`, `Change`), the stores (`Store`,
`FileStore`, `MemoryStore`, with `Record`, `Snapshot` and `StoredDocument` for writing
one), and `Session`, the sans-I/O state machine of one document for driving by hand.
"""

from collab.config import Settings
from collab.engine import Collab
from collab.hooks import Access, AccessDenied, Change
from collab.session import Output, Session
from collab.storage.contract import Record, Snapshot, Store, StoredDocument
from collab.storage.files import FileStore
from collab.storage.memory import MemoryStore

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
