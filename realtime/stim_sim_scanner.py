"""stim-sim beside a scanner (``mindeye-rt stim-sim --scanner DIR``): when each run began.

A stimulus program starts a run at the scanner's first trigger.  stim-sim has no trigger line:
it watches the scanner's export folder (where ``mindeye-rt scanner-sim`` writes) for the first
volume of each new series, and takes the start of that volume's acquisition (its DICOM
``AcquisitionTime``, or the NIfTI description's ``Time=``; else the file's time) as the run's
first trigger.  From there it schedules its markers on the wall clock, as the program would from
the trigger, and stamps each with its scheduled time (a program stamps its images with their
screen flips), so late pushes do not shift them.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

__all__ = ["acquisition_start", "wait_for_series"]

_VOLUME_NAME = re.compile(r"_(\d+)_(\d+)\.(?:dcm|nii)$")  # scanner-sim's SSS_SERIES_INDEX.ext
_DAY_S = 86400.0


def acquisition_start(seconds_of_day: float | None, mtime: float) -> float:
    """Wall-clock time (epoch s) of an acquisition time of day (local, as a console writes it),
    on the day of ``mtime`` (the file's time, used when there is none)."""
    if seconds_of_day is None:
        return float(mtime)
    day = dt.datetime.fromtimestamp(mtime).replace(hour=0, minute=0, second=0, microsecond=0)
    start = day.timestamp() + float(seconds_of_day)
    if start > mtime + _DAY_S / 2:  # acquired before midnight, written after it
        start -= _DAY_S
    return start


def wait_for_series(folder: Path, after: int, stop, timeout_s: float) -> tuple[int, float] | None:
    """The first volume of the next series (number above ``after``) in ``folder``, once it is
    complete: ``(series, acquisition start)``; None when ``stop`` is set or after ``timeout_s``."""
    from replay_data.scanner_files import read_volume
    from rt_base.errors import DatasetError

    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        for path in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else ():
            match = _VOLUME_NAME.search(path.name)
            if match is None or int(match.group(1)) <= after or int(match.group(2)) != 1:
                continue
            try:
                vol = read_volume(path)
                mtime = path.stat().st_mtime
            except (DatasetError, OSError):  # still being written
                continue
            return int(vol.series), acquisition_start(vol.acquisition_time, mtime)
        stop.wait(0.005)
    return None
