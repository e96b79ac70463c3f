"""Property-based fuzzing of everything a client can send (hypothesis, driven by bytes).

    python bench/fuzz.py --inputs 100000            # every target, 100,000 inputs each
    python bench/fuzz.py --inputs 2000 --target session

Targets:

- ``yjs-decoder``: `collab.yjs.protocol.decode` on arbitrary frames (and frames after real
  prefixes): only `ProtocolError` may come out;
- ``hocuspocus-decoder``: `collab.yjs.hocuspocus.decode` on arbitrary frames after real
  name and type prefixes: only `HocuspocusError`, and what decodes encodes back the same;
- ``awareness``: awareness frames with arbitrary entries and JSON into an `AwarenessTable`
  with small caps: only `ProtocolError` / `TooManyStates`; the table's byte count equals
  the sizes it holds;
- ``text-messages``: `collab.session.text_messages.parse` on arbitrary and near-valid JSON:
  only `MessageError`;
- ``session``: a `Session` fed random event sequences from two Yjs peers (pycrdt docs
  making real edits, plus garbage and near-valid updates) and two text clients
  (`TextClient`, plus garbage), delivered in random batches. After each input: no peer was
  closed with 1011 (an internal error), every live replica equals the server's text, and
  replaying every stored record from the start gives that text.

Each input is a buffer of random bytes that hypothesis turns into a test case
(`fuzz_one_input`), so a run does exactly N inputs per target from a seed. An input that
raises is a crash; one that takes more than `--hang-seconds` is a hang. Findings are
written to bench/fuzz-findings/ and become regression tests (tests/test_fuzz.py).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import random
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycrdt import Doc, Text

from collab.config import Settings
from collab.replay.rebuild import DocReplay
from collab.session import Session
from collab.session.awareness import AwarenessTable, TooManyStates
from collab.session.text_messages import MessageError, parse
from collab.text import ops as textops
from collab.text.client import TextClient
from collab.text.positions import cp_to_utf8
from collab.wire import CloseCode
from collab.yjs import hocuspocus, protocol

CASES: collections.Counter[str] = collections.Counter()  # inputs that ran to the end


def done(target: str) -> None:
    CASES[target] += 1


FUZZ_SETTINGS = settings(
    database=None,
    deadline=None,
    derandomize=False,
    suppress_health_check=list(HealthCheck),
)
TEXTS = st.text(alphabet=st.sampled_from("ab é😀\r\n👨‍👩‍👧中"), max_size=6)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats() | TEXTS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXTS, inner, max_size=4),
    max_leaves=12,
)


# ---------------------------------------------------------------------- decoders


@given(
    prefix=st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x03"]),
    body=st.binary(max_size=200),
)
@FUZZ_SETTINGS
def yjs_decoder(prefix: bytes, body: bytes) -> None:
    try:
        message = protocol.decode(prefix + body)
    except protocol.ProtocolError as error:
        assert error.reason and error.close_code in (1002, 1003)
        done("yjs-decoder")
        return
    assert message is not None
    done("yjs-decoder")


@given(
    name=st.sampled_from([b"", b"\x00", b"\x01d", b"\x04d\xc3\xa9\xf0", b"\x05"]),
    kind=st.sampled_from([b"", *(bytes((k,)) for k in range(12)), b"\x80\x80"]),
    body=st.binary(max_size=200),
)
@FUZZ_SETTINGS
def hocuspocus_decoder(name: bytes, kind: bytes, body: bytes) -> None:
    try:
        message = hocuspocus.decode(name + kind + body)
    except hocuspocus.HocuspocusError as error:
        assert error.reason and error.close_code in (1002, 1003)
        done("hocuspocus-decoder")
        return
    if not isinstance(message, hocuspocus.Forward):  # its body is the session's to read
        assert hocuspocus.decode(hocuspocus.encode(message)) == message
    done("hocuspocus-decoder")


@given(
    entries=st.lists(
        st.tuples(
            st.integers(0, 2**40),
            st.integers(0, 2**53),
            st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=30)),
        ),
        max_size=8,
    ),
    lie=st.integers(0, 3),
)
@FUZZ_SETTINGS
def awareness(entries: list[tuple[int, int, str]], lie: int) -> None:
    fields = [protocol.write_var_uint(len(entries) + (lie if lie == 3 else 0))]
    for client_id, clock, state in entries:
        data = state.encode("utf-8", "surrogatepass")
        fields += [protocol.write_var_uint(client_id), protocol.write_var_uint(clock)]
        fields += [protocol.write_var_uint(len(data)), data]
    body = b"".join(fields)
    frame = bytes((protocol.MESSAGE_AWARENESS,)) + protocol.write_var_uint(len(body)) + body
    try:
        message = protocol.decode(frame)
    except protocol.ProtocolError:
        done("awareness")
        return
    assert isinstance(message, protocol.Awareness)
    table = AwarenessTable(max_peer_bytes=200, max_total_bytes=300)
    owned: set[int] = set()
    with contextlib.suppress(TooManyStates):
        table.receive(owned, message.entries)
    assert table.total_bytes == sum(table.sizes.values()) <= 300
    table.remove(list(owned))
    assert all(client_id not in table.sizes for client_id in owned)
    done("awareness")


@given(
    data=st.one_of(
        st.text(max_size=80),
        st.dictionaries(
            st.sampled_from(["type", "seq", "rev", "op", "secret", "user", "selection"]),
            JSON_VALUES,
            max_size=6,
        ).map(json.dumps),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["hello", "op", "presence", "x"]),
                "seq": st.integers(-2, 2**54),
                "rev": st.one_of(st.none(), st.integers(-2, 2**54)),
                "op": st.lists(st.one_of(st.integers(-3, 10), TEXTS), max_size=5),
                "secret": st.text(min_size=14, max_size=20),
            }
        ).map(json.dumps),
    )
)
@FUZZ_SETTINGS
def text_messages(data: str) -> None:
    try:
        parse(data, 8)
    except MessageError as error:
        assert error.code and error.message
    done("text-messages")


# ---------------------------------------------------------------------- the session


class YPeer:
    def __init__(self) -> None:
        self.doc = Doc()
        self.text = self.doc.get("text", type=Text)

    def edit(self, position: int, insert: str, delete: int) -> bytes:
        """Edit at code point `position` (pycrdt counts UTF-8 bytes: convert)."""
        before = self.doc.get_state()
        text = str(self.text)
        position = min(position, len(text))
        end = min(len(text), position + delete)
        if delete and position < len(text):
            del self.text[cp_to_utf8(text, position) : cp_to_utf8(text, end)]
        elif insert:
            self.text.insert(cp_to_utf8(text, position), insert)
        return self.doc.get_update(before)


class Harness:
    """One session, its peers' replicas, and the log it wrote."""

    def __init__(self) -> None:
        self.session = Session("fuzz", Settings(max_op_components=8), clock=lambda: 0.0)
        self.records: list[Any] = []
        self.next_id = 0
        self.y: dict[int, YPeer] = {}
        self.t: dict[int, TextClient] = {}
        self.slots: list[int] = []
        for kind in ("yjs", "yjs", "text", "text"):
            self.slots.append(self._connect(kind))

    def _connect(self, kind: str) -> int:
        self.next_id += 1
        peer = self.next_id
        if kind == "yjs":
            self.y[peer] = YPeer()
            self.session.connect_yjs(peer)
            self.session.receive(peer, protocol.encode_sync_step1(self.y[peer].doc.get_state()))
        else:
            self.t[peer] = TextClient(secret=f"fuzz-secret-{peer:06d}")
            self.session.connect_text(peer)
            self.session.receive(peer, json.dumps(self.t[peer].hello()))
        return peer

    def deliver(self) -> None:
        for _ in range(50):
            output = self.session.take_output()
            if not output:
                return
            self.records += output.records
            for peer, data in output.messages:
                self._to_peer(peer, data)
            for peer, code, reason in output.closes:
                assert code != CloseCode.INTERNAL, f"internal error: {reason}"
                self._drop(peer)
        raise AssertionError("the session never went quiet")

    def _drop(self, peer: int) -> None:
        self.session.disconnect(peer)
        kind = "yjs" if self.y.pop(peer, None) is not None else "text"
        self.t.pop(peer, None)
        if peer in self.slots:
            self.slots[self.slots.index(peer)] = self._connect(kind)

    def _to_peer(self, peer: int, data: bytes | str) -> None:
        if peer in self.y:
            message = protocol.decode(data)  # the server never sends anything invalid
            replica = self.y[peer]
            if isinstance(message, protocol.SyncStep1):
                update = replica.doc.get_update(message.state_vector)
                self.session.receive(peer, protocol.encode_sync_step2(update))
            elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
                replica.doc.apply_update(message.update)
        elif peer in self.t:
            for reply in self.t[peer].receive(json.loads(data)):
                self.session.receive(peer, json.dumps(reply))

    def check(self) -> None:
        self.deliver()
        text = self.session.mirror
        for replica in self.y.values():
            assert str(replica.text) == text, "a Yjs replica differs"
        for client in self.t.values():
            if client.joined and not client.inflight and client.buffer is None:
                assert client.text == text, "a text client differs"
        replay = DocReplay()
        for record in self.records:
            replay.apply(record.update, record.rev)
        assert str(replay.text) == text, "the stored revisions do not replay to the text"
        assert [r.rev for r in self.records] == list(range(1, len(self.records) + 1))


