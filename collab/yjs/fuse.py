"""A writer's chain of appends, fused into one item before pycrdt integrates them.

Yrs merges each new item into the run of items it continues and recounts the merged string
from its start (`try_squash`), whether the items come one transaction at a time or many in
one: replaying N appends to a run of L UTF-16 units costs about N x L (a 64 MiB document
uploaded in 261 appends of 256 KB took 25 s to rebuild; typed a character at a time it would
take hours). A rebuild from the log (`collab.session.replica`), a lane's integration
(`collab.session.lanes`) and a compaction's replay apply many such updates at once:
`fused` first joins each chain of appends into one item, so pycrdt merges and recounts once
per chain.

An update is a link of a chain when it holds exactly one item of string content and that
item continues the chain's last item: same client, the next clock, its origin the last
character of the chain, the same right origin. Such an item lands right after the chain
(its origin is a character that did not exist before the chain's last item, so no item
placed earlier can sit after it), unless an item placed in between has that same origin:
so a chain stays open only across updates known not to hold one (a link of another chain
with another origin, deletions alone). Anything else ends every open chain. An update that
also deletes keeps its deletions, sent on their own where the update was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from collab.yjs.protocol import read_var_uint, write_var_uint
from collab.yjs.scan import string_highs
from collab.yjs.update import STRING

ID = tuple[int, int]
_ORIGIN, _RIGHT_ORIGIN, _PARENT_SUB = 0x80, 0x40, 0x20
_NO_DELETES = b"\x00"


@dataclass
class _Link:
    """An update that holds one item of string content (and maybe deletions)."""

    client: int
    clock: int
    length: int  # UTF-16 units
    origin: ID | None
    right_origin: ID | None
    head: bytes  # from the info byte to the content: info, origins or parent
    content: memoryview  # UTF-8, not copied
    deletes: bytes  # the delete set, as encoded


@dataclass
class _Chain:
    first: _Link
    contents: list[memoryview] = field(default_factory=list)
    end: int = 0  # the clock after its last character

    def encode(self) -> bytes:
        """The chain as one update of one item (its content copied once)."""
        first = self.first
        size = write_var_uint(sum(map(len, self.contents)))
        group = b"\x01\x01" + write_var_uint(first.client) + write_var_uint(first.clock)
        return b"".join([group, first.head, size, *self.contents, _NO_DELETES])


def fused(updates: Iterable[bytes]) -> list[bytes]:
    """`updates` (checked, in the order they were accepted), with each chain of appends
    joined into one update: integrating them gives the document integrating `updates`
    one by one gives."""
    out: list[bytes | _Chain] = []
    chains: dict[int, _Chain] = {}  # client -> its chain that may go on
    for update in updates:
        link = _link(update)
        if link is None:
            if update[:1] != b"\x00":  # items this does not read: any may follow a chain
                chains.clear()
            out.append(update)
            continue
        for client, chain in list(chains.items()):
            if client != link.client and link.origin == (client, chain.end - 1):
                del chains[client]  # an item after that chain's last character
        chain = chains.get(link.client)
        if (
            chain is None
            or link.clock != chain.end
            or link.origin != (link.client, link.clock - 1)
            or link.right_origin != chain.first.right_origin
        ):
            chain = chains[link.client] = _Chain(link)
            out.append(chain)
        chain.contents.append(link.content)
        chain.end = link.clock + link.length
        if link.deletes != _NO_DELETES:
            out.append(b"\x00" + link.deletes)
    return [part if isinstance(part, bytes) else part.encode() for part in out]


def _link(update: bytes) -> _Link | None:
    """The update as a chain's possible link, or None."""
    try:
        return _read_link(update)
    except (IndexError, ValueError):  # ValueError: read_var_uint's ProtocolError
        return None


def _read_link(update: bytes) -> _Link | None:
    if update[:2] != b"\x01\x01":  # one group of one struct
        return None
    client, pos = read_var_uint(update, 2)
    clock, pos = read_var_uint(update, pos)
    start = pos
    info = update[pos]
    pos += 1
    if info & 0x1F != STRING or info & _PARENT_SUB:
        return None
    origin = right_origin = None
    if info & _ORIGIN:
        origin, pos = _read_id(update, pos)
    if info & _RIGHT_ORIGIN:
        right_origin, pos = _read_id(update, pos)
    if not info & (_ORIGIN | _RIGHT_ORIGIN):  # the parent: a root type's name, or an item
        kind, pos = read_var_uint(update, pos)
        if kind == 1:
            size, pos = read_var_uint(update, pos)
            pos += size
        else:
            _, pos = _read_id(update, pos)
    head = update[start:pos]
    size, pos = read_var_uint(update, pos)
    content = memoryview(update)[pos : pos + size]
    if len(content) != size or pos + size >= len(update):
        return None
    walked = string_highs(update)  # in C: its UTF-16 length without decoding it
    if walked is None:
        return None
    length = walked[0][client] - clock
    deletes = update[pos + size :]
    return _Link(client, clock, length, origin, right_origin, head, content, deletes)


def _read_id(data: bytes, pos: int) -> tuple[ID, int]:
    client, pos = read_var_uint(data, pos)
    clock, pos = read_var_uint(data, pos)
    return (client, clock), pos
