"""The scanner source: volumes exported by the scanner console into a folder, in order, as runs.

Files are found and read by :class:`realtime.export_folder.ExportFolder` (Siemens mosaic or XA
enhanced DICOM, or NIfTI: :mod:`replay_data.scanner_files`).  This stage turns them into the
pipeline's messages, exactly as the replay source does: per run ``run_start``, then ``trial``
and ``volume`` messages merged in data time, then ``run_end``; ``end`` after the last run.

Order and runs
    Volumes are sent in instance order within their series, never in arrival order.  A run is
    one series: the first volume of a new series ends the current run and starts the next.  A
    run also ends when its expected volume count is reached (the design dataset's run length,
    or ``run_volumes``), or when no volume has come for ``run_timeout_s``.  A file of a series
    that already ended, or whose matrix is not the session's, is ignored with a log line naming
    it.
Missing volumes
    When later volumes are there but volume ``k`` is not (its file never came, or stayed broken),
    the source waits ``gap_wait_s`` and then goes on without it; the index jump is reported as
    lost volumes by the preprocess stage, and the source logs which file is missing.
Trials
    Come from a design dataset's events (the runs of ``dataset`` in ``runs`` order map to the
    scanner's runs in order), sent when the data time of the next volume reaches their onset;
    with ``markers``, from the stimulus program's LSL markers instead
    (:mod:`realtime.stages.scanner_markers`).
Record
    With ``record_dir`` and ``record_labels``, each run's received volumes are written as they
    come to the record's BIDS bold file (:mod:`realtime.volume_record`), after they are sent on.
Latency
    ``source.acquired`` is the time the console finished writing the volume's file (its mtime),
    so the end-to-end latency includes finding and reading it; ``source.read`` is when it had
    been read.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from realtime.export_folder import ExportFolder
from realtime.stages.scanner_control import ScannerControlMixin
from realtime.stages.scanner_markers import ScannerMarkersMixin
from realtime.stages.scanner_runs import (
    EarlyVolumes,
    ScannerRun,
    grid_mismatch,
    plan_run,
    run_start_of,
    session_grid,
    skip_released,
)
from realtime.stages.source_control import SourceStage, trial_message
from rt_base.checks import check_number
from rt_base.errors import ConfigError
from rt_wire.message import Message
from rt_wire.volume import volume_payload


class ScannerSource(ScannerControlMixin, ScannerMarkersMixin, SourceStage):
    """Streams the volumes a scanner exports into ``folder``.

    Parameters
    ----------
    folder : the scanner's export folder.
    dataset : a replay dataset (path) whose runs give the design (trial events) and expected
        run lengths, and whose grid the volumes must have; None: no trials, any grid.
    runs : the dataset's runs, in the order the scanner acquires them (default: all).
    run_name : the name of the first run when there is no dataset (default ``series-NNN``).
    run_volumes : volumes per run (default: the dataset run's length; else unknown and the
        run ends with the next series or ``run_timeout_s``).
    max_volumes : end each run after this many volumes (tests, demos).
    poll : polling observer instead of inotify (network shares).
    poll_interval_s, settle_s, broken_after_s, include_existing : see
        :class:`~realtime.export_folder.ExportFolder`.
    gap_wait_s : how long a missing volume is waited for once later ones are there (default 2 TR).
    run_timeout_s : a run with no new volume for this long ends (default max(10 s, 6 TR)).
    idle_timeout_s : after a run ended, the session ends when no new series starts in this
        long (it also ends when every design run is done, or on the operator's stop).
    record_dir : the session folder.
    record_labels : the record's BIDS ``subject``, ``session`` and ``task``: with them and
        ``record_dir``, the received volumes are written to the record.
    markers : ``lsl`` or ``lsl:NAME``: trial events from the stimulus program's LSL markers
        instead of the design's ``events.tsv``; ``markers_wait_s``: how long to look for them.
    control_addr : the operator's control channel (:mod:`realtime.stages.source_control`).
    """

    def __init__(
        self,
        folder: str,
        *,
        dataset: str | None = None,
        runs: list[str] | None = None,
        run_name: str | None = None,
        run_volumes: int | None = None,
        max_volumes: int | None = None,
        poll: bool = False,
        poll_interval_s: float = 0.1,
        settle_s: float = 0.05,
        broken_after_s: float = 5.0,
        include_existing: bool = True,
        gap_wait_s: float | None = None,
        run_timeout_s: float | None = None,
        idle_timeout_s: float = 60.0,
        record_dir: str | None = None,
        record_labels: dict | None = None,
        markers: str | None = None,
        markers_wait_s: float = 120.0,
        control_addr: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(control_addr=control_addr, **kwargs)
        self.folder = ExportFolder(
            folder,
            poll=poll,
            poll_interval_s=poll_interval_s,
            settle_s=settle_s,
            broken_after_s=broken_after_s,
            include_existing=include_existing,
        )
        self.design = None
        self.design_runs: list[str] = []
        if dataset is not None:
            from replay_data.dataset_reader import ReplayDataset

            self.design = ReplayDataset.open(dataset)
            known = list(self.design.runs)
            bad = [r for r in runs or [] if r not in known]
            if bad:
                raise ConfigError(f"'runs' must name runs of the dataset {known}, got {bad}")
            self.design_runs = list(runs) if runs else known
        elif runs:
            raise ConfigError("'runs' names design runs: give the design dataset too")
        if run_name is not None and (not isinstance(run_name, str) or not run_name.strip()):
            raise ConfigError(f"'run' must be a non-empty run name, got {run_name!r}")
        self.run_name = run_name
        for key, value in (("run_volumes", run_volumes), ("max_volumes", max_volumes)):
            if value is not None:
                check_number(value, key, minimum=1, integer=True)
        self.run_volumes, self.max_volumes = run_volumes, max_volumes
        for key, value in (("gap_wait", gap_wait_s), ("run_timeout", run_timeout_s)):
            if value is not None:
                check_number(value, key, minimum=0.01, maximum=3600, unit="seconds")
        self.gap_wait_s, self.run_timeout_s = gap_wait_s, run_timeout_s
        self.idle_timeout_s = check_number(
            idle_timeout_s, "idle_timeout", minimum=0.1, maximum=24 * 3600, unit="seconds"
        )
        from realtime.volume_record import open_volume_record

        self.volume_record = open_volume_record(record_dir, record_labels, self.notice)
        self._init_markers(markers, markers_wait_s, record_dir)
        self.run: ScannerRun | None = None
        self.finished: dict[int, str] = {}  # series -> run name
        self.early = EarlyVolumes()  # (no design) read before their series' volume 1
        self.counts = dict.fromkeys(
            ("volumes", "files_broken", "files_rejected", "files_ignored", "volumes_missing"), 0
        )
        self.paused = False
        self.halted = False
        self._idle_since = time.monotonic()

    @classmethod
    def from_options(cls, links: dict, *, folder: str, **options) -> ScannerSource:
        """Build from a spec: ``folder`` and the options of the class (JSON values)."""
        return cls(folder, **options, **links)

    #: what ``**options`` takes: the constructor's keyword options, read from its signature
    extra_spec_options = tuple(
        p.name for p in inspect.signature(__init__).parameters.values() if p.kind is p.KEYWORD_ONLY
    )

    def handle(self, msg: Message):  # a source has no input
        return ()

    # -- producing ---------------------------------------------------------------------------
    def produce(self) -> Iterator[Message]:
        messages = self._after_released(self._produce())
        if self.volume_record is None:
            return messages
        return self.volume_record.tap(messages)  # recorded after they are sent

    def _after_released(self, messages: Iterator[Message]) -> Iterator[Message]:
        """A restarted source (incarnation > 0) reads the folder again but sends only what comes
        after the last run its downstream released (docs/interfaces.md, "Restarts")."""
        order = self.design_runs or None  # the runs in order, when a design names them
        done = self.recovery.resume_point(self._stop.is_set, self._pub, order)  # None: first
        if done is None:
            yield from messages
            return
        if self.volume_record is not None:  # the BIDS numbers of the runs on record
            self.volume_record.numbers.numbers.update(self.volume_record.layout.recorded_runs())
        self.report("warning", f"restarted: reading the folder again, sending after run {done!r}")
        yield from skip_released(messages, done, self.counts)

    def _produce(self) -> Iterator[Message]:
        self._open_markers()
        self.folder.start()
        how = f"polling every {self.folder.poll_interval_s:g} s" if self.folder.poll else "events"
        self.report("info", f"watching {self.folder.folder} for the scanner's volumes ({how})")
        try:
            while not self._stop.is_set():
                self.flush_notices()
                self._maybe_status()
                yield from self._take(self.folder.check())
                if not self.paused:
                    yield from self._poll_markers()
                    yield from self._send_ready()
                if self._session_over():
                    break
                self.folder.wait(0.02)
            if self.run is not None and not self._stop.is_set():
                yield from self._end_run("the session ended")
        finally:
            self.folder.stop()
            self._close_markers()
        if self._stop.is_set():
            return
        self.flush_notices()
        meta = {"runs": list(self.finished.values()), "input": "scanner"}
        if self.halted:
            meta["stopped"] = True
        yield Message("end", meta=meta, t={"source.sent": time.time()})

    def _take(self, report) -> Iterator[Message]:
        for path, reason in report.rejected:
            self.counts["files_rejected"] += 1
            self.notice("warning", f"file {path.name} is not a scanner volume: skipped ({reason})")
        for path, reason in report.broken:
            self.counts["files_broken"] += 1
            self.notice(
                "error",
                f"file {path.name} stayed incomplete: skipped, its volume is lost ({reason})",
            )
        for vol, completed, read in sorted(report.volumes, key=lambda v: (v[0].series, v[0].index)):
            yield from self._accept(vol, (completed, read))

    def _accept(self, vol, times: tuple[float, float], early=False) -> Iterator[Message]:
        if vol.series in self.finished:
            self._ignore(vol, f"its series {vol.series} ({self.finished[vol.series]}) has ended")
            return
        if self.run is not None and vol.series != self.run.series:
            if vol.series < self.run.series:
                self._ignore(
                    vol, f"series {vol.series} is older than the current {self.run.series}"
                )
                return
            yield from self._end_run(f"series {vol.series} started")
        if self.run is None:
            if self.design is not None and len(self.finished) >= len(self.design_runs):
                self._ignore(vol, "every run of the design has been acquired")
                return
            if self.design is None and int(vol.index) > 1 and not early:
                self.early.hold(vol, times)  # the grid is its series' volume 1's
                return
            if not self._grid_ok(vol):
                return
            try:
                start = self._start_run(vol)
            except ConfigError as err:  # e.g. no TR in the file and no design to give one
                self._ignore(vol, str(err))
                return
            yield start
            for held, held_times in self.early.take():  # now on the run's grid, or ignored
                yield from self._accept(held, held_times, early=True)
        elif not self._grid_ok(vol):
            return
        run = self.run
        index = int(vol.index) - 1
        if index < run.next_index or index in run.buffer:
            self._ignore(vol, f"volume {vol.index} of series {vol.series} was already received")
            return
        run.buffer[index] = (vol, times)
        run.last_volume = time.monotonic()

    def _grid_ok(self, vol) -> bool:
        why = grid_mismatch(vol, *session_grid(self.run, self.design, vol))
        if why:
            self._ignore(vol, why)
        return not why

    def _ignore(self, vol, why: str) -> None:
        self.counts["files_ignored"] += 1
        self.notice("warning", f"file {Path(vol.path).name} ignored: {why}")

    def _start_run(self, vol) -> Message:
        plan = plan_run(
            vol,
            self.design,
            self.design_runs[len(self.finished)] if self.design is not None else None,
            first=not self.finished,
            run_name=self.run_name,
            run_volumes=self.run_volumes,
            max_volumes=self.max_volumes,
        )
        if plan.warning:
            self.notice("warning", plan.warning)
        name, tr, expected, events = plan.name, plan.tr, plan.expected, plan.events
        shape, affine = session_grid(None, self.design, vol)
        self.run = ScannerRun(
            name, int(vol.series), float(tr), tuple(shape), np.asarray(affine), expected
        )
        if self.markers is None:
            self.run.events = events
        else:
            self.markers.begin_run(name, tr)
        self.notice("info", f"run {name}: series {vol.series} from {self.folder.folder}")
        trials = {"n_trials": len(events)} if self.markers is None else {"trials_from": "markers"}
        return run_start_of(self.run, vol, self.folder.folder, self.design, **trials)

    def _send_ready(self) -> Iterator[Message]:
        if self.run is None and self.early.due(self.gap_wait_s):  # no volume 1 came
            for vol, times in self.early.take():
                yield from self._accept(vol, times, early=True)
        run = self.run
        if run is None:
            return
        now = time.monotonic()
        yield from self._send_in_order(now, self.gap_wait_s or 2 * run.tr)
        if run.expected is not None and run.next_index >= run.expected:
            yield from self._end_run(None)
            return
        timeout = self.run_timeout_s or max(10.0, 6 * run.tr)
        if not run.buffer and now - run.last_volume > timeout:
            yield from self._end_run(f"no volume for {timeout:g} s")

    def _send_in_order(self, now: float, wait_s: float) -> Iterator[Message]:
        """Send the buffered volumes in index order, up to the run's expected length; a volume
        missing while later ones are here is given up once they have waited ``wait_s`` (0: at
        once, when the series is over)."""
        run = self.run
        while run.buffer and (run.expected is None or run.next_index < run.expected):
            if run.next_index in run.buffer:
                yield from self._send_volume(*run.buffer.pop(run.next_index))
                run.hole_since = None
                continue
            run.hole_since = run.hole_since or now
            if now - run.hole_since < wait_s:
                return
            self._missing(run.next_index)
            run.next_index += 1
            run.hole_since = now

    def _missing(self, index: int) -> None:
        self.counts["volumes_missing"] += 1
        pending = ", ".join(p.name for p in self.folder.pending) or "none"
        self.notice(
            "error",
            f"run {self.run.name}: volume {index + 1} of series {self.run.series} never arrived "
            f"complete: going on without it (files still incomplete: {pending})",
        )

    def _send_volume(self, vol, times: tuple[float, float]) -> Iterator[Message]:
        run = self.run
        k = run.next_index
        if self.markers is None:
            yield from self._send_events_until(k * run.tr)
        else:
            yield from self._marker_trials_before(k, times[0])
        self.counts["volumes"] += 1
        run.next_index = k + 1
        data, scale = volume_payload(vol.stored, vol.slope, vol.intercept)  # as stored
        meta = {
            "time": k * run.tr,
            "acquisition_time": vol.acquisition_time,
            "file": Path(vol.path).name,
            **scale,
        }
        yield Message(
            "volume",
            run=run.name,
            index=k,
            meta=meta,
            t={"source.acquired": times[0], "source.read": times[1]},
            buffers={"volume": data},
        )

    def _send_events_until(self, data_time: float) -> Iterator[Message]:
        run = self.run
        while run.next_event < len(run.events) and run.events[run.next_event].onset <= data_time:
            yield trial_message(run.name, run.events[run.next_event], time.time(), run.next_index)
            run.next_event += 1

    def _end_run(self, why: str | None) -> Iterator[Message]:
        run = self.run
        if not self.halted:  # the series is over: send what came, in order
            yield from self._send_in_order(time.monotonic(), 0.0)
        n_volumes = run.expected if run.expected is not None else run.next_index
        if self.markers is not None:  # the program's trials up to the run's end
            yield from self._marker_trials_at_end(n_volumes * run.tr - 1e-9)
        elif run.expected is not None:  # the design's trials of volumes never sent
            yield from self._send_events_until(run.expected * run.tr - 1e-9)
        meta = {"n_volumes": n_volumes, **self._markers_run_end(n_volumes)}
        if self.halted:
            meta.update(stopped=True, n_volumes_sent=run.next_index)
        if why:
            self.notice("info", f"run {run.name} ended: {why}")
        self.finished[run.series] = run.name
        self.run = None
        self._idle_since = time.monotonic()
        yield Message("run_end", run=run.name, meta=meta, t={"source.sent": time.time()})
