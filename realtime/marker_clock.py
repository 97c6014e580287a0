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
    after its volume was acquired, so onsets come out earlier by the scanner's reconstruction
    delay; a replay sends volume ``k`` at its data time);
``onsets``
    every trial marker carried its own ``onset``: no timestamp was needed.

A trial's onset is then ``(t_marker - zero) * speed`` seconds (``speed`` is a replay's pace),
as the replay of a dataset's ``events.tsv`` would give it.  A scanner run's clock
(:class:`LiveRunClock`) knows no pace in advance: it pins each volume index to the time of its
trigger (or of its file) and interpolates between them.
"""

from __future__ import annotations

import time

__all__ = ["CLOCK_SOURCES", "LiveRunClock", "RunClock", "clock_offset", "session_time"]

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

    def final(self, t: float) -> bool:
        """Whether the onset of session time ``t`` is known for good (a replay's pace is
        known: as soon as the clock is :attr:`ready`)."""
        return self.ready

    def onset(self, t: float) -> float:
        """The data time (s from the run's first volume) of session time ``t``."""
        if self.zero is None:
            raise RuntimeError("the run's data time 0 is not known yet (no trigger, no volume)")
        return (float(t) - self.zero) * self.speed


class LiveRunClock:
    """A scanner run's clock: volume index pinned to session time, the pace measured.

    Anchors are ``(index, time)`` pairs: the trigger markers' (the ``k``-th trigger of the run,
    or the one naming ``volume`` k, began volume k) when there are any (``triggers``), else the
    volumes' file times (``volumes``: later than the acquisitions by the scanner's
    reconstruction and export delay).  An onset is interpolated between the anchors around its
    time, and extrapolated beyond them at the pace of the nearest two (one anchor: the TR, a
    scanner's pace).  It is :meth:`final` once an anchor at or after it is known (a trigger or
    a file: the scanner has passed that time), or once the run is over (:meth:`close`).

    Under the ``volumes`` clock a trial shown less than one TR before the first volume's file
    (at the first trigger, say) has onset 0: the file came that much after the acquisition.
    """

    speed = 1.0

    def __init__(self, tr: float) -> None:
        self.tr = float(tr)
        self.triggers = 0
        self._triggers: dict[int, float] = {}
        self._volumes: dict[int, float] = {}
        self._closed = False

    def trigger(self, t: float, volume: int | None = None) -> None:
        """A trigger at session time ``t`` began volume ``volume`` (None: counted in the run)."""
        k = self.triggers if volume is None else int(volume)
        self.triggers += 1
        self._triggers.setdefault(k, float(t))

    def volume(self, index: int, t: float) -> None:
        """Volume ``index``'s file was written at session time ``t``."""
        self._volumes.setdefault(int(index), float(t))

    def close(self) -> None:
        """The run is over: every onset is final (extrapolated where no anchor follows)."""
        self._closed = True

    @property
    def source(self) -> str | None:
        return "triggers" if self._triggers else ("volumes" if self._volumes else None)

    @property
    def ready(self) -> bool:
        return bool(self._triggers or self._volumes)

    @property
    def zero(self) -> float | None:
        """Session time of data time 0 (None: no anchor yet)."""
        return None if not self.ready else self._at_index(0.0)

    def final(self, t: float) -> bool:
        latest = max([*self._triggers.values(), *self._volumes.values()], default=None)
        return self._closed or (latest is not None and float(t) <= latest)

    def onset(self, t: float) -> float:
        """The data time (s from the run's first volume) of session time ``t``."""
        anchors = self._anchors()
        if not anchors:
            raise RuntimeError("the run's data time 0 is not known yet (no trigger, no volume)")
        times = [(time, index) for index, time in anchors]
        onset = _through(times, float(t), 1.0 / self.tr) * self.tr
        if self.source == "volumes" and -self.tr <= onset < 0:
            return 0.0  # shown at the acquisition of the first volume, before its file
        return onset

    def _at_index(self, index: float) -> float:
        return _through(self._anchors(), float(index), self.tr)

    def _anchors(self) -> list[tuple[int, float]]:
        return sorted((self._triggers or self._volumes).items())


def _through(points: list[tuple[float, float]], x: float, slope: float) -> float:
    """The line through the two ``(x, y)`` points around ``x`` (the first or last two beyond
    them) at ``x``; one point: the line of ``slope`` through it."""
    points = sorted(points)
    if len(points) == 1:
        x0, y0 = points[0]
        return y0 + (x - x0) * slope
    i = 1
    while i < len(points) - 1 and points[i][0] < x:
        i += 1
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (x - x0) * (y1 - y0) / (x1 - x0)
