"""What goes over a network bus (`collab.bus.redis`): channel names and message bytes.

Every message is one binary blob::

    u8 version (1) | u8 kind | u16 length of the sender's process id | process id (UTF-8)
    | payload

Kinds and their payloads:

- ``R`` records: committed records, encoded as the log stores them
  (`collab.storage.format.encode_records`: framed, with a CRC each);
- ``C`` committed: u64 last revision, for a batch too large to send (the receiver fetches
  what it lacks from the store);
- ``A`` awareness: the y-websocket awareness message, as is;
- ``D`` deleted: the reason, UTF-8 (the document was deleted or restored: close its
  peers, drop it unsaved);
- ``H`` heartbeat and ``G`` goodbye, on the control channel: empty.

A document's channel is the prefix, ``doc:``, then the document name's UTF-8 bytes: Redis
channel names are binary-safe and are matched exactly by SUBSCRIBE (the bus never uses
PSUBSCRIBE, so ``*``, ``?`` or ``[`` in a name mean nothing), and no document channel can
equal the control channel (prefix + ``control``). Pub/sub channels are not keys, so Redis
Cluster hash tags (``{…}``) are not needed: a cluster broadcasts PUBLISH to every node.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from collab.storage.contract import Record
from collab.storage.format import decode_records, encode_records

VERSION = 1
RECORDS = ord("R")
COMMITTED = ord("C")
AWARENESS = ord("A")
DELETED = ord("D")
HEARTBEAT = ord("H")
GOODBYE = ord("G")
KINDS = frozenset({RECORDS, COMMITTED, AWARENESS, DELETED, HEARTBEAT, GOODBYE})

_HEAD = struct.Struct("<BBH")
_REV = struct.Struct("<Q")


def document_channel(prefix: str, name: str) -> bytes:
    """The channel of a document; different names give different channels."""
    # surrogatepass: a bus must not crash on a name the web layer would refuse anyway.
    return prefix.encode() + b"doc:" + name.encode("utf-8", "surrogatepass")


def control_channel(prefix: str) -> bytes:
    """The channel every process listens on: heartbeats and goodbyes."""
    return prefix.encode() + b"control"


@dataclass(frozen=True)
class Message:
    kind: int
    process: str
    payload: bytes


def encode(kind: int, process: str, payload: bytes = b"") -> bytes:
    sender = process.encode("utf-8", "surrogatepass")
    if len(sender) > 0xFFFF:
        raise ValueError("process id too long")
    return _HEAD.pack(VERSION, kind, len(sender)) + sender + payload


def decode(data: bytes) -> Message:
    """The message in `data`; ValueError if it is not one this version understands."""
    if len(data) < _HEAD.size:
        raise ValueError(f"message too short ({len(data)} bytes)")
    version, kind, length = _HEAD.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"unknown bus message version {version}")
    if kind not in KINDS:
        raise ValueError(f"unknown bus message kind {kind}")
    end = _HEAD.size + length
    if end > len(data):
        raise ValueError("process id runs past the message")
    process = data[_HEAD.size : end].decode("utf-8", "surrogatepass")
    return Message(kind, process, data[end:])


def rev_bytes(rev: int) -> bytes:
    """The payload of a committed notice."""
    return _REV.pack(rev)


def records_message(process: str, records: Sequence[Record], max_bytes: int) -> bytes:
    """A records message, or a committed notice when the records exceed `max_bytes`."""
    body = encode_records(records)
    if len(body) > max_bytes:
        return encode(COMMITTED, process, rev_bytes(records[-1].rev))
    return encode(RECORDS, process, body)


def decode_records_payload(payload: bytes) -> list[Record]:
    """The records of an ``R`` message; ValueError if they are not all there and intact."""
    decoded = decode_records(payload)
    if decoded.torn is not None:
        raise ValueError(f"bad records: {decoded.torn}")
    return decoded.records


def decode_committed_payload(payload: bytes) -> int:
    if len(payload) != _REV.size:
        raise ValueError(f"bad committed notice ({len(payload)} bytes)")
    return _REV.unpack(payload)[0]
