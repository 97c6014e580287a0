"""A stage's part in surviving a restart: its acks (as a receiver), its replay buffer (as a
sender), and a restarted source's resume point.  The protocol is in
:mod:`realtime.stages.link_acks`; :class:`realtime.stages.base.Stage` calls this at a few points
of its loop.

Off (every method a no-op) unless the stage has an ``ack_addr`` (the telemetry hub's output,
where acks are read) and a ``telemetry_addr`` (where its own acks go): the launchers set both;
a stage run alone by a test or a tool keeps nothing.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import zmq

from realtime.stages.link_acks import (
    ACK_PERIOD_S,
    BOUNDARY_KINDS,
    InputAcks,
    Origin,
    OutputLink,
    message_key,
    origin_of,
)
from realtime.stages.replay_buffer import ReplayBuffer
from rt_base.errors import StageError, WireError
from rt_wire import transport
from rt_wire.message import Message
from rt_wire.sender import Sender

#: how long a restarted source waits for its downstream's first ack (where to resume)
RESUME_WAIT_S = 30.0
#: how long a stage that has sent ``end`` waits for its downstream to release everything
DRAIN_WAIT_S = 120.0


class Recovery:
    """The restart bookkeeping of one stage.

    Parameters
    ----------
    stage : the stage's name; ``sender`` its sender.
    in_addr, out_addr : its input and output addresses (None: a source / a sink).
    ack_addr : the telemetry hub's output (acks are read there); None: recovery off.
    incarnation : 0 at the first start, n after n restarts by the launcher.
    counters : the stage's counters (``stale``, ``duplicates``, ``resent``,
        ``replay_overflow`` are updated in place).
    report : ``report(level, text)``.
    """

    def __init__(
        self,
        stage: str,
        sender: Sender,
        *,
        in_addr: str | None,
        out_addr: str | None,
        ack_addr: str | None,
        incarnation: int,
        counters: dict[str, int],
        report: Callable[[str, str], None],
    ) -> None:
        self.on = ack_addr is not None
        self.ack_addr = ack_addr
        self.incarnation = incarnation
        self.counters = counters
        self.report = report
        self.inputs = (
            InputAcks(stage, sender, in_addr, incarnation, retake=out_addr is not None)
            if in_addr
            else None
        )
        self.output = OutputLink(out_addr, sender, incarnation) if out_addr and self.on else None
        self.buffer = ReplayBuffer() if self.output is not None else None
        self._sub: zmq.Socket | None = None
        self._last_ack = 0.0
        self._resend_pending = False
        #: boundaries a stage forwards later (see :meth:`hold`): their key -> the origins of the
        #: copies received, released once the boundary is sent on
        self._held: dict[tuple, list[Origin]] = {}
        #: a source's: every run any stage of the session says it released (see resume_point)
        self.released_anywhere: set[str] = set()

    def open(self, ctx: zmq.Context) -> None:
        """Open the socket acks are read on (a stage with a downstream, recovery on)."""
        if self.output is not None:
            self._sub = transport.display_subscriber(ctx, self.ack_addr, ("ack",), hwm=1000)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None

    # -- receiving ---------------------------------------------------------------------------
    def accepts(self, msg: Message) -> bool:
        """False for a stale message (addressed to an earlier instance of this stage)."""
        if self.inputs is None:
            return True
        if self.inputs.accepts(msg) or not self.on:
            return True
        self.counters["stale"] += 1
        return False

    def is_duplicate(self, msg: Message, out_mark: int | None) -> bool:
        """True (and counted) when ``msg`` was handled already, from whichever sender."""
        if not self.on or self.inputs is None or not self.inputs.is_duplicate(msg):
            return False
        self.counters["duplicates"] += 1
        self.handled(origin_of(msg), out_mark)  # a repeated run_end / end is released
        return True

    def origin(self, msg: Message) -> Origin | None:
        """What :meth:`handled` needs of ``msg``, taken before the stage handles (and perhaps
        forwards and restamps) it."""
        return origin_of(msg) if self.on and self.inputs is not None else None

    def handled(self, origin: Origin | None, out_mark: int | None) -> None:
        if origin is None:
            return
        held = self._held.get(origin.key)
        if held is not None:  # noted as handled now, its boundary once it is sent on (keep)
            held.append(origin)
            origin = dataclasses.replace(origin, sender=None)  # a boundary without a sender
        self.inputs.handled(origin, out_mark)

    def hold(self, msg: Message) -> None:
        """``msg`` (a ``run_end``) is forwarded later, once the work queued before it is done
        (the reconstruct stage's trials): its upstream is released only once it has been sent
        on and the downstream has released it, not when :meth:`handled` is called."""
        if self.on and self.inputs is not None and msg.kind in BOUNDARY_KINDS:
            self._held.setdefault(message_key(msg), [])

    # -- sending -----------------------------------------------------------------------------
    def address(self, msg: Message) -> None:
        if self.output is not None:
            self.output.address(msg)

    def keep(self, msg: Message) -> None:
        """Keep a sent message (its ``seq`` set) until the downstream releases it; a held
        boundary (:meth:`hold`) is released once the downstream has released it."""
        if self._held and msg.kind in BOUNDARY_KINDS:
            for origin in self._held.pop(message_key(msg), ()):
                self.inputs.handled(origin, msg.seq)
        if self.buffer is not None:
            before = self.buffer.overflow
            self.buffer.add(msg)
            if self.buffer.overflow > before:
                self.counters["replay_overflow"] = self.buffer.overflow
                if before == 0:
                    self.report(
                        "warning",
                        "replay buffer full: the oldest unreleased messages were forgotten; a "
                        "restart of the downstream stage now could lose them",
                    )

    # -- every turn --------------------------------------------------------------------------
    def turn(self, pub: zmq.Socket | None, *, force_ack: bool = False) -> bool:
        """Read acks, release what the downstream released, publish our own acks when due (or
        now, ``force_ack``).  True when the downstream restarted and everything unreleased
        must be sent again."""
        if not self.on:
            return False
        if self._sub is not None:
            while self._sub.poll(0):
                try:
                    ack = transport.recv(self._sub)
                except WireError:
                    continue
                if self.output.on_ack(ack):
                    self._resend_pending = True
                run = ack.meta.get("released_run")
                if self.inputs is None and isinstance(run, str):  # a source
                    self.released_anywhere.add(run)
            if self.output.through is not None:
                self.buffer.release(self.output.through)
        if self.inputs is not None:
            through = None if self.output is None else self.output.through
            self.inputs.release(through, sink=self.output is None)
            now = time.monotonic()
            if pub is not None and (force_ack or now - self._last_ack >= ACK_PERIOD_S):
                self._last_ack = now
                transport.try_publish(pub, self.inputs.ack_message())
        return self._resend_pending

    def step(self, push: zmq.Socket | None, pub: zmq.Socket | None, stop: threading.Event) -> bool:
        """One turn (:meth:`turn`); when the downstream restarted, send it everything
        unreleased again.  True when that happened."""
        if not self.turn(pub):
            return False
        self.resend(lambda msg: self._send_again(push, msg, pub, stop))
        return True

    def _send_again(
        self, push: zmq.Socket, msg: Message, pub: zmq.Socket | None, stop: threading.Event
    ) -> bool:
        """Send a kept message again; False when yet another downstream appeared meanwhile."""
        while True:
            try:
                transport.send(push, msg, flags=zmq.NOBLOCK)
                return True
            except zmq.Again:
                if stop.is_set():
                    raise StageError("stopped with messages still unsent") from None
                if self.turn(pub):
                    return False
                time.sleep(0.005)

    def drain(self, push: zmq.Socket | None, pub: zmq.Socket | None, stop: threading.Event) -> None:
        """After ``end``: wait until the downstream has released everything we sent (so that a
        restart of it until then loses nothing), or until ``stop``; then publish our last ack."""
        if not self.on:
            return
        deadline = time.monotonic() + DRAIN_WAIT_S
        self.step(push, pub, stop)
        while not self.drained() and not stop.is_set():
            if time.monotonic() > deadline:
                self.report("warning", "the downstream did not release the session's end")
                break
            self.step(push, pub, stop)
            time.sleep(0.02)
        self.turn(pub, force_ack=True)

    def resend(self, send: Callable[[Message], bool]) -> None:
        """Send everything unreleased again, addressed to the new downstream; ``send(msg)``
        returns False when a newer downstream appeared meanwhile (then start over)."""
        while self._resend_pending:
            self._resend_pending = False
            msgs = self.buffer.messages()
            self.report(
                "warning",
                f"{self.output.downstream} restarted: sending it the {len(msgs)} message(s) it "
                "has not released",
            )
            for msg in msgs:
                self.output.address(msg)
                if not send(msg):
                    break
                self.counters["resent"] += 1

    def drained(self) -> bool:
        """Whether the downstream has released everything we sent."""
        return self.buffer is None or len(self.buffer) == 0

    def resume_point(
        self, stopped: Callable[[], bool], pub: zmq.Socket | None, runs: list[str] | None = None
    ) -> str | None:
        """For a restarted source: the last run its downstream released (resume after it);
        None for a first start, or when the downstream has released no run.

        With ``runs`` (the session's runs in order): the last of them that *any* stage says it
        released, heard for a few ack periods.  A stage releases a run only once everything
        after it has, so a run released anywhere is through the whole pipeline; a downstream
        that was itself just restarted has released nothing yet (resuming after its answer
        would send the session again from its first run)."""
        if self.incarnation == 0 or self.output is None:
            return None
        deadline = time.monotonic() + RESUME_WAIT_S
        while not self.output.heard:
            if stopped():
                return None
            if time.monotonic() > deadline:
                raise StageError(
                    f"restarted source heard no acknowledgement from its downstream in "
                    f"{RESUME_WAIT_S:.0f} s: cannot tell where to resume"
                )
            self.turn(pub)
            time.sleep(0.02)
        self._resend_pending = False  # a new source has nothing to send again
        if not runs:
            return self.output.released_run
        listen = time.monotonic() + 3 * ACK_PERIOD_S  # every stage's ack, not only the first
        while time.monotonic() < listen and not stopped():
            self.turn(pub)
            time.sleep(0.02)
        self._resend_pending = False
        released = [i for i, run in enumerate(runs) if run in self.released_anywhere]
        return runs[max(released)] if released else None