Y_EDIT = st.tuples(
    st.just("y-edit"), st.integers(0, 1), st.integers(0, 30), TEXTS, st.integers(0, 3)
)
T_EDIT = st.tuples(
    st.just("t-edit"), st.integers(2, 3), st.integers(0, 30), TEXTS, st.integers(0, 3)
)
EVENTS = st.one_of(
    Y_EDIT,
    T_EDIT,
    Y_EDIT,  # edits weigh three times as much as each kind of garbage
    T_EDIT,
    Y_EDIT,
    T_EDIT,
    st.tuples(st.just("y-raw"), st.integers(0, 1), st.binary(max_size=40)),
    st.tuples(st.just("y-bad-update"), st.integers(0, 1), st.binary(max_size=40), st.booleans()),
    st.tuples(st.just("t-raw"), st.integers(2, 3), st.text(max_size=40)),
    st.tuples(st.just("awareness"), st.integers(0, 1), st.integers(0, 5), JSON_VALUES),
    st.tuples(st.just("deliver")),
    st.tuples(st.just("reconnect"), st.integers(0, 3)),
)


def text_edit(length: int, position: int, insert: str, delete: int) -> textops.Op | None:
    """A text peer's edit of a text `length` code points long, chosen as `YPeer.edit`
    chooses: a delete where there is text to delete, else an insert, else nothing. The op
    retains the rest of the text: an op spans the whole text it applies to."""
    position = min(position, length)
    delete = min(delete, length - position)
    if not delete and not insert:
        return None
    op = textops.Builder()
    op.retain(position)
    if delete:
        op.delete(delete)
    else:
        op.insert(insert)
    op.retain(length - position - delete)
    return op.op


