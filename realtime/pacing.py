"""Replay pacing on target timestamps (drift-free), not on a bare ``sleep(TR)``.

Event ``i`` of a replay is due at ``anchor_wall + (data_time_i - anchor_data) / speed``; each
wait is computed from that target, so small oversleeps never accumulate into drift over a run.

The anchor moves only when the operator changes the pace: :meth:`Pacer.pause` freezes the
data clock, :meth:`Pacer.resume` restarts it where it stopped, and :meth:`Pacer.set_speed`
re-anchors at the current data position, so neither causes a jump (no burst of catch-up
events, no skipped interval).  These may be called from another thread (a control channel)
while the replay thread waits in :meth:`Pacer.wait_until`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rt_base.checks import check_number

_MAX_LATENESS = 1000  # lateness values kept (the newest)
_POLL_S = 0.05  # longest sleep between checks of the stop event


class Pacer:
    """Waits until data time ``t`` (seconds into the replay) is due in wall-clock time.

    Parameters
    ----------
    speed : replay speed; 1 = real time, 2 = twice as fast, 0 = as fast as possible.
    stop : an event that interrupts waiting.
    on_wait : called (on the waiting thread, without the lock held) about every 50 ms while
        :meth:`wait_until` waits, e.g. to publish a status while paused.
    """

    def __init__(
        self,
        speed: float = 1.0,
        stop: threading.Event | None = None,
        *,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self.speed = check_number(speed, "speed", minimum=0.0)
        self.stop = stop or threading.Event()
        self.on_wait = on_wait
        self.lateness: list[float] = []
        self._cond = threading.Condition()
        self._anchor_wall = time.monotonic()
        self._anchor_data = 0.0
        self._last_data = 0.0  # the last data time waited for (the position at speed 0)
        self._paused_at: float | None = None  # data position frozen by pause()
        self._halted = False

    # -- the anchor --------------------------------------------------------------------------
    @property
    def start(self) -> float:
        """Wall-clock (monotonic) time at which data time 0 is (or was) due."""
        with self._cond:
            if not self.speed:
                return self._anchor_wall
            return self._anchor_wall - self._anchor_data / self.speed

    def restart(self, data_time: float = 0.0) -> None:
        """Make data time ``data_time`` due now (e.g. at the start of each run)."""
        with self._cond:
            self._anchor_wall = time.monotonic()
            self._anchor_data = float(data_time)
            self._last_data = float(data_time)
            if self._paused_at is not None:
                self._paused_at = float(data_time)
            self._cond.notify_all()

    def position(self) -> float:
        """The current data time: where the replay clock stands now (frozen while paused)."""
        with self._cond:
            return self._position(time.monotonic())

    def _position(self, now: float) -> float:
        if self._paused_at is not None:
            return self._paused_at
        if not self.speed:
            return self._last_data
        return self._anchor_data + (now - self._anchor_wall) * self.speed

    # -- operator controls (thread-safe) -----------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    @property
    def halted(self) -> bool:
        """True after :meth:`halt`: every wait returns False at once."""
        return self._halted

    def pause(self) -> None:
        """Freeze the data clock; :meth:`wait_until` blocks until :meth:`resume`."""
        with self._cond:
            if self._paused_at is None:
                self._paused_at = self._position(time.monotonic())

    def resume(self) -> None:
        """Restart the data clock where :meth:`pause` froze it (no catch-up burst)."""
        with self._cond:
            if self._paused_at is None:
                return
            self._anchor_wall = time.monotonic()
            self._anchor_data = self._paused_at
            self._paused_at = None
            self._cond.notify_all()

    def set_speed(self, speed: float) -> float:
        """Change the speed from the current data position on (no jump); returns it.

        Raises
        ------
        ConfigError
            ``speed`` is not a non-negative number.
        """
        speed = check_number(speed, "speed", minimum=0.0)
        with self._cond:
            now = time.monotonic()
            if self._paused_at is None:
                self._anchor_data = self._position(now)
                self._anchor_wall = now
            self.speed = speed
            self._cond.notify_all()
        return speed

    def halt(self) -> None:
        """End the replay: pending and later waits return False (a clean stop, not ``stop``)."""
        with self._cond:
            self._halted = True
            self._cond.notify_all()

    # -- waiting -----------------------------------------------------------------------------
    def wait_until(self, data_time: float) -> bool:
        """Sleep until ``data_time`` is due; returns False if stopped or halted meanwhile."""
        while True:
            with self._cond:
                if self.stop.is_set() or self._halted:
                    return False
                if self._paused_at is None:
                    if not self.speed:
                        self._last_data = max(self._last_data, float(data_time))
                        return True
                    now = time.monotonic()
                    left = self._anchor_wall + (data_time - self._anchor_data) / self.speed - now
                    if left <= 0:
                        self._last_data = max(self._last_data, float(data_time))
                        self.lateness.append(-left)
                        if len(self.lateness) > 2 * _MAX_LATENESS:
                            del self.lateness[:-_MAX_LATENESS]
                        return True
                    self._cond.wait(min(left, _POLL_S))
                else:
                    self._cond.wait(_POLL_S)
            if self.on_wait is not None:
                self.on_wait()
