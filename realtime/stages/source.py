"""The replay source: volumes and trial events of a replay dataset, paced at the TR.

An optional control channel lets an operator console pause, resume, change the speed of, or
stop the replay while it runs: the source binds a ZMQ REP socket at ``control_addr`` and
answers each JSON request with a JSON reply:

=========================================  ===================================================
request                                    effect
=========================================  ===================================================
``{"cmd": "pause"}``                       no further volume or trial until resumed
``{"cmd": "resume"}``                      continue where paused (no catch-up burst, no loss)
``{"cmd": "speed", "value": 2.0}``         new replay speed (0 = as fast as possible)
``{"cmd": "stop"}``                        end the replay cleanly: ``run_end`` then ``end``
``{"cmd": "state"}``                       only report the state
=========================================  ===================================================

Every reply is ``{"ok": true, "cmd": ..., "state": {...}}`` or ``{"ok": false, "error": ...}``
(bad JSON, an unknown command, a bad value); the source goes on either way.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import zmq

from realtime.pacing import Pacer
from realtime.stages.base import Stage
from rt_base.checks import check_address, check_number
from rt_base.errors import ConfigError, StageError
from rt_wire.message import Message


class ReplaySource(Stage):
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
        control channel.  See the module docstring for the commands.
    """

    name = "source"
    publish_kinds = frozenset({"volume", "trial", "run_start", "run_end", "end"})

    def __init__(
        self,
        dataset: str,
        *,
        runs: list[str] | None = None,
        speed: float = 1.0,
        max_volumes: int | None = None,
        drop_volumes: list[tuple[str, int]] | None = None,
        control_addr: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        from replay_data.dataset_reader import ReplayDataset

        self.dataset = ReplayDataset.open(dataset)
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
        self.control_addr = (
            None if control_addr is None else check_address(control_addr, "control_addr")
        )
        self.current_run: str | None = None
        self._control_thread: threading.Thread | None = None
        self._control_ready = threading.Event()
        self._control_error: BaseException | None = None
        self._notices: deque[tuple[str, str]] = deque(maxlen=100)

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
    ) -> ReplaySource:
        """Build from a spec (JSON values: ``drop_volumes`` is a list of ``[run, index]``)."""
        return cls(
            dataset,
            runs=runs or None,
            speed=speed,
            max_volumes=max_volumes,
            drop_volumes=[tuple(x) for x in drop_volumes],
            control_addr=control_addr,
            **links,
        )

    def status(self) -> dict:
        lateness = self.pacer.lateness[-50:]
        return {
            **self.counters,
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

    # -- the control channel -----------------------------------------------------------------
    def start(self) -> ReplaySource:
        """Bind the control socket (if any) and start replaying."""
        if self.control_addr is not None and self._control_thread is None:
            self._control_thread = threading.Thread(
                target=self._control_main, name="source-control", daemon=True
            )
            self._control_thread.start()
            self._control_ready.wait(10)
            if self._control_error is not None:
                self._control_thread.join(5)
                raise StageError(
                    f"source failed to open its control channel: {self._control_error}"
                ) from self._control_error
        super().start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop replaying at once (no ``end``; use the ``stop`` command for a clean end)."""
        try:
            super().stop(timeout)
        finally:
            if self._control_thread is not None:
                self._control_thread.join(timeout)

    def _control_main(self) -> None:
        sock = self._ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(self.control_addr)
        except zmq.ZMQError as err:  # reported through start()
            sock.close(0)
            self._control_error = StageError(
                f"cannot bind 'control_addr' {self.control_addr!r}: {err} (is another session "
                "using this port? pick another address)"
            )
            self._control_ready.set()
            return
        self._control_ready.set()
        try:
            while not self._stop.is_set():
                worker = self._thread
                if worker is not None and not worker.is_alive():
                    break  # the replay is over: nothing left to control
                if not sock.poll(50):
                    continue
                frames = sock.recv_multipart()
                reply = self.command(frames[0] if len(frames) == 1 else None)
                sock.send(json.dumps(reply).encode())
        finally:
            sock.close()

    def command(self, request: bytes | str | dict | None) -> dict:
        """Apply one control request (JSON bytes or a dict); returns the reply dict.

        Thread-safe: the control thread calls it while the replay thread waits.
        """
        try:
            cmd, value = _parse_command(request)
        except ConfigError as err:
            self._notices.append(("warning", f"control request refused: {err}"))
            return {"ok": False, "error": str(err)}
        if cmd == "pause":
            self.pacer.pause()
        elif cmd == "resume":
            self.pacer.resume()
        elif cmd == "speed":
            self.speed = self.pacer.set_speed(value)
        elif cmd == "stop":
            self.pacer.halt()
        if cmd != "state":
            shown = f" {value:g}" if cmd == "speed" else ""
            self._notices.append(("info", f"operator: {cmd}{shown}"))
        return {"ok": True, "cmd": cmd, "state": self.control_state()}

    def _while_waiting(self) -> None:
        """On the replay thread, while the pacer waits (also while paused)."""
        self._flush_notices()
        self._maybe_status()

    def _flush_notices(self) -> None:
        while self._notices:
            level, text = self._notices.popleft()
            self.log.info(text)
            self._publish_log(level, text)

    def handle(self, msg: Message):  # a source has no input
        return ()

    def produce(self) -> Iterator[Message]:
        for run in self.runs:
            if self.pacer.halted:
                break
            yield from self._replay_run(run)
            if self._stop.is_set():
                return  # stop(): no end message (the stages are being stopped too)
        self._flush_notices()
        meta = {"runs": self.runs}
        if self.pacer.halted:
            meta["stopped"] = True
        yield Message("end", meta=meta, t={"source.sent": time.time()})

    def _replay_run(self, run: str) -> Iterator[Message]:
        """``run_start``, the run's trials and volumes paced in data time, ``run_end``."""
        tr = float(self.dataset.meta.tr)
        self.current_run = run
        data = self.dataset.load_run(run)  # (X, Y, Z, T) float32, loaded before pacing
        n_vols = (
            data.shape[-1] if self.max_volumes is None else min(data.shape[-1], self.max_volumes)
        )
        events = [e for e in self.dataset.events(run) if e.onset < n_vols * tr]
        yield self._run_start(run, data.shape[:3], n_vols, len(events))
        self.pacer.restart()
        timeline = [(e.onset, 0, e) for e in events] + [(k * tr, 1, k) for k in range(n_vols)]
        timeline.sort(key=lambda item: (item[0], item[1]))
        next_index = 0
        for data_time, kind, item in timeline:
            self._flush_notices()
            if not self.pacer.wait_until(data_time):
                break
            now = time.time()
            if kind == 0:
                yield _trial_message(run, item, now)
                continue
            if (run, item) in self.drop:
                continue
            vol = np.ascontiguousarray(data[..., item], dtype=np.float32)
            self.sent_volumes += 1
            next_index = item + 1
            yield Message(
                "volume",
                run=run,
                index=int(item),
                meta={"time": data_time},
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
        meta = {
            "tr": float(self.dataset.meta.tr),
            "n_volumes": n_volumes,
            "shape": list(shape),
            "affine": np.asarray(self.dataset.affine, float).tolist(),
            "n_trials": n_trials,
            "dataset": self.dataset.meta.name,
            "dataset_path": str(self.dataset.root),
            "simulated": bool(self.dataset.meta.simulated),
        }
        return Message("run_start", run=run, meta=meta, t={"source.sent": time.time()})


def _trial_message(run: str, event, now: float) -> Message:
    """The ``trial`` message of one event of the dataset, acquired at ``now``."""
    meta = {
        "onset": float(event.onset),
        "duration": float(event.duration),
        "image_id": int(event.image_id),
        "repetition": int(event.repetition),
        "split": str(event.split),
    }
    return Message("trial", run=run, index=int(event.trial), meta=meta, t={"source.acquired": now})


_COMMANDS = ("pause", "resume", "speed", "stop", "state")


def _parse_command(request: bytes | str | dict | None) -> tuple[str, float | None]:
    """Validate a control request; returns ``(cmd, value)`` or raises ConfigError."""
    if request is None:
        raise ConfigError("a control request must be one frame of JSON; send one frame")
    if isinstance(request, (bytes, bytearray, memoryview, str)):
        try:
            request = json.loads(bytes(request) if not isinstance(request, str) else request)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(
                f'a control request must be JSON like {{"cmd": "pause"}}, got invalid JSON ({err})'
            ) from None
    if not isinstance(request, dict):
        raise ConfigError(f"a control request must be a JSON object, got {request!r}")
    cmd = request.get("cmd")
    if cmd not in _COMMANDS:
        raise ConfigError(f"'cmd' must be one of {list(_COMMANDS)}, got {cmd!r}")
    extra = sorted(set(request) - {"cmd", "value"})
    if extra:
        raise ConfigError(f"a control request has only 'cmd' and 'value', got also {extra}")
    value = request.get("value")
    if cmd == "speed":
        if value is None or isinstance(value, bool):
            raise ConfigError("'speed' needs a 'value': the replay speed (1 real time, 0 max)")
        value = float(check_number(value, "speed", minimum=0.0))
    elif value is not None:
        raise ConfigError(f"command {cmd!r} takes no 'value', got {value!r}")
    return cmd, value
