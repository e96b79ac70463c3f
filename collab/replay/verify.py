"""`collab replay --verify`: check every byte a document's segments hold, and report all.

Checks the headers and checksums of every log record and snapshot, revisions that follow
each other, updates that apply, and that replaying the log from the start gives each
snapshot's document. Unlike loading, it does not stop at the first problem.

`verify_store` makes the same checks but the byte-level ones through any
`RevisionHistory` store (`collab replay --store URL NAME --verify`): problems are placed by
revision rather than by byte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from collab.replay.rebuild import DocReplay
from collab.storage.contract import RevisionHistory, Segment, Snapshot
from collab.storage.errors import CompactionError, FileFormatError, HistoryError
from collab.storage.fingerprint import verify_snapshot
from collab.storage.format import (
    LOG_HEADER,
    DecodedRecords,
    decode_records,
    read_log_bytes,
    read_snapshot_file,
)


@dataclass(frozen=True)
class Problem:
    """Something wrong in a document's files, and where."""

    path: Path
    offset: int
    message: str
    fatal: bool = True
    unit: str = "byte"  # what `offset` counts: "byte" in a file, "rev" in a store

    def __str__(self) -> str:
        kind = "error" if self.fatal else "warning"
        return f"{self.path}: {self.unit} {self.offset}: {kind}: {self.message}"


@dataclass
class VerifyReport:
    problems: list[Problem] = field(default_factory=list)
    segments: int = 0
    records: int = 0
    snapshots: int = 0
    last_rev: int = 0

    @property
    def ok(self) -> bool:
        return not any(problem.fatal for problem in self.problems)

    def add(self, error: FileFormatError) -> None:
        self.problems.append(Problem(error.path, error.offset, error.reason))


