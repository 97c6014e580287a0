"""Replay pacing on target timestamps (drift-free), not on a bare ``sleep(TR)``.

Event ``i`` of a replay is due at ``start + data_time_i / speed``; each wait is computed from
that target, so small oversleeps never accumulate into drift over a run.
"""

from __future__ import annotations

import threading
import time

from realtime.checks import check_number


class Pacer:
    """Waits until data time ``t`` (seconds into the replay) is due in wall-clock time.

    Parameters
    ----------
    speed : replay speed; 1 = real time, 2 = twice as fast, 0 = as fast as possible.
    stop : an event that interrupts waiting.
    """

    def __init__(self, speed: float = 1.0, stop: threading.Event | None = None) -> None:
        self.speed = check_number(speed, "speed", minimum=0.0)
        self.stop = stop or threading.Event()
        self.start = time.monotonic()
        self.lateness: list[float] = []

    def restart(self, data_time: float = 0.0) -> None:
        """Make data time ``data_time`` due now (e.g. at the start of each run)."""
        self.start = time.monotonic() - (data_time / self.speed if self.speed else 0.0)

    def wait_until(self, data_time: float) -> bool:
        """Sleep until ``data_time`` is due; returns False if stopped meanwhile."""
        if self.speed == 0:
            return not self.stop.is_set()
        target = self.start + data_time / self.speed
        while True:
            left = target - time.monotonic()
            if left <= 0:
                self.lateness.append(-left)
                return not self.stop.is_set()
            if self.stop.wait(min(left, 0.05)):
                return False
