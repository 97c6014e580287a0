"""A source's trial events from the stimulus program's markers (``--markers lsl[:NAME]``).

Both sources use :class:`MarkerEvents` the same way: :meth:`~MarkerEvents.begin_run` when a run
starts, :meth:`~MarkerEvents.poll` often, :meth:`~MarkerEvents.volume` for each volume sent,
:meth:`~MarkerEvents.trials_until` before each volume (the trials whose onset its data time has
reached, as a replay of ``events.tsv`` sends them; :meth:`~MarkerEvents.trial_messages` gives them
as ``trial`` messages, a late marker's flagged), :meth:`~MarkerEvents.end_run` at its end.

Which run a marker belongs to
    Markers go to the source's current run.  Markers that come while no run is streaming, or
    after the program's ``run_stop``, or from a second ``run_start`` of the program, are held
    for the next run (the program may start its next run before the source has ended this one).
Refused markers
    A malformed sample (:mod:`replay_data.marker_schema`) is logged and counted ``malformed``;
    a well-formed one that cannot be used (a trial before the run's first volume, a trial
    number used twice, a trial without onset at replay speed 0) is logged and counted
    ``refused``.  Neither stops the source.
Record
    With ``record_dir``, every sample is appended to ``markers.tsv`` as received (LSL timestamp,
    correction, session time, what became of it) and ``markers.json`` holds each run's clock
    and counts (:mod:`realtime.summary_markers` reads it).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from realtime.marker_clock import RunClock
from realtime.stages.source_control import trial_message
from replay_data.dataset_format import Event
from rt_base import atomic

#: an image's duration when neither the marker nor the design gives one: NSD's 3 s
DEFAULT_DURATION_S = 3.0
MARKER_COLUMNS = ("received", "lsl_time", "correction", "time", "run", "status", "marker")


class _Run:
    """What the markers have said about the run being streamed."""

    def __init__(self, name: str, clock) -> None:
        self.name = name
        self.clock = clock
        self.program_started = False
        self.program_stopped = False
        self.untimed: list = []  # (session time, TrialMarker) waiting for the clock
        self.ready: list[Event] = []  # timed trials not yet sent, in arrival order
        self.numbers: set[int] = set()
        self.latest_onset = -math.inf
        self.counts = Counter()


class MarkerEvents:
    """Trial events from a marker inlet, timed on the session clock.

    Parameters
    ----------
    inlet : a :class:`realtime.lsl_markers.MarkerInlet` (opened), or anything with ``pull()``.
    speed : replay speed (1 for a scanner); at 0 trial markers must carry their onsets.
    design : a replay dataset whose image splits and trial durations fill in what a trial
        marker leaves out (None: split ``unknown``, duration 3 s).
    notice : ``notice(level, text)``: the source's log for the operator.
    record_dir : the session folder (``markers.tsv``, ``markers.json``); None: not recorded.
    clock : ``clock(tr)`` makes a run's clock (default a replay's
        :class:`~realtime.marker_clock.RunClock` at ``speed``; a scanner's is
        :class:`~realtime.marker_clock.LiveRunClock`).
    """

    def __init__(
        self, inlet, *, speed=1.0, design=None, notice=None, record_dir=None, clock=None
    ) -> None:
        self.inlet = inlet
        self.speed = float(speed)
        self.make_clock = clock or (lambda tr: RunClock(tr, self.speed))
        self.notice = notice or (lambda level, text: None)
        self.record_dir = None if record_dir is None else Path(record_dir)
        self.splits: dict[int, str] = {}
        self.duration = DEFAULT_DURATION_S
        if design is not None:
            from replay_data.dataset_format import SPLITS

            self.splits = {int(i): s for s in SPLITS for i in design.image_ids(s)}
            durations = [e.duration for r in design.runs for e in design.events(r)]
            self.duration = float(sorted(durations)[len(durations) // 2]) if durations else 3.0
        self.run: _Run | None = None
        self.held: list = []
        self.shown: Counter = Counter()
        self.counts = Counter()
        self.runs_done: dict[str, dict] = {}
        self._tsv = None

    # -- the run -----------------------------------------------------------------------------
    def begin_run(self, name: str, tr: float) -> None:
        """Run ``name`` starts streaming: held markers are applied to it."""
        self.run = _Run(name, self.make_clock(tr))
        held, self.held = self.held, []
        starts = [i for i, m in enumerate(held) if m.marker and m.marker.type == "run_start"]
        if starts and starts[0]:  # before the program's run_start: its previous run's, late
            for item in held[: starts[0]]:
                self._count(None, "refused")
                self._record(item, "refused: came after its run ended")
            self.notice("warning", f"{starts[0]} marker(s) came after their run ended: ignored")
            held = held[starts[0] :]
        for item in held:
            self._take(item)

    @property
    def program_started(self) -> bool:
        """Whether the program's ``run_start`` for the current run has come."""
        return self.run is not None and self.run.program_started

    @property
    def waiting_run_start(self) -> bool:
        """Whether a held ``run_start`` waits for the next run (a replay starts it then)."""
        return any(m.marker is not None and m.marker.type == "run_start" for m in self.held)

    def poll(self) -> None:
        """Pull what came and apply (or hold) it."""
        for item in self.inlet.pull():
            self.counts["received"] += 1
            self._take(item)

    def volume(self, index: int, t: float) -> None:
        """Volume ``index`` of the run was acquired (replay: sent) at session time ``t``."""
        self.run.clock.volume(index, t)
        self._time_untimed()

    def covered(self) -> float:
        """The data time up to which the program's trials are known (a replay at speed 0 waits
        for it): the latest onset received, or infinity once the program stopped the run."""
        run = self.run
        return math.inf if run.program_stopped else run.latest_onset

    def trials_until(self, data_time: float) -> list[Event]:
        """The run's trials with onset <= ``data_time`` not yet sent, in onset order."""
        run = self.run
        self._time_untimed()
        due = sorted((e for e in run.ready if e.onset <= data_time), key=lambda e: e.onset)
        run.ready = [e for e in run.ready if e.onset > data_time]
        run.counts["trials"] += len(due)
        self.counts["trials"] += len(due)
        return due

    def trial_messages(self, data_time: float, next_index: int, tr: float, now: float):
        """:meth:`trials_until` ``data_time`` as ``trial`` messages sent before the run's volume
        ``next_index``.  A trial whose onset a volume already sent reached (its marker came
        late) is flagged ``late`` / ``late_s`` and told (:meth:`note_late`)."""
        sent = (next_index - 1) * tr  # the data time of the last volume sent
        for event in self.trials_until(data_time):
            msg = trial_message(self.run.name, event, now, next_index)
            if next_index > 0 and event.onset <= sent:
                msg.meta.update(late=True, late_s=round(sent - event.onset, 6))
                self.note_late(event, sent - event.onset)
            yield msg

    def note_late(self, event: Event, behind_s: float) -> None:
        """The source sent ``event`` after volumes at or past its onset (its marker came late):
        counted, and told to the operator."""
        self._count(self.run, "late")
        self.notice(
            "warning",
            f"run {self.run.name}: trial {event.trial} (image {event.image_id}) came "
            f"{behind_s:.2f} s of data after its onset: sent late, decoded when it can be",
        )

    def finish_run(self) -> None:
        """The run's volumes are over: trials waiting for a later anchor get their onsets."""
        close = getattr(self.run.clock, "close", None)
        if close is not None:
            close()
        self._time_untimed()

    def end_run(self, n_volumes: int | None) -> dict:
        """The run is over: its markers' figures (also for ``run_end``'s meta); the trials of
        it not sent are dropped with a notice."""
        run = self.run
        self._time_untimed()
        late = run.ready + [m for _, m in run.untimed]
        if late:
            run.counts["refused"] += len(late)
            self.notice("warning", f"run {run.name}: {len(late)} trial marker(s) past its end")
        own = run.counts["own_onset"] and run.counts["own_onset"] >= run.counts["trials"]
        clock = "onsets" if own else run.clock.source
        info = {
            "clock": clock,
            "program_run_start": run.program_started,
            "program_run_stop": run.program_stopped,
            "triggers": run.clock.triggers,
            "n_volumes": n_volumes,
            **{k: int(run.counts[k]) for k in ("trials", "late", "malformed", "refused")},
        }
        self.runs_done[run.name] = info
        self.run = None
        self._write_summary()
        return info

    def close(self) -> None:
        if self._tsv is not None:
            self._tsv.close()
            self._tsv = None

    # -- applying markers --------------------------------------------------------------------
    def _take(self, item) -> None:
        run, marker = self.run, item.marker
        if marker is None:
            self._count(run, "malformed")
            self._record(item, "malformed: " + item.error)
            self.notice("warning", f"malformed marker {item.raw[:80]!r} ignored: {item.error}")
            return
        second_start = marker.type == "run_start" and run is not None and run.program_started
        if run is None or run.program_stopped or second_start or self.held:
            self.held.append(item)  # for the next run, in order
            return
        status = getattr(self, f"_on_{marker.type}")(run, marker, item.time)
        if status.startswith("refused"):
            self._count(run, "refused")
            self.notice("warning", f"run {run.name}: marker {item.raw[:80]!r} {status}")
        self._record(item, status)

    def _count(self, run, key: str) -> None:
        self.counts[key] += 1
        if run is not None:
            run.counts[key] += 1

    def _on_run_start(self, run: _Run, marker, t: float) -> str:
        run.program_started = True
        self.counts["run_starts"] += 1
        if marker.run and marker.run != run.name:
            self.notice("info", f"the program's run {marker.run!r} is streamed as run {run.name}")
        return "ok"

    def _on_run_stop(self, run: _Run, marker, t: float) -> str:
        if not run.program_started and self.counts["run_starts"]:
            # a program that starts its runs has not started this one: the stop of its last
            # run, which a scanner's next series overtook
            return "ignored: the stop of the program's previous run, after this run began"
        run.program_stopped = True
        return "ok"

    def _on_trigger(self, run: _Run, marker, t: float) -> str:
        run.clock.trigger(t, marker.volume)
        self.counts["triggers"] += 1
        self._time_untimed()
        return "ok"

    def _on_trial(self, run: _Run, marker, t: float) -> str:
        if marker.onset is None and not self.speed:
            return "refused: at replay speed 0 a trial marker must carry its 'onset'"
        if marker.trial is not None and marker.trial in run.numbers:
            return f"refused: trial {marker.trial} of the run was already received"
        number = marker.trial if marker.trial is not None else _next_free(run.numbers)
        run.numbers.add(number)
        run.untimed.append((t, marker, number))
        self._time_untimed()
        return "ok"

    def _time_untimed(self) -> None:
        """Give the run's waiting trials their onsets (their own, or from the clock)."""
        run = self.run
        if run is None:
            return
        waiting = []
        for t, marker, number in run.untimed:
            if marker.onset is None and not run.clock.final(t):
                waiting.append((t, marker, number))
                continue
            onset = marker.onset if marker.onset is not None else run.clock.onset(t)
            if onset < 0:
                run.counts["refused"] += 1
                self.counts["refused"] += 1
                self.notice(
                    "warning",
                    f"run {run.name}: trial of image {marker.image_id} refused: its onset "
                    f"{onset:.3f} s is before the run's first volume",
                )
                continue
            run.counts["own_onset"] += marker.onset is not None
            run.ready.append(self._event(marker, number, onset))
            run.latest_onset = max(run.latest_onset, onset)
        run.untimed = waiting

    def _event(self, marker, number: int, onset: float) -> Event:
        image = int(marker.image_id)
        self.shown[image] += 1
        return Event(
            onset=float(onset),
            duration=self.duration if marker.duration is None else float(marker.duration),
            image_id=image,
            repetition=marker.repetition or self.shown[image],
            split=marker.split or self.splits.get(image, "unknown"),
            trial=int(number),
        )

    # -- the record --------------------------------------------------------------------------
    def _record(self, item, status: str) -> None:
        if self.record_dir is None:
            return
        if self._tsv is None:
            path = self.record_dir / "markers.tsv"
            new = not path.exists()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._tsv = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            if new:
                self._tsv.write("\t".join(MARKER_COLUMNS) + "\n")
        run = "" if self.run is None else self.run.name
        raw = item.raw.replace("\t", " ").replace("\n", " ")
        values = (item.received, item.lsl_time, item.correction, item.time)
        fields = [f"{v:.6f}" for v in values] + [run, status.replace("\t", " "), raw]
        self._tsv.write("\t".join(fields) + "\n")
        self._tsv.flush()

    def _write_summary(self) -> None:
        if self.record_dir is None:
            return
        info = getattr(self.inlet, "info", {}) or {}
        data = {"stream": info, "counts": dict(self.counts), "runs": self.runs_done}
        atomic.write_json(self.record_dir / "markers.json", json.loads(json.dumps(data)))


def _next_free(numbers: set[int]) -> int:
    n = len(numbers)
    while n in numbers:
        n += 1
    return n
