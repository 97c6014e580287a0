"""``mindeye-rt stim-sim``: a stand-in stimulus program that speaks LSL as a lab's would.

It sends a replay dataset's trials as markers (:mod:`replay_data.marker_schema`) at the events'
times, and prints the results the session sends back (:mod:`realtime.lsl_results`).  Beside
``mindeye-rt stream --replay X --markers lsl:NAME`` it drives the replay: per run it sends
``run_start`` (the replay starts the run then), one ``trial`` marker per event at its onset
(``TR / speed`` pacing, as the replay's), and ``run_stop`` once the run's volumes are over.  At
speed 0 it has no clock to keep: it sends each run's markers at once, each trial with its
``onset``, and the replay merges them with its volumes by data time.

Beside ``mindeye-rt scanner-sim`` and ``stream --scanner DIR --markers lsl:NAME`` (``scanner``:
the export folder), it acts as a program at the scanner: each run starts at its series' first
volume (:mod:`realtime.stim_sim_scanner`), and from that acquisition's start it sends a
``trigger`` per volume (the scanner's '5' key presses forwarded; ``triggers=False``: none, the
session then times trials by the volumes' files) and the trials at their onsets, each stamped
with its scheduled time; at speed 0 (scanner-sim writing as fast as it can) the trials carry
their onsets.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from realtime.lsl_results import DEFAULT_PREFIX, RESULTS_TYPE, check_results_prefix
from realtime.pacing import Pacer
from replay_data.marker_schema import (
    RunStartMarker,
    RunStopMarker,
    TrialMarker,
    TriggerMarker,
    encode_marker,
)
from rt_base.checks import check_number
from rt_base.errors import ConfigError, StageError

__all__ = ["DEFAULT_MARKERS_NAME", "StimulusSimulator"]

DEFAULT_MARKERS_NAME = "mindeye-rt-stim-sim"


class StimulusSimulator:
    """Sends a dataset's trials as LSL markers and collects the results that come back.

    Parameters
    ----------
    dataset : the :class:`~replay_data.dataset_reader.ReplayDataset` whose runs are shown.
    runs : the runs, in order (default: all).
    speed : 1 real time, 0 as fast as possible (the replay's ``--speed``).
    max_volumes : runs end after this many volumes (the replay's ``--max-volumes``).
    name : the marker stream's name (``--markers lsl:NAME`` finds it).
    results : the result streams' prefix (``--lsl-results``); None: results are not read.
    wait_s : how long to wait for the session's marker inlet and, at the end, for results.
    log : where lines go.
    scanner : the scanner's export folder: each run starts at its series' first volume.
    triggers : with ``scanner``, forward a trigger marker per volume.
    """

    def __init__(
        self,
        dataset,
        *,
        runs: list[str] | None = None,
        speed: float = 1.0,
        max_volumes: int | None = None,
        name: str = DEFAULT_MARKERS_NAME,
        results: str | None = DEFAULT_PREFIX,
        wait_s: float = 120.0,
        log: Callable[[str], None] = print,
        scanner: str | Path | None = None,
        triggers: bool = True,
    ) -> None:
        self.dataset = dataset
        known = list(dataset.runs)
        bad = [r for r in runs or [] if r not in known]
        if bad:
            raise ConfigError(f"'runs' must name runs of the dataset {known}, got {bad}")
        self.runs = list(runs) if runs else known
        self.speed = check_number(speed, "speed", minimum=0.0)
        if max_volumes is not None:
            max_volumes = check_number(max_volumes, "max_volumes", minimum=1, integer=True)
        self.max_volumes = max_volumes
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"'name' must be the marker stream's name, got {name!r}")
        self.name = name
        self.results_prefix = None if results is None else check_results_prefix(results, "results")
        self.wait_s = check_number(wait_s, "wait", minimum=0.1, unit="seconds")
        self.log = log
        self.scanner = None if scanner is None else Path(scanner).expanduser()
        self.triggers = bool(triggers) and self.scanner is not None and bool(self.speed)
        self._series = 0  # the last series started (scanner)
        self._offset = 0.0  # wall clock - LSL clock
        self.stop = threading.Event()
        self.sent: list[dict] = []  # the trials sent: run, trial, image_id, onset
        self.received: list[dict] = []  # the results read back (JSON objects)
        self._outlet = None
        self._results_open = threading.Event()

    def run(self) -> list[dict]:
        """Send every run's markers, then wait for every trial's result; returns the results."""
        import pylsl

        host = socket.gethostname()
        info = pylsl.StreamInfo(
            self.name, "Markers", 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{self.name}@{host}"
        )
        self._outlet = pylsl.StreamOutlet(info)
        from realtime.marker_clock import clock_offset

        self._offset = clock_offset(pylsl.local_clock)
        reader = None
        if self.results_prefix is not None:
            reader = threading.Thread(target=self._read_results, name="stim-sim-results")
            reader.daemon = True
            reader.start()
        self.log(f"marker stream {self.name!r} (type Markers) is up; waiting for the session")
        if not self._outlet.wait_for_consumers(self.wait_s):
            raise StageError(
                f"no session connected to the marker stream {self.name!r} in {self.wait_s:g} s: "
                f"start `mindeye-rt stream --markers lsl:{self.name}`"
            )
        if reader is not None and not self._results_open.wait(self.wait_s):
            self.log(f"no result stream {self.results_prefix}-results found: sending anyway")
        pacer = Pacer(self.speed, self.stop)
        for r, run in enumerate(self.runs):
            send = self._send_run if self.scanner is None else self._send_scanner_run
            if not send(run, pacer) or self.stop.is_set():
                break
            if r + 1 < len(self.runs) and self.speed and self.scanner is None:
                self.stop.wait(min(2 * self.dataset.meta.tr / self.speed, 5.0))
        if reader is not None:
            self._await_results()
        self.stop.set()
        if reader is not None:
            reader.join(5)
        return self.received

    def _push(self, marker, at: float | None = None) -> None:
        """Push ``marker``, stamped with wall-clock time ``at`` (None: now)."""
        sample = [encode_marker(marker)]
        if at is None:
            self._outlet.push_sample(sample)
        else:
            self._outlet.push_sample(sample, at - self._offset)

    def _trial(self, run: str, e, *, with_onset: bool) -> TrialMarker:
        self.sent.append(
            {"run": run, "trial": int(e.trial), "image_id": int(e.image_id), "onset": e.onset}
        )
        return TrialMarker(
            image_id=int(e.image_id),
            run=run,
            trial=int(e.trial),
            duration=float(e.duration),
            onset=float(e.onset) if with_onset else None,
        )

    def _send_scanner_run(self, run: str, pacer: Pacer) -> bool:
        """One run at the scanner: from its series' first volume, triggers and trials."""
        from realtime.stim_sim_scanner import wait_for_series

        tr, n, events = self._plan(run)
        self.log(f"{run}: waiting for the next series in {self.scanner}")
        found = wait_for_series(self.scanner, self._series, self.stop, self.wait_s)
        if found is None:
            self.log(f"{run}: no new series in {self.scanner} in {self.wait_s:g} s: stopping")
            return False
        self._series, start = found
        triggers = f"{n} triggers and " if self.triggers else ""
        self.log(f"{run}: series {self._series}: run_start, {triggers}{len(events)} trials")
        self._push(RunStartMarker(run=run))
        speed = self.speed
        timeline = [(k * tr, 0, None) for k in range(n)] if self.triggers else []
        timeline += [(e.onset, 1, e) for e in events]
        pacer.restart((time.time() - start) * speed if speed else 0.0)
        for data_time, kind, e in sorted(timeline, key=lambda x: (x[0], x[1])):
            if not pacer.wait_until(data_time):
                return False
            at = start + data_time / speed if speed else None
            marker = TriggerMarker() if kind == 0 else self._trial(run, e, with_onset=not speed)
            self._push(marker, at)
        if not pacer.wait_until(n * tr):
            return False
        self._push(RunStopMarker(run=run))
        return True

    def _plan(self, run: str) -> tuple[float, int, list]:
        """The run's TR, volumes (at most ``max_volumes``) and events within them."""
        tr = float(self.dataset.meta.tr)
        n = self.dataset.n_volumes(run)
        n = n if self.max_volumes is None else min(n, self.max_volumes)
        return tr, n, [e for e in self.dataset.events(run) if e.onset < n * tr]

    def _send_run(self, run: str, pacer: Pacer) -> bool:
        tr, n, events = self._plan(run)
        self.log(f"{run}: run_start, then {len(events)} trials over {n} volumes")
        self._push(RunStartMarker(run=run))
        pacer.restart()
        for e in events:
            if not pacer.wait_until(e.onset):
                return False
            self._push(self._trial(run, e, with_onset=not self.speed))
        if not pacer.wait_until(n * tr):
            return False
        self._push(RunStopMarker(run=run))
        return True

    def _await_results(self) -> None:
        """Wait until every trial sent has its retrieval back (or ``wait_s`` of silence)."""
        deadline = time.monotonic() + self.wait_s
        seen = len(self.received)
        while not self.stop.is_set() and time.monotonic() < deadline:
            got = {(r["run"], r["trial"]) for r in self.received if r["type"] == "retrieval"}
            if all((s["run"], s["trial"]) in got for s in self.sent):
                self.stop.wait(0.5)  # a reconstruction notice may follow its retrieval
                return
            if len(self.received) != seen:
                seen, deadline = len(self.received), time.monotonic() + self.wait_s
            self.stop.wait(0.05)
        missing = len(self.sent) - len({(r["run"], r["trial"]) for r in self.received})
        self.log(f"gave up waiting: {missing} trial(s) without a result in {self.wait_s:g} s")

    def _read_results(self) -> None:
        """Resolve the session's JSON result stream (it appears when the session starts) and
        print what comes, until stopped."""
        import pylsl

        name = f"{self.results_prefix}-results"
        inlet = None
        while inlet is None and not self.stop.is_set():
            found = pylsl.resolve_byprop("name", name, minimum=1, timeout=0.5)
            found = [s for s in found if s.type() == RESULTS_TYPE]
            if found:
                inlet = pylsl.StreamInlet(found[0], recover=True)
                inlet.open_stream(timeout=10.0)
                self._results_open.set()
        while inlet is not None and not self.stop.is_set():
            sample, _ = inlet.pull_sample(timeout=0.1)
            if sample is None:
                continue
            try:
                result = json.loads(sample[0])
            except json.JSONDecodeError:
                self.log(f"not JSON on {name}: {sample[0][:80]!r}")
                continue
            self.received.append(result)
            self.log(describe_result(result))
        if inlet is not None:
            inlet.close_stream()


def describe_result(result: dict) -> str:
    """One printed line for a result of :mod:`realtime.lsl_results`."""
    where = f"{result.get('run')} #{result.get('trial')}"
    if result.get("type") == "reconstruction":
        return f"{where}: reconstruction ready: {result.get('path')}"
    ids = " ".join(str(i) for i in result.get("top_ids", []))
    rank = result.get("rank")
    ranked = f"rank {rank}" if rank is not None else "not in the bank"
    return f"{where}: shown {result.get('image_id')}, top-k {ids} ({ranked})"
