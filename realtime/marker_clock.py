"""One clock for markers and volumes: where a run's data time 0 lies, and a marker's onset.

Every time here is on the *session clock*: the wall clock (``time.time()``) that stamps the
volumes (``source.acquired``: the replay's send time, the scanner file's write time).  An LSL
marker's timestamp is on its sender's LSL clock; :func:`session_time` puts it on the session
clock with the inlet's ``time_correction()`` (sender's clock to ours) and the offset between
our LSL clock (``pylsl.local_clock()``) and the wall clock, measured by :func:`clock_offset`.

A run's data time 0 (the start of its first volume) comes from

``triggers``
    scanner trigger markers: the first trigger pins its volume (its ``volume`` field, else the
    count of triggers in the run) to its time;
``volumes``
    without triggers, the time of the run's first volume received (a scanner's file is written
    after its volume was acquired, so onsets come out later by the scanner's reconstruction
    delay; a replay sends volume ``k`` at its data time);
``onsets``
    every trial marker carried its own ``onset``: no timestamp was needed.

A trial's onset is then ``(t_marker - zero) * speed`` seconds (``speed`` is a replay's pace;
1 for a scanner), as the replay of a dataset's ``events.tsv`` would give it.
"""

from __future__ import annotations

import time

__all__ = ["CLOCK_SOURCES", "RunClock", "clock_offset", "session_time"]

CLOCK_SOURCES = ("triggers", "volumes", "onsets")


def clock_offset(local_clock, pairs: int = 5) -> float:
    """``time.time() - local_clock()``: the wall clock minus the LSL clock, from the tightest
    of ``pairs`` back-to-back readings (``local_clock`` is ``pylsl.local_clock``)."""
    best = None
    for _ in range(max(1, pairs)):
        before = time.time()
        lsl = local_clock()
        after = time.time()
        if best is None or after - before < best[0]:
            best = (after - before, (before + after) / 2 - lsl)
    return best[1]


def session_time(lsl_timestamp: float, correction: float, offset: float) -> float:
    """A marker's time on the session clock: its sender's LSL timestamp plus the inlet's
    ``time_correction`` (to our LSL clock) plus :func:`clock_offset` (to the wall clock)."""
    return float(lsl_timestamp) + float(correction) + float(offset)


class RunClock:
    """Where one run's data time 0 lies on the session clock.

    Parameters
    ----------
    tr : the run's repetition time (s).
    speed : replay speed (volumes come every ``tr / speed`` seconds); 1 for a scanner; 0 (as
        fast as possible) has no clock at all: trial markers must carry their onsets.
    """

    def __init__(self, tr: float, speed: float = 1.0) -> None:
        self.tr = float(tr)
        self.speed = float(speed)
        self.zero: float | None = None
        self.source: str | None = None
        self.triggers = 0

    def trigger(self, t: float, volume: int | None = None) -> None:
        """A trigger at session time ``t`` for volume ``volume`` (None: the next one).

        The run's first trigger pins the clock (it wins over a volume's time, which is later
        by the scanner's delay); later triggers are counted.
        """
        k = self.triggers if volume is None else int(volume)
        self.triggers += 1
        if self.source != "triggers" and self.speed:
            self.zero = float(t) - k * self.tr / self.speed
            self.source = "triggers"

    def volume(self, index: int, t: float) -> None:
        """Volume ``index`` was acquired (replay: sent) at session time ``t``; the first one
        sets the clock when no trigger has."""
        if self.zero is None and self.speed:
            self.zero = float(t) - int(index) * self.tr / self.speed
            self.source = "volumes"

    @property
    def ready(self) -> bool:
        """Whether onsets can be computed (data time 0 is known)."""
        return self.zero is not None

    def onset(self, t: float) -> float:
        """The data time (s from the run's first volume) of session time ``t``."""
        if self.zero is None:
            raise RuntimeError("the run's data time 0 is not known yet (no trigger, no volume)")
        return (float(t) - self.zero) * self.speed
