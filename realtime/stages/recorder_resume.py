"""A restarted recorder picks its record up where the killed one left it.

The session folder is the recording, so a recorder process started again by the launcher
(incarnation > 0) rebuilds what it kept in memory from its own files, and its upstream sends it
again everything it had not released (its current run, from the ``run_start``; see
docs/interfaces.md, "Restarts").  What is already on disk is not written again, file by file, so
a message the killed process had written only in part (``kill -9`` between two of its files) is
completed and each row is in the record exactly once:

==========================  =============================================================
runs/RUN_info.json          the run table's entry (written at ``run_start`` and ``run_end``)
runs/RUN_tr.tsv             the volumes received (the count) and the rows written; the
                            ``_raw.f32`` is cut to as many rows (its last one may have been
                            written alone) before the first new row
runs/RUN_bad.tsv            the bad volumes written
events.tsv                  the trials (the count) and rows written, by run and trial
retrievals.tsv, recons.tsv  the rows written and the session-wide trial numbers NNNN
timing.jsonl                the lines written, by kind, run and index
gaps.jsonl                  the gaps (the list) and lines written, by what they say
==========================  =============================================================

The BIDS tables pick themselves up (:meth:`realtime.stages.recorder_bids.BidsTables`).  A last
line that a crash cut in the middle is cut off its file.  Not carried over: the counters and the
disk-failure figures of the killed process (``recorder.json`` has the last process's).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rt_base import atomic

__all__ = ["ResumedRecord", "complete_lines", "gap_key", "run_info_path", "write_run_info"]

#: the run table's fields kept in ``runs/RUN_info.json`` (``received`` is counted from the rows)
RUN_INFO_FIELDS = ("n_volumes", "tr", "n_trials", "started", "ended", "stopped", "n_voxels")


def run_info_path(out: Path, run: str) -> Path:
    return out / "runs" / f"{run}_info.json"


def write_run_info(out: Path, run: str, entry: dict) -> None:
    """Keep a run's entry of the run table on disk (atomically), for a restarted recorder."""
    atomic.write_json(run_info_path(out, run), {k: entry[k] for k in RUN_INFO_FIELDS if k in entry})


def complete_lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (none when it does not exist); a last line without its
    newline (cut by a crash) is cut off the file, so that the next one starts on its own line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        os.truncate(path, end)
    return data[:end].decode(errors="replace").splitlines()


def tsv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a TSV file with a header line, as dicts."""
    lines = complete_lines(path)
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]


def gap_key(record: dict) -> str:
    """What makes a ``gaps.jsonl`` record unique: all it says but when and by which sender."""
    return json.dumps(
        {k: v for k, v in record.items() if k not in ("time", "sender")}, sort_keys=True
    )


class ResumedRecord:
    """What a recorder's files hold already; empty for a recorder's first process.

    Parameters
    ----------
    out : the session folder.
    resume : read the folder (a restarted recorder); False: start empty.
    """

    def __init__(self, out: Path, *, resume: bool = False) -> None:
        self.out = Path(out)
        self.runs: dict[str, dict] = {}
        self.numbers: dict[tuple[str, int], int] = {}
        self.n_trials = self.n_retrievals = self.n_recons = 0
        self.gaps: list[dict] = []
        self._lines: dict[str, set] = {}
        self._raw_rows: dict[str, int] = {}  # runs whose _raw.f32 may need cutting
        if resume:
            self._read()

    def has(self, name: str, key) -> bool:
        """Whether file ``name`` (relative to the session folder) holds the row ``key``."""
        keys = self._lines.get(name)
        return keys is not None and key in keys

    def received(self, run: str) -> int:
        """The volumes of ``run`` already in its ``_tr.tsv``."""
        return len(self._lines.get(f"runs/{run}_tr.tsv", ()))

    def trim_raw(self, run: str, row_bytes: int) -> None:
        """Before a run's first new raw row: cut ``_raw.f32`` to the rows ``_tr.tsv`` lists."""
        rows = self._raw_rows.pop(run, None)
        path = self.out / "runs" / f"{run}_raw.f32"
        if rows is not None and path.exists() and path.stat().st_size > rows * row_bytes:
            os.truncate(path, rows * row_bytes)

    # -- reading the folder --------------------------------------------------------------------
    def _read(self) -> None:
        runs_dir = self.out / "runs"
        for info in sorted(runs_dir.glob("*_info.json")):
            run = info.name[: -len("_info.json")]
            self.runs[run] = {**json.loads(info.read_text()), "received": 0, "meta": {}}
        for tr in sorted(runs_dir.glob("*_tr.tsv")):
            run = tr.name[: -len("_tr.tsv")]
            indices = {int(r["index"]) for r in tsv_rows(tr)}
            self._lines[f"runs/{run}_tr.tsv"] = indices
            self._raw_rows[run] = len(indices)
            if run in self.runs:
                self.runs[run]["received"] = len(indices)
        for bad in runs_dir.glob("*_bad.tsv"):
            self._lines[f"runs/{bad.name}"] = {int(r["index"]) for r in tsv_rows(bad)}
        events = {(r["run"], int(r["trial"])) for r in tsv_rows(self.out / "events.tsv")}
        self._lines["events.tsv"], self.n_trials = events, len(events)
        for name in ("retrievals.tsv", "recons.tsv"):
            rows = tsv_rows(self.out / name)
            self._lines[name] = {(r["run"], int(r["trial"])) for r in rows}
            for r in rows:
                self.numbers[(r["run"], int(r["trial"]))] = int(r["n"])
        self.n_retrievals = len(self._lines["retrievals.tsv"])
        self.n_recons = len(self._lines["recons.tsv"])
        timing = set()
        for line in complete_lines(self.out / "timing.jsonl"):
            row = json.loads(line)
            timing.add((row["kind"], row["run"], row["index"]))
        self._lines["timing.jsonl"] = timing
        self.gaps = [json.loads(x) for x in complete_lines(self.out / "gaps.jsonl")]
        self._lines["gaps.jsonl"] = {gap_key(g) for g in self.gaps}
