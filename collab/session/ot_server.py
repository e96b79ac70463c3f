"""The OT server: a text client's op, transformed against what it missed, applied once.

ot.js / ShareDB semantics: an op names the revision it was made on; the server transforms
it against each revision since (in order, never against their composition) and commits
it. Each client's last applied `seq` is remembered (the `AckTable`), so an op re-sent after
a reconnect is acked again, never applied twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collab.config import MiB
from collab.session.acks import AckTable
from collab.session.document import Document
from collab.session.revision import ChangeRefused, Committed, Revision
from collab.session.text_messages import More
from collab.text import ops as textops
from collab.wire import ErrorCode, text_origin

STEPS_PER_REVISION = 8
"""The fixed cost of one transform (reading, building, a call), in component steps."""

PART_BYTES = 64
"""At least what one insert or delete component adds to a Yjs update beyond the text it
inserts (an item's header, ids, a delete-set entry; about 36 bytes measured): the whole
change's size is estimated high, so that a change checked whole is never refused halfway."""


def too_big_for_text(document: Document, added: int = 0, joining: bool = False) -> str | None:
    """Why text clients may not open or edit `document` once it holds `added` bytes more
    (None: they may). What they need runs pycrdt's text on the event loop, and on a long
    text each call costs with its size (measured: a join ~7 ms at 2 MiB, ~14 at 4, ~30 at
    8; an append ~3 ms at 2 MiB, ~6.5 at 4, ~13 at 8): past `text_door_max_bytes` a
    document is for Yjs clients, which never need it.

    `joining` (the text taken whole: a client's join, an edit of a text not followed yet)
    is held to the limit; the text clients already there go on up to twice it: the log
    grows with every edit until the next compaction, and a document near the limit must
    not turn its writers away mid-sentence."""
    limit = document.settings.text_door_max_bytes * (1 if joining else 2)
    size = document.state_bytes + added
    if not limit or size <= limit:
        return None
    sizes = f"{size / MiB:.1f} MiB > {limit / MiB:g} MiB"
    return f"document too big for text clients ({sizes}): use a Yjs editor"


def refuse_if_too_big(document: Document, added: int = 0, joining: bool = False) -> None:
    """Raise `ChangeRefused` (too large) when `too_big_for_text` says why."""
    if (why := too_big_for_text(document, added, joining)) is not None:
        raise ChangeRefused(ErrorCode.TOO_LARGE, why)


def whole_change_bytes(op: textops.Op, more: More) -> int:
    """What a change sent in pieces (this `op`, then `more`) may add to the document."""
    parts = sum(1 for part in op if isinstance(part, str) or part < 0) + more.parts
    return inserted_bytes(op) + more.bytes + PART_BYTES * parts


def inserted_bytes(op: textops.Op) -> int:
    """The UTF-8 bytes `op` inserts."""
    return sum(len(part.encode()) for part in op if isinstance(part, str))


def catch_up(document: Document, base: int, own: int, budget: int) -> Sequence[Revision] | None:
    """The revisions after `base`, when moving something of `own` components through them
    costs at most `budget` steps; None when it costs more, or they are no longer in memory.

    Transforming through a revision walks its components and, for an op, the op's own:
    each missed revision costs ``len(revision.op) + own + STEPS_PER_REVISION``. Refusing
    (`too-old`) is cheap for the server: the client says hello again and gets the text.
    """
    lag = document.rev - base
    if lag * (own + STEPS_PER_REVISION + 1) > budget:  # every revision has a component
        return None
    missed = document.revisions_since(base)
    if missed is None:
        return None
    steps = sum(len(revision.op) for revision in missed) + lag * (own + STEPS_PER_REVISION)
    return missed if steps <= budget else None


@dataclass(frozen=True)
class Submitted:
    """The outcome of one op: the revision to ack, and the change when it made one."""

    ack_rev: int
    committed: Committed | None


class OTServer:
    def __init__(self, document: Document, acks: AckTable, max_steps: int) -> None:
        self.document = document
        self.acks = acks
        self.max_steps = max_steps

    def submit(
        self,
        client: str,
        seq: int,
        base: int,
        op: textops.Op,
        user: str | None,
        readonly: bool,
        more: More | None = None,
    ) -> Submitted:
        """Apply `op` (made on revision `base`) for `client`; raises `ChangeRefused`.

        `more`: the ops after this one belong to the same change (it goes in pieces). The
        whole change must fit the document's size limit, or none of it is applied: a change
        refused halfway would leave part of it for everyone (issue 23)."""
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
        # A change in pieces is checked whole (estimated high: never refused halfway).
        added = inserted_bytes(op) if more is None else whole_change_bytes(op, more)
        refuse_if_too_big(document, added)
        if more is not None:
            limit = document.settings.max_document_bytes
            if document.state_bytes + added > limit:
                raise ChangeRefused(
                    ErrorCode.TOO_LARGE,
                    f"the whole change would take the document past {limit} bytes",
                )
        missed = catch_up(document, base, len(op), self.max_steps)
        if missed is None:
            raise ChangeRefused(ErrorCode.TOO_OLD, f"rev {base} is too old: say hello again")
        op = textops.rebase(op, [revision.op for revision in missed], canonical=True)
        committed = document.apply_op(op, text_origin(client, seq), user, client, seq)
        rev = committed.record.rev if committed else document.rev
        self.acks.applied(client, seq, rev)
        return Submitted(rev, committed)

    def observe(self, revision: Revision) -> None:
        """Every revision made by a text client advances its entry (also while loading)."""
        if revision.client is not None and revision.seq is not None:
            self.acks.applied(revision.client, revision.seq, revision.rev)
