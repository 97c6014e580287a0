"""``--fuse-source``: the session's source in the fused stage's process, in its one thread.

With the stages fused (:mod:`realtime.stages.fused`), one passage is left on a volume's way to
its top-k: source -> fused, a serialisation, a socket and the wake-up of another process, which
on a busy core may wait for it (at scanner pace here: 1.0-1.3 ms p50, 4.5-5.4 ms p95, pinned).
This stage holds the source as its first part and drives the source's :meth:`produce` itself:
each message the source makes goes through preprocess, estimate and decode at once, and what
decode returns goes downstream.  Reading a file and everything after it are one sequence on
one thread (on the critical CPU, ``--pin-cpus``); what the source does after a volume has gone
(recording it to the session's BIDS file) runs after that volume's top-k was sent.

While the source waits (for a file, a trial's time, or the fine-tune step between runs) it
calls this stage's turn (:attr:`~realtime.stages.source_control.SourceStage.host_turn`): the
parts' background work (:meth:`~realtime.stages.base.Stage.idle`, e.g. a finished fine-tune
step) is sent on, acknowledgements are read, statuses published.

To the rest of the session the source still looks like a stage: it stamps ``source.done``,
publishes its messages, logs and status under its own name, and binds its control channel.
Restarts: the process is one stage to the launcher (``fused``); a restarted one is a restarted
source (it resumes after the last run released anywhere; a scanner source reads the export
folder again) whose parts start afresh.  What is lost with it, as with a restarted split
source: the LSL markers that had come to the dead process and were not yet sent as trials.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import zmq

from realtime.stages.fused import FusedStage, build_parts
from realtime.stages.source_control import SourceStage
from rt_base.errors import ConfigError
from rt_base.names import FUSED_PARTS, SOURCE_STAGE
from rt_wire.message import Message

#: the least time between two turns while the source waits (the split fused stage turns at
#: least every 50 ms, :data:`realtime.stages.base.POLL_MS`)
TURN_PERIOD_S = 0.01


class SourcedFusedStage(FusedStage):
    """The fused stage with the source as its first part; a source itself (no input).

    Parameters
    ----------
    source : the built source (its own links unused: no sockets but its control channel).
    parts : the built part stages of :data:`~rt_base.names.FUSED_PARTS`, in order.
    **links : this stage's links, without an input.
    """

    upstream = frozenset()

    def __init__(self, source: SourceStage, parts: list, **links: Any) -> None:
        if links.get("in_addr"):
            raise ConfigError("the fused stage with the source in it has no input ('in_addr')")
        if not isinstance(source, SourceStage):
            raise ConfigError(f"the first part must be a source, got {type(source).__name__}")
        super().__init__(parts, **links)
        self.source = source
        # the source works on this stage's thread: it stops with it, resumes where this
        # stage's downstream released (a restart), and calls this stage's turn while it waits
        self._stop = source._stop  # (the source's pacer holds its event)
        source.recovery = self.recovery
        source.host_turn = self._waiting_turn
        self._out: zmq.Socket | None = None
        self._last_turn = 0.0

    @classmethod
    def from_options(
        cls, links: dict, *, parts: Mapping[str, Mapping[str, Any]]
    ) -> SourcedFusedStage:
        """Build from a spec: ``parts`` maps ``source`` and each of
        :data:`~rt_base.names.FUSED_PARTS` to its own spec (without links)."""
        names = (SOURCE_STAGE, *FUSED_PARTS)
        source, *rest = build_parts(parts, names, links.get("incarnation", 0))
        return cls(source, rest, **links)

    # -- lifecycle: the source's control channel ---------------------------------------------
    def start(self) -> SourcedFusedStage:
        self.source.start_control(lambda: self._thread)
        try:
            super().start()
        except BaseException:
            self._stop.set()
            self.source.join_control(5)
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        try:
            super().stop(timeout)
        finally:
            self.source.join_control(timeout)

    # -- the source's messages through the parts ---------------------------------------------
    def handle(self, msg: Message) -> list[Message]:
        """A message the source made, through the parts: what goes downstream."""
        return self._through(0, [msg])

    def _produce_loop(self, push: zmq.Socket | None) -> None:
        self._out = push
        for msg in self.source.produce():
            if self._stop.is_set():
                break
            msg.sender = self.source.sender  # stamped as the source's own sending does
            self._emitted(self.source, [msg])  # source.done; its console copy kept for later
            if msg.kind == "end":
                outs = [*self.finish(), msg]
            else:
                outs = self.handle(msg)
            self.counters["received"] += 1
            self._emit(push, outs)
            self._host_turn()
        self.ended = True
        self._drain(push)

    def _waiting_turn(self) -> None:
        """The source's call on each turn of its waiting loops: this stage's turn, at most every
        :data:`TURN_PERIOD_S` (a replay waiting for the program's markers turns every 2 ms)."""
        if time.monotonic() - self._last_turn >= TURN_PERIOD_S:
            self._host_turn()

    def _host_turn(self) -> None:
        """After each of the source's messages and while it waits: the parts' background work
        sent on, acknowledgements in and out, this stage's status."""
        self._last_turn = time.monotonic()
        ready = self._safe(self.idle)
        if ready:
            self._emit(self._out, ready)
        self._turn(self._out)
        self._maybe_status()

    # -- telemetry ---------------------------------------------------------------------------
    def sockets_open(self) -> None:
        super().sockets_open()
        self.source._pub = self._pub

    def _publish_status(self, final: bool = False) -> None:
        if final:  # (the source publishes its own every second, from its loops)
            self.source._publish_status(final)
        super()._publish_status(final)

    def status(self) -> dict:
        return {**super().status(), "parts": [SOURCE_STAGE, *FUSED_PARTS]}
