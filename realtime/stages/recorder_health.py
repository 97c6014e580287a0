"""Whether the recorder keeps up and can write: a full or failing disk, a slow one.

The recorder is the data path's sink, so it must never be the reason a session stops decoding.

* **A write fails** (``OSError``: a full disk, a quota, a read-only or vanished share, an I/O
  error): the message is not (or not wholly) recorded, the failure is reported once as an error
  that names the run, the index, the file and the reason, and the stage goes on receiving, so
  decoding goes on to the session's end.  Every message is still handled (its counts kept: a
  volume that reached the recorder is never counted as lost) and its writes tried, so the
  first write that succeeds again ends the failure, reported with the count of messages the
  record lacks.  The retrievals themselves still reach the console and the LSL outlets, which
  do not go through the recorder.
* **The recorder falls behind** (a slow disk): each message's age when it is recorded (now
  minus the last stage stamp it carries) is watched; past ``behind_s`` a warning says how far
  behind it is, at most every ``warn_every_s``.  Decoding is held back only once the link into
  the recorder is full: ZMQ queues up to ``DATA_HWM`` messages at each end (4,000 in all),
  then the decode stage waits; memory stays bounded either way.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

from rt_wire.message import Message

__all__ = ["RecorderHealth", "describe_write_error"]

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EIO: "the disk reported an I/O error",
    errno.ENOENT: "the session folder is gone",
    errno.EACCES: "permission denied",
}


def describe_write_error(err: OSError) -> str:
    """A reason an operator understands, with the file when the error names one."""
    reason = _REASONS.get(err.errno or -1, err.strerror or type(err).__name__)
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return reason + where


def _age(msg: Message, now: float) -> float | None:
    """Seconds since the last stage before the recorder stamped ``msg``."""
    stamps = [
        t for k, t in msg.t.items() if isinstance(t, int | float) and not k.startswith("recorder.")
    ]
    return now - max(stamps) if stamps else None


class RecorderHealth:
    """Tracks write failures and lag for a recorder; ``report(level, text)`` tells the operator.

    Parameters
    ----------
    report : the stage's ``report`` (log + telemetry).
    behind_s : a message recorded this many seconds after its last stamp is "behind".
    warn_every_s : the least time between two "behind" warnings.
    """

    def __init__(
        self,
        report: Callable[[str, str], None],
        *,
        behind_s: float = 2.0,
        warn_every_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.report = report
        self.behind_s = behind_s
        self.warn_every_s = warn_every_s
        self.clock = clock
        self.failing_since: float | None = None
        self._last_warning = -float("inf")
        self.not_recorded = 0
        self.not_recorded_now = 0  # during the current failure
        self.failures = 0
        self.max_lag_s = 0.0

    def failed(self, msg: Message, err: OSError) -> None:
        """A write for ``msg`` raised ``err``: count it, and report it if it starts a failure."""
        now = self.clock()
        self.not_recorded += 1
        self.not_recorded_now += 1
        if self.failing_since is None:
            self.failing_since = now
            self.failures += 1
            self.report(
                "error",
                f"the record is incomplete from {msg.kind} {msg.run} #{msg.index} on: "
                f"{describe_write_error(err)}; decoding goes on, and recording resumes as soon as "
                "a write succeeds again",
            )

    def written(self, msg: Message) -> None:
        """``msg`` was recorded: end a failure, and watch how far behind the recorder is."""
        now = self.clock()
        if self.failing_since is not None:
            self.report(
                "warning",
                f"recording resumed at {msg.kind} {msg.run} #{msg.index} after "
                f"{now - self.failing_since:.0f} s; {self.not_recorded_now} message(s) were not "
                "recorded",
            )
            self.failing_since = None
            self.not_recorded_now = 0
        age = _age(msg, now)
        if age is None:
            return
        self.max_lag_s = max(self.max_lag_s, age)
        if age > self.behind_s and now - self._last_warning >= self.warn_every_s:
            self._last_warning = now
            self.report(
                "warning",
                f"the recorder is {age:.1f} s behind ({msg.kind} {msg.run} #{msg.index}): a slow "
                "disk? decoding waits only once the link's queue is full",
            )

    def status(self) -> dict:
        return {
            "not_recorded": self.not_recorded,
            "write_failures": self.failures,
            "max_lag_s": round(self.max_lag_s, 3),
        }
