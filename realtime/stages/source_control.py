"""What every source shares: the operator's control channel, notices, and the messages that open
a run or announce a trial.

A source may bind a ZMQ REP socket at ``control_addr``; an operator console sends one JSON
request per frame and gets one JSON reply:

=========================================  ===================================================
request                                    effect
=========================================  ===================================================
``{"cmd": "pause"}``                       no further volume or trial until resumed (a scanner
                                           source keeps reading files and holds them)
``{"cmd": "resume"}``                      continue where paused (no volume lost)
``{"cmd": "speed", "value": 2.0}``         new replay speed (0 = as fast as possible); a
                                           scanner source refuses it (the scanner sets the pace)
``{"cmd": "stop"}``                        end cleanly: ``run_end`` then ``end``
``{"cmd": "state"}``                       only report the state
=========================================  ===================================================

Every reply is ``{"ok": true, "cmd": ..., "state": {...}}`` or ``{"ok": false, "error": ...}``
(bad JSON, an unknown or refused command, a bad value); the source goes on either way.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from realtime.stages.base import Stage
from rt_base.checks import check_address, check_number
from rt_base.errors import ConfigError, MindEyeRTError, StageError
from rt_wire import transport
from rt_wire.message import Message

COMMANDS = ("pause", "resume", "speed", "stop", "state")


class SourceStage(Stage):
    """Base of the sources: the control channel and the operator's notices.

    A subclass implements :meth:`apply_command` (what pause / resume / speed / stop do to it)
    and :meth:`control_state`, and calls :meth:`flush_notices` from its producing thread.

    A source may run inside another stage, which drives its :meth:`produce` instead of a thread
    of its own (:mod:`realtime.stages.fused_source`): that stage sets :attr:`host_turn`, which
    the source calls on every turn of its waiting loops (with its status: every 2-100 ms
    while it waits for a volume, a trial's time, a marker or the fine-tune step), and starts the
    control channel with :meth:`start_control`.
    """

    name = "source"
    publish_kinds = frozenset({"volume", "trial", "run_start", "run_end", "end"})

    def __init__(self, *, control_addr: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.control_addr = (
            None if control_addr is None else check_address(control_addr, "control_addr")
        )
        self._control_thread: threading.Thread | None = None
        self._control_ready = threading.Event()
        self._control_error: BaseException | None = None
        self._notices: deque[tuple[str, str]] = deque(maxlen=100)
        #: the producing thread's worker (this stage's own, or its host's): the control
        #: channel ends with it
        self._control_worker: Callable[[], threading.Thread | None] = lambda: self._thread
        #: the host stage's work between messages, when this source runs inside one
        self.host_turn: Callable[[], None] | None = None

    # -- for subclasses ----------------------------------------------------------------------
    def apply_command(self, cmd: str, value: float | None) -> None:
        """Carry out ``cmd`` (not ``state``); raise ConfigError to refuse it."""
        raise NotImplementedError

    def control_state(self) -> dict:
        """What a control reply reports."""
        raise NotImplementedError

    def notice(self, level: str, text: str) -> None:
        """Queue a log line for the console; sent from the producing thread (thread-safe)."""
        self._notices.append((level, text))

    def flush_notices(self) -> None:
        """Log and publish the queued notices (call on the producing thread)."""
        while self._notices:
            self.report(*self._notices.popleft())

    def _maybe_status(self) -> None:
        """The status every second; and the host stage's turn, when this source runs in one."""
        super()._maybe_status()
        if self.host_turn is not None:
            self.host_turn()

    # -- the control channel -----------------------------------------------------------------
    def start(self) -> SourceStage:
        """Bind the control socket (if any) and start producing."""
        self.start_control(lambda: self._thread)
        super().start()
        return self

    def start_control(self, worker: Callable[[], threading.Thread | None]) -> None:
        """Bind the control socket (if any) on a thread of its own, which ends once the
        producing thread ``worker()`` has (None: not started yet).

        Raises
        ------
        StageError
            The socket could not be bound.
        """
        self._control_worker = worker
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

    def stop(self, timeout: float = 10.0) -> None:
        """Stop at once (no ``end``; use the ``stop`` command for a clean end)."""
        try:
            super().stop(timeout)
        finally:
            self.join_control(timeout)

    def join_control(self, timeout: float) -> None:
        """Wait for the control thread (if any) to end (after a stop, or the producer's end)."""
        if self._control_thread is not None:
            self._control_thread.join(timeout)

    def _control_main(self) -> None:
        try:  # a CURVE server when the process has security (rt_wire.curve_auth)
            sock = transport.control_server(self._ctx, self.control_addr)
        except MindEyeRTError as err:  # reported through start()
            self._control_error = StageError(f"cannot bind 'control_addr': {err}")
            self._control_ready.set()
            return
        self._control_ready.set()
        try:
            while not self._stop.is_set():
                worker = self._control_worker()
                if worker is not None and not worker.is_alive():
                    break  # the source is done: nothing left to control
                if not sock.poll(50):
                    continue
                frames = sock.recv_multipart()
                reply = self.command(frames[0] if len(frames) == 1 else None)
                sock.send(json.dumps(reply).encode())
        finally:
            sock.close()

    def command(self, request: bytes | str | dict | None) -> dict:
        """Apply one control request (JSON bytes or a dict); returns the reply dict.

        Thread-safe: the control thread calls it while the producing thread works.
        """
        try:
            cmd, value = parse_command(request)
            if cmd != "state":
                self.apply_command(cmd, value)
        except ConfigError as err:
            self.notice("warning", f"control request refused: {err}")
            return {"ok": False, "error": str(err)}
        if cmd != "state":
            shown = f" {value:g}" if cmd == "speed" else ""
            self.notice("info", f"operator: {cmd}{shown}")
        return {"ok": True, "cmd": cmd, "state": self.control_state()}


def run_start_message(run: str, *, tr: float, n_volumes: int | None, shape, affine, **meta):
    """The ``run_start`` message of ``run``: TR, expected volumes (None: unknown until the run
    ends), grid shape and affine, and the source's own fields ``meta``."""
    meta = {
        "tr": float(tr),
        "n_volumes": None if n_volumes is None else int(n_volumes),
        "shape": [int(s) for s in shape],
        "affine": np.asarray(affine, float).tolist(),
        **meta,
    }
    return Message("run_start", run=run, meta=meta, t={"source.sent": time.time()})


def trial_message(run: str, event, now: float, before_volume: int) -> Message:
    """The ``trial`` message of one design event (:class:`replay_data.dataset_format.Event`),
    sent before the run's volume ``before_volume`` (its volume count: after the last one).
    The record keeps ``before_volume`` so that a rerun sends the trial at the same place among
    the volumes, which the estimate's fit depends on (a late marker's trial comes after its
    onset's volume)."""
    meta = {
        "onset": float(event.onset),
        "duration": float(event.duration),
        "image_id": int(event.image_id),
        "repetition": int(event.repetition),
        "split": str(event.split),
        "before_volume": int(before_volume),
    }
    return Message("trial", run=run, index=int(event.trial), meta=meta, t={"source.acquired": now})


def parse_command(request: bytes | str | dict | None) -> tuple[str, float | None]:
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
    if cmd not in COMMANDS:
        raise ConfigError(f"'cmd' must be one of {list(COMMANDS)}, got {cmd!r}")
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
