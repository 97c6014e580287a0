"""The session model's reading of head motion: the ``motion`` a ``tr`` message may carry.

With motion correction on, the preprocess stage's ``tr`` messages carry in their meta::

    "motion": {"params": [tx, ty, tz, rx, ry, rz],  # mm, mm, mm, degrees x 3
               "fd": 0.12,                           # framewise displacement (Power), mm
               "mode": "correct"}                    # or "estimate"

(absent with ``--motion none``).  Each such TR adds a row to the run's motion trace; a TR
whose FD passes the model's threshold is counted for its run and logged as a warning.  A
malformed ``motion`` is read as missing, like any telemetry field of the wrong type.

A ``tr`` the preprocess stage found bad carries ``bad_volume``: ``{"reasons": [...],
"details": {...}}`` (:mod:`fmri_compute.volume_checks`); it is counted for its run and kept
as the newest bad volume (:class:`~gui.state.BadVolumes`).  The stage's own log line about it
is the warning in the log; the model adds none.
"""

from __future__ import annotations

import math

import numpy as np

from gui.model_state import ModelState
from gui.state import MOTION_PARAMS, BadVolumes, MotionTrace
from gui.values import as_float
from rt_wire.message import Message


def read_motion(meta: dict) -> tuple[list[float], float, str | None] | None:
    """``(params, fd, mode)`` from a ``tr`` message's meta; None when it has no usable
    ``motion`` (no six finite parameters).  ``fd`` is NaN when missing or not a number."""
    motion = meta.get("motion")
    if not isinstance(motion, dict):
        return None
    params = motion.get("params")
    if not isinstance(params, list | tuple) or len(params) != len(MOTION_PARAMS):
        return None
    values = [as_float(p) for p in params]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    fd = as_float(motion.get("fd"))
    fd = fd if fd is not None and math.isfinite(fd) else math.nan
    mode = motion.get("mode")
    return values, fd, mode if isinstance(mode, str) else None  # type: ignore[return-value]


class MotionFeed(ModelState):
    """Keeps the current run's motion trace and counts TRs over the FD threshold per run."""

    def _add_motion(self, msg: Message) -> None:
        """Record the head motion of ``tr`` message ``msg`` (of the current run), if any."""
        read = read_motion(msg.meta)
        if read is None or msg.index is None:
            return
        params, fd, mode = read
        run = str(msg.run)
        tr = self.session.tr or 1.0
        self._motion.append((msg.index * tr, float(msg.index), *params, fd))
        self._motion_mode = mode or self._motion_mode
        self._motion_over.setdefault(run, 0)
        if fd > self.fd_threshold:
            self._motion_over[run] += 1
            self._motion_last_over = (run, int(msg.index), fd)
            self.add_log(
                "preprocess",
                "warning",
                f"head motion: FD {fd:.2f} mm at {run} TR {msg.index + 1} "
                f"> {self.fd_threshold:g} mm",
            )
        self._versions["motion"] += 1

    def _add_bad_volume(self, msg: Message) -> None:
        """Count ``tr`` message ``msg`` if the preprocess stage flagged it bad."""
        bad = msg.meta.get("bad_volume")
        if not isinstance(bad, dict) or msg.index is None:
            return
        reasons = bad.get("reasons")
        reasons = [str(r) for r in reasons] if isinstance(reasons, list) else []
        run = str(msg.run)
        self._bad_volumes[run] = self._bad_volumes.get(run, 0) + 1
        self._bad_last = (run, int(msg.index), reasons)
        self._versions["motion"] += 1

    def _bad_volumes_snapshot(self) -> BadVolumes:
        return BadVolumes(dict(self._bad_volumes), self._bad_last)

    def _motion_snapshot(self) -> MotionTrace | None:
        """The current run's :class:`~gui.state.MotionTrace`; None when it reported none."""
        if not self._motion:
            return None
        rows = np.array(self._motion, np.float64)
        return MotionTrace(
            time=rows[:, 0],
            index=rows[:, 1].astype(np.int64),
            params=rows[:, 2:8],
            fd=rows[:, 8],
            mode=self._motion_mode,
            threshold=self.fd_threshold,
            over=dict(self._motion_over),
            last_over=self._motion_last_over,
        )
