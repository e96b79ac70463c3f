"""One document as a sans-I/O state machine: `Session` routes, its parts decide.

- `document`: the pycrdt document, its text as code-point ops, its revisions;
- `ot_server` and `acks`: text clients' ops, transformed and applied exactly once;
- `text_messages`: the text protocol's client messages, parsed and checked;
- `awareness` and `presence`: who is here, across the two doors;
- `outbox`: messages per peer, Yjs updates merged;
- `router`: the `Session` itself.
"""

from collab.session.outbox import Output
from collab.session.peers import PeerId, PeerKind
from collab.session.revision import ChangeRefused, Revision
from collab.session.router import Session

__all__ = ["ChangeRefused", "Output", "PeerId", "PeerKind", "Revision", "Session"]
