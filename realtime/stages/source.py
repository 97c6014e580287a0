"""The replay source: volumes and trial events of a replay dataset, paced at the TR.

The operator's control channel (pause, resume, speed, stop) is described in
:mod:`realtime.stages.source_control`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from realtime.pacing import Pacer
from realtime.stages.source_control import SourceStage, run_start_message, trial_message
from realtime.stages.source_markers import MarkerReplayMixin
from rt_base.checks import check_number
from rt_base.errors import ConfigError
from rt_wire.message import Message
from rt_wire.volume import volume_payload


class ReplaySource(MarkerReplayMixin, SourceStage):
    """Replays runs of a :class:`~replay_data.dataset_reader.ReplayDataset`.

    Emits, per run: ``run_start``; then ``trial`` events and ``volume`` messages merged in data
    time (a trial when its onset is reached, volume ``k`` at ``k * tr``); then ``run_end``.  After
    the last run, ``end``.

    Parameters
    ----------
    dataset : path of the replay dataset.
    runs : run labels to replay (None: all).
    speed : 1 = real time, 0 = as fast as the pipeline takes it.
    max_volumes : stop each run after this many volumes (None: all); for tests and demos.
    drop_volumes : ``(run, index)`` pairs never sent: a fault injection for tests that check
        that a lost volume is reported downstream.
    control_addr : ZMQ endpoint the source binds (REP) for operator commands; None: no
        control channel.  See :mod:`realtime.stages.source_control` for the commands.
    markers : ``lsl`` or ``lsl:NAME``: trial events from the stimulus program's LSL markers
        instead of ``events.tsv`` (:mod:`realtime.stages.source_markers`); None: the dataset's.
    markers_wait_s : how long the source looks for the marker stream when it starts.
    record_dir : the session folder, where the markers are recorded as received.
    record_labels : the record's BIDS ``subject``, ``session`` and ``task``: with them, the
        volumes sent are written to the record after each is sent (:mod:`realtime.volume_record`).
    finetune_wait_s, finetune_status_addr : with ``stream --finetune between-runs``, wait at
        most this long between runs for the decode stage's fine-tune step, reading its status
        at this address (the telemetry hub's output; :mod:`realtime.stages.finetune_wait`).
    """

    def __init__(
        self,
        dataset: str,
        *,
        runs: list[str] | None = None,
        speed: float = 1.0,
        max_volumes: int | None = None,
        drop_volumes: list[tuple[str, int]] | None = None,
        control_addr: str | None = None,
        markers: str | None = None,
        markers_wait_s: float = 120.0,
        record_dir: str | None = None,
        record_labels: dict | None = None,
        finetune_wait_s: float | None = None,
        finetune_status_addr: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(control_addr=control_addr, **kwargs)
        self.finetune_wait = None
        if finetune_wait_s is not None and finetune_status_addr is not None:
            from realtime.stages.finetune_wait import FinetuneWait

            self.finetune_wait = FinetuneWait(finetune_status_addr, finetune_wait_s)
        from realtime.record_dataset import open_replay
        from realtime.volume_record import open_volume_record

        self.dataset = open_replay(dataset)  # a replay dataset, or a session record (rerun)
        self.volume_record = open_volume_record(record_dir, record_labels, self.notice)
        self.speed = check_number(speed, "speed", minimum=0.0)
        if max_volumes is not None:
            max_volumes = check_number(max_volumes, "max_volumes", minimum=1, integer=True)
        self.max_volumes = max_volumes
        known = list(self.dataset.runs)
        if runs:
            bad = [r for r in runs if r not in known]
            if bad:
                raise ConfigError(f"'runs' must name runs of the dataset {known}, got {bad}")
        self.runs = list(runs) if runs else known
        self.drop = {(r, int(i)) for r, i in (drop_volumes or [])}
        self.pacer = Pacer(self.speed, self._stop, on_wait=self._while_waiting)
        self.sent_volumes = 0
        self.current_run: str | None = None
        self.markers = None
        self._marker_options = None
        if markers is not None:
            from realtime.lsl_markers import parse_markers_option

            name = parse_markers_option(markers)
            wait = check_number(markers_wait_s, "markers_wait", minimum=0.1, unit="seconds")
            self._marker_options = (name, wait, record_dir)

    @classmethod
    def from_options(
        cls,
        links: dict,
        *,
        dataset: str,
        runs: list[str] | None = None,
        speed: float = 1.0,
        max_volumes: int | None = None,
        drop_volumes: list | tuple = (),
        control_addr: str | None = None,
        markers: str | None = None,
        markers_wait_s: float = 120.0,
        record_dir: str | None = None,
        record_labels: dict | None = None,
        finetune_wait_s: float | None = None,
        finetune_status_addr: str | None = None,
    ) -> ReplaySource:
        """Build from a spec (JSON values: ``drop_volumes`` is a list of ``[run, index]``)."""
        return cls(
            dataset,
            runs=runs or None,
            speed=speed,
            max_volumes=max_volumes,
            drop_volumes=[tuple(x) for x in drop_volumes],
            control_addr=control_addr,
            markers=markers,
            markers_wait_s=markers_wait_s,
            record_dir=record_dir,
            record_labels=record_labels,
            finetune_wait_s=finetune_wait_s,
            finetune_status_addr=finetune_status_addr,
            **links,
        )

    def status(self) -> dict:
        lateness = self.pacer.lateness[-50:]
        marker_counts = {} if self.markers is None else {"markers": dict(self.markers.counts)}
        return {
            **self.counters,
            **marker_counts,
            "volumes": self.sent_volumes,
            "pacing_lateness_ms": 1e3 * float(np.max(lateness)) if lateness else 0.0,
            **self.control_state(),
            "dataset_path": str(self.dataset.root),
        }

    def control_state(self) -> dict:
        """What a control reply reports: run, pause, speed, whether a stop was asked for."""
        return {
            "run": self.current_run,
            "paused": self.pacer.paused,
            "speed": self.pacer.speed,
            "stopping": self.pacer.halted,
            "volumes": self.sent_volumes,
        }

    def apply_command(self, cmd: str, value: float | None) -> None:
        if cmd == "pause":
            self.pacer.pause()
        elif cmd == "resume":
            self.pacer.resume()
        elif cmd == "speed":
            if self.markers is not None:
                raise ConfigError("the stimulus program sets the pace of a replay with markers")
            self.speed = self.pacer.set_speed(value)
        elif cmd == "stop":
            self.pacer.halt()

    def _while_waiting(self) -> None:
        """On the replay thread, while the pacer waits (also while paused)."""
        self.flush_notices()
        self._maybe_status()

    def handle(self, msg: Message):  # a source has no input
        return ()

    def produce(self) -> Iterator[Message]:
        if self.volume_record is None:
            return self._produce()
        return self.volume_record.tap(self._produce())  # recorded after they are sent

    def _produce(self) -> Iterator[Message]:
        if self._marker_options is not None:
            self._open_markers()
        runs = self.runs
        done = self.recovery.resume_point(self._stop.is_set, self._pub, runs)  # None: first start
        if done in runs:  # a restarted source: the runs its downstream released are not sent
            runs = runs[runs.index(done) + 1 :]
            self.report("warning", f"restarted: resuming after run {done!r}, at {runs[:1]}")
        if self.finetune_wait is not None:
            self.finetune_wait.open(self._ctx)
        try:
            for number, run in enumerate(runs):
                if self.pacer.halted:
                    break
                if self.markers is not None:
                    yield from self._replay_run_markers(run)
                else:
                    yield from self._replay_run(run)
                if self._stop.is_set():
                    return  # stop(): no end message (the stages are being stopped too)
                if self.finetune_wait is not None and number + 1 < len(runs):
                    self._wait_for_finetune(run)
        finally:
            if self.finetune_wait is not None:
                self.finetune_wait.close()
            if self.markers is not None:
                self.markers.close()
                self.markers.inlet.close()
        self.flush_notices()
        meta = {"runs": self.runs}
        if self.pacer.halted:
            meta["stopped"] = True
        yield Message("end", meta=meta, t={"source.sent": time.time()})

    def _wait_for_finetune(self, run: str) -> None:
        """Hold the next run until the decode stage has settled ``run``'s fine-tune step."""
        wait = self.finetune_wait
        if not wait.wait(run, self._stop.is_set, self._while_waiting):
            if not self._stop.is_set():
                self.report(
                    "warning",
                    f"no word of the fine-tune step after {run} in {wait.timeout_s:g} s: "
                    "the next run starts without it",
                )

    def _open_markers(self) -> None:
        """Find the program's marker stream (on the producing thread: it may take a while)."""
        from realtime.lsl_markers import MarkerInlet
        from realtime.stages.marker_events import MarkerEvents

        name, wait, record_dir = self._marker_options
        inlet = MarkerInlet(name, wait_s=wait)
        self.report("info", f"looking for the {inlet.describe()} (up to {wait:g} s)")
        inlet.open(self._stop)
        self.report("info", f"trial events from the {inlet.describe()}")
        self.markers = MarkerEvents(
            inlet,
            speed=self.speed,
            design=self.dataset,
            notice=self.notice,
            record_dir=record_dir,
        )

    def _replay_run(self, run: str) -> Iterator[Message]:
        """``run_start``, the run's trials and volumes paced in data time, ``run_end``."""
        tr = float(self.dataset.meta.tr)
        self.current_run = run
        # (X, Y, Z, T) as stored, loaded before pacing; sent as stored (rt_wire.volume)
        data, slope, inter = self.dataset.load_run_stored(run)
        n_vols = (
            data.shape[-1] if self.max_volumes is None else min(data.shape[-1], self.max_volumes)
        )
        events = [e for e in self.dataset.events(run) if e.onset < n_vols * tr]
        yield self._run_start(run, data.shape[:3], n_vols, len(events))
        self.pacer.restart()
        timeline = [(_send_time(e, tr), 0, e) for e in events]
        timeline += [(k * tr, 1, k) for k in range(n_vols)]
        timeline.sort(key=lambda item: (item[0], item[1]))  # stable: a record's order kept
        next_index = upcoming = 0  # (upcoming: the next volume in the timeline, sent or not)
        for data_time, kind, item in timeline:
            self.flush_notices()
            if not self.pacer.wait_until(data_time):
                break
            now = time.time()
            if kind == 0:
                yield trial_message(run, item, now, upcoming)
                continue
            upcoming = item + 1
            if (run, item) in self.drop:
                continue
            vol, scale = volume_payload(data[..., item], slope, inter)
            self.sent_volumes += 1
            next_index = item + 1
            yield Message(
                "volume",
                run=run,
                index=int(item),
                meta={"time": data_time, **scale},
                t={"source.acquired": now},
                buffers={"volume": vol},
            )
        del data
        if self._stop.is_set():
            return
        meta = {"n_volumes": n_vols}
        if self.pacer.halted:  # the operator's stop: end the run where it is
            meta.update(stopped=True, n_volumes_sent=next_index)
        yield Message("run_end", run=run, meta=meta, t={"source.sent": time.time()})

    def _run_start(self, run: str, shape: tuple, n_volumes: int, n_trials: int) -> Message:
        return run_start_message(
            run,
            tr=self.dataset.meta.tr,
            n_volumes=n_volumes,
            shape=shape,
            affine=self.dataset.affine,
            n_trials=n_trials,
            input="replay",
            dataset=self.dataset.meta.name,
            dataset_path=str(self.dataset.root),
            simulated=bool(self.dataset.meta.simulated),
        )


def _send_time(event, tr: float) -> float:
    """When a replay sends a trial: at its onset, or, for a session record's trial, before the
    volume it came before in the session (later than its onset when its marker came late)."""
    if event.before_volume is None:
        return event.onset
    return max(event.onset, event.before_volume * tr)
