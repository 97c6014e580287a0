"""The recorder's BIDS tables: each run's ``_events.tsv``, the session's ``scans.tsv`` and the
head-motion derivative, appended line by line as the messages come (a crash loses nothing
already received).  The names come from :mod:`realtime.session_layout`; the dataset's
description files from :mod:`realtime.record_sidecars`.

A restarted recorder's tables pick up the files (``resume``): the run numbers and the runs
listed from ``scans.tsv``, the trials of each ``_events.tsv`` and the rows of each motion table
are not written again (:mod:`realtime.stages.recorder_resume`).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from realtime.record_sidecars import write_dataset_files, write_motion_json
from realtime.session_layout import (
    EVENT_COLUMNS,
    MOTION_COLUMNS,
    RUN_NAME_COLUMN,
    RecordLabels,
    RunNumbers,
    SessionLayout,
)
from realtime.stages.recorder_resume import complete_lines, tsv_rows

SCANS_COLUMNS = ("filename", "acq_time", RUN_NAME_COLUMN)


def _cell(value) -> str:
    """A TSV cell: BIDS writes a missing value as ``n/a``."""
    return "n/a" if value is None or value == "" else str(value)


class BidsTables:
    """The BIDS side of a session record, fed by the recorder stage.

    Parameters
    ----------
    out : the session folder.
    labels : the record's subject, session and task.
    resume : pick up the tables already in ``out`` (a restarted recorder).
    """

    def __init__(self, out: str | Path, labels: RecordLabels, *, resume: bool = False) -> None:
        self.layout = SessionLayout(out, labels)
        self.numbers = RunNumbers()
        self._files: dict[Path, object] = {}
        self._next_motion: dict[str, int] = {}
        self._named = False
        self._listed: set[str] = set()  # runs in scans.tsv
        self._trials: dict[int, set[str]] = {}  # trials in a run's _events.tsv (resumed runs)
        if resume and self.layout.dataset_description.exists():
            self._resume()
        else:
            write_dataset_files(self.layout)

    def _resume(self) -> None:
        """Take up the tables a previous recorder process wrote."""
        name = json.loads(self.layout.dataset_description.read_text()).get("Name", "")
        self._named = " of " in name  # named after the dataset by a run_start already
        complete_lines(self.layout.scans_tsv)
        self.numbers.numbers.update(self.layout.recorded_runs())
        self._listed = set(self.numbers.numbers)
        for run, number in self.numbers.numbers.items():
            events = tsv_rows(self.layout.events_tsv(number))
            self._trials[number] = {row.get("trial") for row in events}
            motion = complete_lines(self.layout.motion_tsv(number))
            if len(motion) > 1:
                self._next_motion[run] = len(motion) - 1

    def _append(self, path: Path, columns, values) -> None:
        """Append one row to ``path``, writing the header first if the file is new."""
        fh = self._files.get(path)
        if fh is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists() or path.stat().st_size == 0  # (killed before its header)
            fh = self._files[path] = open(path, "a")
            if new:
                fh.write("\t".join(columns) + "\n")
        fh.write("\t".join(_cell(v) for v in values) + "\n")
        fh.flush()

    def run_start(self, run: str, meta: dict) -> None:
        """A run starts: number it, list it in ``scans.tsv``, start its events table."""
        if not self._named and meta.get("dataset"):
            self._named = True
            write_dataset_files(self.layout, meta["dataset"])
        number = self.numbers.number(run)
        if run not in self._listed:
            self._listed.add(run)
            bold = self.layout.bold_gz(number).relative_to(self.layout.session_dir).as_posix()
            started = datetime.fromtimestamp(time.time()).isoformat(timespec="milliseconds")
            self._append(self.layout.scans_tsv, SCANS_COLUMNS, (bold, started, run))
        events = self.layout.events_tsv(number)
        if not events.exists():
            events.parent.mkdir(parents=True, exist_ok=True)
            events.write_text("\t".join(EVENT_COLUMNS) + "\n")

    def trial(self, run: str, index: int, meta: dict) -> None:
        """One trial as the pipeline used it, in the run's ``_events.tsv``."""
        number = self.numbers.number(run)
        if str(index) in self._trials.get(number, ()):
            return  # written by the previous recorder process
        row = (
            meta["onset"],
            meta["duration"],
            "image",
            meta["image_id"],
            meta.get("repetition"),
            meta.get("split"),
            index,
            meta.get("before_volume"),
        )
        self._append(self.layout.events_tsv(number), EVENT_COLUMNS, row)

    def motion(self, run: str, index: int, params, fd) -> None:
        """Volume ``index``'s head motion, in the run's motion table (row ``index``: rows of
        volumes that never reached the recorder are ``n/a``; a repeat is ignored)."""
        number = self.numbers.number(run)
        path = self.layout.motion_tsv(number)
        nxt = self._next_motion.get(run, 0)
        if index < nxt:
            return
        if nxt == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_motion_json(self.layout, number)
        for _ in range(nxt, index):
            self._append(path, MOTION_COLUMNS, [None] * len(MOTION_COLUMNS))
        values = [*list(params)[:6], fd]
        self._append(
            path, MOTION_COLUMNS, [None if v is None else f"{float(v):.5f}" for v in values]
        )
        self._next_motion[run] = index + 1

    def run_end(self, run: str) -> None:
        """A run's tables are closed at its end (opened again should a row of it still come)."""
        number = self.numbers.number(run)
        for path in (self.layout.events_tsv(number), self.layout.motion_tsv(number)):
            fh = self._files.pop(path, None)
            if fh is not None:
                fh.close()

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()
