"""collab: a real-time collaborative text editing server (Yjs and text operations)."""

from collab.config import Settings
from collab.records import Record

__all__ = ["Record", "Settings"]
