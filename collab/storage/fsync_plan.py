"""Where an append's fsync runs: inline on the event loop while fsyncs are fast and few,
on the store's writer threads when they are slow or many.

On a fast disk, handing an fsync to a thread and its answer back to the loop costs more
CPU than the fsync itself: measured at 200 documents × 3 peers × 2 edits/s, ~180 µs of
server CPU per edit on threads against ~76 µs for a write and an fsync inline (the rest
is context switches and the GIL's hand-overs). Inline, though, an fsync stalls every
document of the process while it runs. So an fsync runs inline only while

- the typical fsync (a moving average of the last ones, wherever they ran) is under
  `slow` (1 ms: a stall a tenth of the loop's 10 ms budget),
- the fsyncs asked for in one turn of the loop, run in a row, would take at most `turn`
  (1 ms): a burst of several documents' fsyncs overlaps on the threads instead (at 10
  busy documents × 200 edits/s, fsyncs inline in a row gave a p50 of 7.6 ms), and
- fsyncs take at most `share` of the loop's time (their rate × the typical fsync). At
  half, an edit waits on average for half an fsync of another document's (a queue with
  one server); past it the queue grows quickly, while on threads several documents'
  fsyncs overlap and share the filesystem's journal commits. Measured at the load above
  with 0.2-0.4 ms fsyncs (shares of 0.25-0.5): inline saved ~70 µs of CPU per edit, and
  fsyncs inline whatever their length gave a p99 of 16 ms against 4-5 ms with this plan.

Until one fsync has been measured, fsyncs go to the threads. A single fsync that hangs
inline stalls the loop for its length once. The average alone would bring fsyncs back
inline within a dozen fast ones, so a disk that hiccups now and then (a journal commit
behind a big snapshot, a network disk) would stall the loop on every hiccup: an fsync of
`stall` (10 ms) or more, wherever it ran, keeps them on the threads for `calm` (60 s)
from the next ask, renewed by each such fsync. A disk that hiccups less often than that
stalls the loop at most once per `calm`.
"""

from __future__ import annotations

SLOW = 0.001  # s: a typical fsync longer than this runs on the threads
TURN = 0.001  # s: at most this long in a row of inline fsyncs per turn of the loop
SHARE = 0.5  # at most this share of the loop's time in inline fsyncs
WEIGHT = 0.25  # of the newest fsync in the moving average
WINDOW = 1.0  # s: fsyncs are counted per window to know their rate
STALL = 0.01  # s: an fsync this long (a loop's whole budget) is a hiccup of the disk
CALM = 60.0  # s: after a hiccup, fsyncs stay on the threads this long


class FsyncPlan:
    """Decides per turn of the loop: `inline(now, count)` asks (and counts the fsyncs),
    `measured(seconds)` reports how long one took (inline or on a thread). Used on the
    event loop only."""

    def __init__(
        self, slow: float = SLOW, share: float = SHARE, turn: float = TURN, stall: float = STALL
    ) -> None:
        self.slow = slow
        self.share = share
        self.turn = turn
        self.stall = stall
        self.typical: float | None = None  # seconds, once one fsync was measured
        self._window_start = 0.0
        self._count = 0  # fsyncs asked for in the current window
        self._rate = 0.0  # fsyncs per second in the last whole window
        self._hiccup = False  # an fsync of STALL or more measured since the last ask
        self._calm_until = 0.0  # no fsync inline before this time

    def inline(self, now: float, count: int = 1) -> bool:
        """Whether the `count` fsyncs of one loop turn, asked for at `now` (a monotonic
        clock), run inline, one after another."""
        if now - self._window_start >= WINDOW:
            self._rate = self._count / (now - self._window_start)
            self._window_start, self._count = now, 0
        self._count += count
        if self._hiccup:
            self._hiccup, self._calm_until = False, now + CALM
        if now < self._calm_until:
            return False
        typical = self.typical
        if typical is None or typical >= self.slow or count * typical > self.turn:
            return False
        rate = max(self._rate, self._count / WINDOW)  # a burst counts before its window ends
        return rate * typical <= self.share

    def measured(self, seconds: float) -> None:
        if seconds >= self.stall:
            self._hiccup = True
        typical = self.typical
        self.typical = seconds if typical is None else typical + (seconds - typical) * WEIGHT
