"""The OT server: a text client's op, transformed against what it missed, applied once.

ot.js / ShareDB semantics: an op names the revision it was made on; the server transforms
it against each revision since (in order, never against their composition) and commits
it. Each client's last applied `seq` is remembered (the `AckTable`), so an op re-sent after
a reconnect is acked again, never applied twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from collab import textops
from collab.session.acks import AckTable
from collab.session.document import Committed, Document
from collab.session.revision import ChangeRefused, Revision
from collab.wire import ErrorCode, text_origin

# Transforming an op costs a pass over each missed revision: an op made on a revision
# further back than this is refused (`too-old`); the client says hello again and rebases
# onto the whole text, which costs the server nothing.
MAX_OP_LAG = 10_000


@dataclass(frozen=True)
class Submitted:
    """The outcome of one op: the revision to ack, and the change when it made one."""

    ack_rev: int
    committed: Committed | None


class OTServer:
    def __init__(self, document: Document, acks: AckTable, max_lag: int = MAX_OP_LAG) -> None:
        self.document = document
        self.acks = acks
        self.max_lag = max_lag

    def submit(
        self,
        client: str,
        seq: int,
        base: int,
        op: textops.Op,
        user: str | None,
        readonly: bool,
    ) -> Submitted:
        """Apply `op` (made on revision `base`) for `client`; raises `ChangeRefused`."""
        known = self.acks.get(client)
        if known is not None and seq <= known[0]:
            return Submitted(known[1], None)  # a resubmission: acked again, never applied twice
        if readonly:
            raise ChangeRefused(ErrorCode.READONLY, "this connection is read-only")
        document = self.document
        if base > document.rev:
            raise ChangeRefused(
                ErrorCode.FUTURE_REV, f"rev {base} is ahead of the server's {document.rev}"
            )
        missed = document.revisions_since(base) if document.rev - base <= self.max_lag else None
        if missed is None:
            raise ChangeRefused(ErrorCode.TOO_OLD, f"rev {base} is too old: say hello again")
        op = textops.rebase(op, [revision.op for revision in missed])
        committed = document.apply_op(op, text_origin(client, seq), user, client, seq)
        rev = committed.record.rev if committed else document.rev
        self.acks.applied(client, seq, rev)
        return Submitted(rev, committed)

    def observe(self, revision: Revision) -> None:
        """Every revision made by a text client advances its entry (also while loading)."""
        if revision.client is not None and revision.seq is not None:
            self.acks.applied(revision.client, revision.seq, revision.rev)