def verify(
    segments: list[Segment],
    text_name: str = "text",
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check a document's files (see the module doc). Reports every problem it can find."""
    report = VerifyReport(segments=len(segments))
    replay: DocReplay | None = None  # None until a starting state is known
    replayed = 0  # the last revision checked (applied too, when `replay` is known)
    for index, segment in enumerate(segments):
        limit = segments[index + 1].start_rev if index + 1 < len(segments) else None
        if segment.snapshot is not None:
            state = _check_snapshot(report, segment, replay, replayed)
            if state is not None and (replay is None or replayed != segment.start_rev):
                replay = DocReplay(text_name, state, segment.start_rev)  # go on from it
                replayed = segment.start_rev
        elif replay is None:
            replay = DocReplay(text_name)
        replayed = _verify_log(report, segment, replay, replayed, limit, progress)
    report.last_rev = replayed
    return report


def _check_snapshot(
    report: VerifyReport, segment: Segment, replay: DocReplay | None, replayed: int
) -> bytes | None:
    """Read one snapshot file and compare it with the replay, when the replay reached it."""
    assert segment.snapshot is not None
    report.snapshots += 1
    try:
        state = read_snapshot_file(segment.snapshot, segment.start_rev).state
    except FileFormatError as error:
        report.add(error)
        return None
    if replay is None:
        return state  # the oldest segment kept: nothing to compare with
    if replayed != segment.start_rev:
        message = f"the log before it ends at rev {replayed}, not at {segment.start_rev}"
        report.problems.append(Problem(segment.snapshot, 0, message))
        return state
    try:
        verify_snapshot(replay.state(), [], state)
    except CompactionError as error:
        message = f"differs from the replay of the log up to rev {segment.start_rev}: {error}"
        report.problems.append(Problem(segment.snapshot, 0, message))
    return state


def _verify_log(
    report: VerifyReport,
    segment: Segment,
    replay: DocReplay | None,
    expected: int,
    limit: int | None,
    progress: Callable[[int], None] | None,
) -> int:
    """Check one log file; returns the last revision it took."""
    path = segment.log
    decoded = _decode_what_can_be(report, path)
    if decoded is None:
        return expected
    if decoded.torn is not None:
        what = "a torn last record (a crash during a write; cut when the document loads)"
        problem = Problem(path, decoded.end, f"{what}: {decoded.torn}", fatal=limit is not None)
        report.problems.append(problem)
    if decoded.records and decoded.records[0].rev != segment.start_rev + 1:
        message = f"first record is rev {decoded.records[0].rev}, not {segment.start_rev + 1}"
        report.problems.append(Problem(path, decoded.offsets[0], message))
    for record, offset in zip(decoded.records, decoded.offsets, strict=True):
        if record.rev <= expected:
            continue  # already replayed from the previous segment (carried over)
        if limit is not None and record.rev > limit:
            break
        if record.rev != expected + 1:
            message = f"rev {record.rev} follows rev {expected}: revisions are missing"
            report.problems.append(Problem(path, offset, message))
        try:
            if replay is not None:
                replay.apply(record.update, record.rev)
        except HistoryError as error:
            report.problems.append(Problem(path, offset, error.reason))
        expected = record.rev
        report.records += 1
        if progress is not None:
            progress(record.rev)
    return expected


def _decode_what_can_be(report: VerifyReport, path: Path) -> DecodedRecords | None:
    """The records of a log, up to the first damage in the middle (reported)."""
    try:
        data = read_log_bytes(path)
    except FileFormatError as error:
        report.add(error)
        return None
    base = LOG_HEADER.size
    try:
        return decode_records(data, path=path, base=base)
    except FileFormatError as error:
        report.add(error)
        return decode_records(data[: error.offset - base], path=path, base=base)


# ---------------------------------------------------------------------- through a store


async def verify_store(
    store: RevisionHistory,
    name: str,
    text_name: str = "text",
    progress: Callable[[int], None] | None = None,
    batch: int = 10_000,
) -> VerifyReport | None:
    """Check a document's kept revisions and snapshots in any store (None: no document)."""
    start = await store.history_start(name)
    if start is None:
        return None
    where = Path(name)
    report = VerifyReport()
    snapshots: list[Snapshot] = []
    snapshot = await store.snapshot_at_or_before(name, 2**63 - 1)
    while snapshot is not None and snapshot.rev >= start:
        snapshots.insert(0, snapshot)
        snapshot = await store.snapshot_at_or_before(name, snapshot.rev - 1)
    report.snapshots = len(snapshots)
    report.segments = len(snapshots) + (start == 0)
    base = snapshots.pop(0) if start and snapshots and snapshots[0].rev == start else None
    if start and base is None:
        report.problems.append(
            Problem(where, start, "the snapshot history starts at is gone", unit="rev")
        )
        return report
    replay = DocReplay(text_name, base.state if base else None, start)
    expected = start
    while True:
        try:
            records = await store.history_records(name, expected, batch)
        except (FileFormatError, LookupError) as error:
            report.problems.append(Problem(where, expected + 1, str(error), unit="rev"))
            break
        for record in records:
            if record.rev != expected + 1:
                message = f"rev {record.rev} follows rev {expected}: revisions are missing"
                report.problems.append(Problem(where, record.rev, message, unit="rev"))
            try:
                replay.apply(record.update, record.rev)
            except HistoryError as error:
                report.problems.append(Problem(where, record.rev, error.reason, unit="rev"))
            expected = record.rev
            report.records += 1
            while snapshots and snapshots[0].rev <= expected:
                _compare(report, where, replay, snapshots.pop(0), expected)
            if progress is not None:
                progress(record.rev)
        if len(records) < batch:
            break
    for snapshot in snapshots:  # past the last revision kept
        message = f"a snapshot at rev {snapshot.rev}, past the last revision kept ({expected})"
        report.problems.append(Problem(where, snapshot.rev, message, unit="rev"))
    report.last_rev = expected
    return report


def _compare(
    report: VerifyReport, where: Path, replay: DocReplay, snapshot: Snapshot, rev: int
) -> None:
    if snapshot.rev != rev:
        message = f"a snapshot at rev {snapshot.rev}, between kept revisions"
        report.problems.append(Problem(where, snapshot.rev, message, unit="rev"))
        return
    try:
        verify_snapshot(replay.state(), [], snapshot.state)
    except CompactionError as error:
        message = f"the snapshot differs from the replay of the revisions up to it: {error}"
        report.problems.append(Problem(where, snapshot.rev, message, unit="rev"))
