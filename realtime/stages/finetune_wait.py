"""A replay source's wait for the fine-tune step between runs (``stream --finetune
between-runs``).

A replay has no break between runs (at ``--speed 0`` none at all), so the next run's
``run_start`` would reach the decode stage before the step that followed the last run is done,
and the new weights would wait a run more.  The source therefore waits, after sending a run's
``run_end`` and before the next ``run_start``, until the decode stage's status lists the run as
settled (``finetune_settled``: its step done, rejected, skipped or stopped;
:mod:`realtime.stages.decode_finetune`), at most ``timeout_s``.  The status is read on the
telemetry hub's output; it is cumulative, so one status lost on the hub costs a second at most.
A scanner source never waits: the scanner sets the pace, and its breaks between runs are the
step's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import zmq

from rt_base.checks import check_address, check_number
from rt_base.errors import WireError
from rt_wire import transport


class FinetuneWait:
    """Waits for the decode stage to settle a run's fine-tune step.

    Parameters
    ----------
    status_addr : the telemetry hub's output (where stage statuses are published).
    timeout_s : the longest wait for one run.
    """

    def __init__(self, status_addr: str, timeout_s: float) -> None:
        self.status_addr = check_address(status_addr, "finetune_status_addr")
        self.timeout_s = check_number(timeout_s, "finetune_wait_s", minimum=0, unit="seconds")
        self.sock: zmq.Socket | None = None
        self.settled: set[str] = set()
        self.waited_s: dict[str, float] = {}

    def open(self, ctx: zmq.Context) -> None:
        """Subscribe to statuses (early: a SUB socket misses what came before it joined)."""
        self.sock = transport.display_subscriber(ctx, self.status_addr, ("status",))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(0)
            self.sock = None

    def wait(self, run: str, stop: Callable[[], bool], on_wait: Callable[[], None]) -> bool:
        """Block until ``run`` is settled, ``timeout_s`` passed or ``stop()``; calls
        ``on_wait()`` every turn (the source's notices and status).  True when settled."""
        start = time.monotonic()
        while run not in self.settled:
            waited = time.monotonic() - start
            if stop() or waited > self.timeout_s or self.sock is None:
                break
            on_wait()
            if not self.sock.poll(100):
                continue
            try:
                msg = transport.recv(self.sock)
            except WireError:
                continue
            if msg.meta.get("stage") == "decode":
                self.settled.update(str(r) for r in msg.meta.get("finetune_settled") or ())
        self.waited_s[run] = round(time.monotonic() - start, 3)
        return run in self.settled