@given(events=st.lists(EVENTS, max_size=12))
@FUZZ_SETTINGS
def session(events: list[tuple[Any, ...]]) -> None:
    harness = Harness()
    sent_updates: list[bytes] = []
    for event in events:
        kind, slot = event[0], (event[1] if len(event) > 1 else 0)
        peer = harness.slots[slot] if kind != "deliver" else 0
        if kind == "y-edit":
            update = harness.y[peer].edit(event[2], event[3], event[4])
            sent_updates.append(update)
            harness.session.receive(peer, protocol.encode_sync_update(update))
        elif kind == "t-edit":
            client = harness.t[peer]
            op = text_edit(len(client.text), event[2], event[3], event[4])
            if op is None:
                continue
            for message in client.edit(op):
                harness.session.receive(peer, json.dumps(message))
        elif kind == "y-raw":
            harness.session.receive(peer, event[2])
        elif kind == "y-bad-update":
            # near-valid: a real update cut short or with bytes flipped, or random bytes
            base = random.Random(len(event[2])).choice(sent_updates) if sent_updates else b""
            update = base[: len(base) // 2] + event[2] if event[3] else event[2]
            harness.session.receive(peer, protocol.encode_sync_update(update))
        elif kind == "t-raw":
            harness.session.receive(peer, event[2])
        elif kind == "awareness":
            # as a client sends it: the JSON as text (NaN and 1e400 included), decoded by the
            # server (building an AwarenessEntry here would skip the decoder's checks)
            state = json.dumps({"v": event[3]}).encode()
            fields = [1, event[2], 1, len(state)]
            body = b"".join(protocol.write_var_uint(n) for n in fields) + state
            frame = bytes((protocol.MESSAGE_AWARENESS,)) + protocol.write_var_uint(len(body)) + body
            harness.session.receive(peer, frame)
        elif kind == "deliver":
            harness.deliver()
        elif kind == "reconnect":
            harness._drop(peer)
    harness.check()
    done("session")


TARGETS = {
    "yjs-decoder": yjs_decoder,
    "hocuspocus-decoder": hocuspocus_decoder,
    "awareness": awareness,
    "text-messages": text_messages,
    "session": session,
}


# ---------------------------------------------------------------------- the runner


def run(name: str, inputs: int, seed: int, hang_seconds: float, findings: Path) -> dict[str, Any]:
    target = TARGETS[name].hypothesis.fuzz_one_input
    rng = random.Random(f"{name}-{seed}")
    crashes, hangs, slowest = 0, 0, 0.0
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for index in range(inputs):
        buffer = rng.randbytes(rng.choice((256, 1024, 4096)))
        begin = time.perf_counter()
        try:
            target(buffer)
        except BaseException as error:  # pycrdt panics are BaseExceptions
            if isinstance(error, KeyboardInterrupt | SystemExit):
                raise
            crashes += 1
            findings.mkdir(parents=True, exist_ok=True)
            (findings / f"{name}-{seed}-{index}.bin").write_bytes(buffer)
            (findings / f"{name}-{seed}-{index}.txt").write_text(traceback.format_exc())
        took = time.perf_counter() - begin
        slowest = max(slowest, took)
        if took > hang_seconds:
            hangs += 1
            findings.mkdir(parents=True, exist_ok=True)
            (findings / f"{name}-{seed}-{index}-hang.bin").write_bytes(buffer)
    elapsed = time.perf_counter() - started
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "target": name,
        "inputs": inputs,
        "complete_cases": CASES[name],  # the rest were buffers too short for a whole case
        "crashes": crashes,
        "hangs": hangs,
        "seconds": round(elapsed, 1),
        "slowest_input_ms": round(slowest * 1000, 1),
        "max_rss_growth_mb": round((rss_end - rss_start) / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs per target")
    parser.add_argument("--target", choices=sorted(TARGETS), action="append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-seconds", type=float, default=2.0)
    parser.add_argument(
        "--findings", type=Path, default=Path(__file__).resolve().parent / "fuzz-findings"
    )
    args = parser.parse_args()
    failed = False
    for name in args.target or list(TARGETS):
        result = run(name, args.inputs, args.seed, args.hang_seconds, args.findings)
        print(json.dumps(result), flush=True)
        failed |= bool(result["crashes"] or result["hangs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
