"""The one on-disk format: records, frames, snapshot files (both versions), file names."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from conftest import v1_snapshot
from hypothesis import given, settings
from hypothesis import strategies as st

from collab.storage.contract import Record, Snapshot
from collab.storage.errors import CorruptDocumentError
from collab.storage.format import (
    SNAPSHOT_VERSION,
    decode_records,
    encode_record,
    encode_records,
    encode_snapshot,
    read_rest,
    read_snapshot_file,
    segment_of_file,
)

records_strategy = st.lists(
    st.builds(
        Record,
        rev=st.integers(0, 2**64 - 1),
        time=st.floats(allow_nan=False),
        origin=st.text(max_size=30),
        user=st.none() | st.text(max_size=30),
        update=st.binary(max_size=60),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200)
@given(records_strategy)
def test_records_round_trip(records: list[Record]) -> None:
    decoded = decode_records(encode_records(records))
    assert decoded.records == records and decoded.torn is None


@settings(max_examples=200)
@given(records_strategy, st.data())
def test_any_truncation_is_a_torn_tail(records: list[Record], data: st.DataObject) -> None:
    encoded = encode_records(records)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    decoded = decode_records(encoded[:cut])
    assert decoded.records == records[: len(decoded.records)]
    assert decoded.end <= cut and (decoded.torn is not None or decoded.end == cut)


@settings(max_examples=200)
@given(records_strategy, st.data())
def test_a_damaged_record_is_torn_if_last_and_corrupt_if_not(
    records: list[Record], data: st.DataObject
) -> None:
    chunks = [encode_record(r) for r in records]
    which = data.draw(st.integers(0, len(chunks) - 1))
    at = data.draw(st.integers(0, len(chunks[which]) - 1))
    damaged = bytearray(chunks[which])
    damaged[at] ^= data.draw(st.integers(1, 255))
    buffer = b"".join(chunks[:which]) + bytes(damaged) + b"".join(chunks[which + 1 :])
    start = sum(len(c) for c in chunks[:which])

    if which == len(chunks) - 1:
        decoded = decode_records(buffer)
        assert decoded.records == records[:which] and decoded.end == start
        assert decoded.torn is not None
    else:
        with pytest.raises(CorruptDocumentError) as caught:
            decode_records(buffer)
        assert caught.value.offset == start


def test_origin_and_user_limits() -> None:
    record = Record(1, 0.0, "o" * 70_000, None, b"")
    with pytest.raises(ValueError, match="origin"):
        encode_record(record)
    with pytest.raises(ValueError, match="user"):
        encode_record(Record(1, 0.0, "o", "u" * 65_535, b""))


# --- Snapshot files ------------------------------------------------------------------------------


@settings(max_examples=100)
@given(st.integers(0, 2**64 - 1), st.binary(max_size=80), st.binary(max_size=40))
def test_snapshot_round_trips_with_its_meta(rev: int, state: bytes, meta: bytes) -> None:
    data = encode_snapshot(Snapshot(rev, state, meta))
    assert struct.unpack_from("<I", data, 4)[0] == SNAPSHOT_VERSION == 2
    assert _read(data, rev) == Snapshot(rev, state, meta)


def test_a_version_1_snapshot_reads_with_empty_meta(tmp_path: Path) -> None:
    path = tmp_path / "snapshot-000000000007.ysnap"
    path.write_bytes(v1_snapshot(7, b"state \xf0\x9f\x98\x80"))
    assert read_snapshot_file(path, 7) == Snapshot(7, b"state \xf0\x9f\x98\x80", b"")


@pytest.mark.parametrize("version", [1, 2])
def test_any_damage_to_a_snapshot_is_found(tmp_path: Path, version: int) -> None:
    """Every byte after the rev is covered: a flipped bit anywhere, meta length included."""
    state, meta = b"the state", b"meta"
    good = v1_snapshot(3, state) if version == 1 else encode_snapshot(Snapshot(3, state, meta))
    path = tmp_path / "snapshot-000000000003.ysnap"
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(CorruptDocumentError) as caught:
            read_snapshot_file(path, 3)
        assert caught.value.path == path and str(path) in str(caught.value)
    for cut in range(len(good)):
        path.write_bytes(good[:cut])
        with pytest.raises(CorruptDocumentError):
            read_snapshot_file(path, 3)


def test_unknown_snapshot_versions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.ysnap"
    data = bytearray(encode_snapshot(Snapshot(1, b"x")))
    data[4] = 3
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDocumentError, match="at offset 4: unknown snapshot version 3"):
        read_snapshot_file(path)


def _read(data: bytes, rev: int) -> Snapshot:
    """`read_snapshot_file` of `data` (hypothesis tests cannot take tmp_path)."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "snap.ysnap"
        path.write_bytes(data)
        return read_snapshot_file(path, rev)


# --- File names ----------------------------------------------------------------------------------


def test_a_copied_log_starts_where_its_name_or_first_record_says(tmp_path: Path) -> None:
    header = b"CLOG" + struct.pack("<I", 1)
    named = tmp_path / "log-000000000006.ylog"
    named.write_bytes(header)
    (tmp_path / "snapshot-000000000006.ysnap").write_bytes(v1_snapshot(6, b"s"))
    copy = tmp_path / "bug-report.ylog"
    copy.write_bytes(header + encode_records([Record(4, 0.0, "o", None, b"")]))
    odd = tmp_path / "log-000000000002.ysnap"  # not a log's name: read like a copy
    odd.write_bytes(header)

    assert segment_of_file(named).start_rev == 6 and segment_of_file(named).snapshot is not None
    assert segment_of_file(copy).start_rev == 3 and segment_of_file(copy).snapshot is None
    assert segment_of_file(odd).start_rev == 0


@given(data=st.binary(max_size=4096), offset=st.integers(min_value=0, max_value=5000))
@settings(max_examples=50)
def test_read_rest_is_what_read_gives(data: bytes, offset: int) -> None:
    """`read_rest` reads with the size known (a buffered `read()` without one held the GIL
    ~30-40 ms per 64 MiB): the very bytes `read()` gives, from wherever the file is."""
    with tempfile.TemporaryFile() as file:
        file.write(data)
        file.seek(offset)
        assert read_rest(file) == data[offset:]
        assert read_rest(file) == b""
