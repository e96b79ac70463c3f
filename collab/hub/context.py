"""What a document's runner may use of the hub that holds it: a narrow view, not the hub.

`Hub` is the one implementation; a test or an embedding can drive a `DocumentRunner` with
anything that has these members.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collab.access.limits import LogThrottle
    from collab.bus.contract import Bus
    from collab.config import Settings
    from collab.hub.runner import DocumentRunner
    from collab.replay.recording import Recorder
    from collab.session import Output
    from collab.storage.contract import Store


class DocumentContext(Protocol):
    """The shared parts a runner works with, and the three things it tells its hub."""

    settings: Settings
    store: Store
    bus: Bus | None
    recorder: Recorder | None
    metrics: Any  # collab.metrics.Metrics, or None when the engine keeps none
    peer_ids: Iterator[int]  # peer ids, unique across the hub's documents
    failure_log: LogThrottle  # one throttle for the internal errors of all documents

    def changed(self, name: str, output: Output) -> None:
        """A batch was committed and sent: the on_change hook and webhooks hear of it."""

    def forget(self, runner: DocumentRunner) -> None:
        """The runner left memory (unloaded, failed, or its document was dropped)."""

    def reload(self, name: str) -> None:
        """Load the document again from the store (after its runner failed)."""
