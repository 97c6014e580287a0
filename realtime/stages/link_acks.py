"""Acknowledgements on the data path: what a stage has fully handled, so that a stage process
that dies can be restarted and nothing is lost.

The receiving side of one link (:class:`InputAcks`) and the sending side (:class:`OutputLink`,
with its :class:`~realtime.stages.replay_buffer.ReplayBuffer`).  The protocol, in short (see
docs/interfaces.md, "Restarts"):

- every stage's state is per run (the running z-score, the motion reference and the GLM window
  start again at ``run_start``), so a stage *releases* its input at run boundaries: after it has
  handled a ``run_end`` (or ``end``) and its downstream has released every message it sent up to
  that point, it acknowledges its upstream's sequence number of that ``run_end``.  A sink (no
  downstream) releases at once;
- acknowledgements are ``ack`` messages on the telemetry hub (cumulative, published every
  :data:`ACK_PERIOD_S`, so a lost one costs nothing); each names the stage's input address,
  its sender, its incarnation (0 at the first start, n after n restarts) and, per upstream
  sender, the last sequence number released;
- a sender keeps what its downstream has not released; when it hears a downstream of a new id
  whose incarnation is above 0 (a restarted process), it sends all of it again, addressed to that
  id (``meta["link_to"]``).  A restarted receiver accepts only messages addressed to it, so the
  stale tail of the old connection is dropped (counted ``stale``), and the restarted stage
  rebuilds its state from the run's start;
- every message also names the sending instance's incarnation (``meta["link_from"]``): once a
  receiver has had a message from a newer instance of an upstream stage, what still comes from
  an older one (the tail of a killed process, still queued) is dropped as ``stale``: the new
  instance sends all of it again (an upstream stage: from the first run it had not released; a
  source: after the last run released anywhere), and the old tail, mixed in with the new stream
  (a PULL socket takes its peers in turn), would take the stage back to an old run;
- a receiver drops a message it has already handled by kind, run and index
  (:func:`message_key`), whichever sender it comes from: the restarted upstream's new stream
  repeats what the old one sent (counted ``duplicates``).  Except a ``run_start`` that comes
  while a stage with per-run state (one with a downstream: ``retake``) is in another run: the
  stage takes that run again from its start (its handled keys of the run are forgotten), for
  its state has left the run and the run's messages it has not handled yet need it (a stage
  taken back to an older run by a restarted upstream, then sent the newer run again, dropped
  the run_start and then every new message of the run: 21 volumes lost in the soak);
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from rt_wire.message import Message
from rt_wire.sender import Sender

#: how often a stage publishes its acknowledgements (seconds)
ACK_PERIOD_S = 0.2
#: runs whose handled keys a receiver keeps (a resend reaches back to the oldest unreleased run,
#: many runs at --speed 0 with stacked restarts; 256 runs of keys are a few MB)
KEPT_RUNS = 256
#: the meta key that addresses a message to one instance of the downstream stage
LINK_TO = "link_to"
#: the meta key that names the sending instance's incarnation (0, then n after n restarts)
LINK_FROM = "link_from"
#: kinds after which a stage's state starts afresh: where its input can be released
BOUNDARY_KINDS = ("run_end", "end")


def message_key(msg: Message) -> tuple:
    """What makes a data-path message unique in a session, whoever sends it: kind, run and
    index (a ``gap`` also by what it says, without the sender or the time it was written)."""
    if msg.kind == "gap":
        meta = {k: v for k, v in msg.meta.items() if k not in ("sender", "time")}
        return ("gap", msg.run, msg.index, json.dumps(meta, sort_keys=True, default=str))
    return (msg.kind, msg.run, msg.index)


@dataclass(frozen=True)
class Origin:
    """What a receiver notes of a message before handling it (a stage that forwards the message
    object stamps its own sender and sequence number on it when it sends it on)."""

    key: tuple
    kind: str
    run: str | None
    sender: Sender | None
    seq: int


def origin_of(msg: Message) -> Origin:
    return Origin(message_key(msg), msg.kind, msg.run, msg.sender, msg.seq)


@dataclass
class _Boundary:
    """A ``run_end`` / ``end`` handled: ``seq`` of ``sender`` may be released once the
    downstream has released our own messages up to ``out_mark``."""

    sender: Sender
    seq: int
    out_mark: int
    run: str | None


class InputAcks:
    """The receiving side of one link: stale and duplicate messages, releases, ``ack`` messages.

    Parameters
    ----------
    stage : the stage's name.
    sender : the stage's own sender (named in its acks).
    in_addr : the stage's input address (a sender matches acks to its ``out_addr`` by it).
    incarnation : 0 at the first start; n after n restarts (a restarted stage accepts only
        messages addressed to it).
    """

    def __init__(
        self,
        stage: str,
        sender: Sender,
        in_addr: str | None,
        incarnation: int,
        *,
        retake: bool = False,
    ) -> None:
        self.stage = stage
        self.retake = retake
        self.current_run: str | None = None  # the run of the last run_start taken
        #: a sink's: the last run it has on record whole, in session order (its ``released_run``:
        #: the recorder's survives its restarts, a restarted source never resumes before it)
        self.complete_run: Callable[[], str | None] | None = None
        self.sender = sender
        self.in_addr = in_addr
        self.incarnation = int(incarnation)
        self._handled: OrderedDict[str | None, set[tuple]] = OrderedDict()
        self._boundaries: deque[_Boundary] = deque()
        #: per upstream stage name: its newest sender and the last sequence number released
        self.released: dict[str, tuple[Sender, int]] = {}
        self.last_released_run: str | None = None
        #: per upstream stage name: the newest incarnation heard from
        self._newest: dict[str, int] = {}

    def accepts(self, msg: Message) -> bool:
        """Whether to take ``msg`` at all (removes its address): a restarted stage takes only
        messages addressed to it; a first instance also those addressed to nobody; nobody takes
        a message from an upstream instance older than one already heard from."""
        to = msg.meta.pop(LINK_TO, None)
        incarnation = msg.meta.pop(LINK_FROM, None)
        if isinstance(incarnation, int) and msg.sender is not None:
            newest = self._newest.get(msg.sender.stage, incarnation)
            if incarnation < newest:
                return False
            self._newest[msg.sender.stage] = incarnation
        if to is None:
            return self.incarnation == 0
        return to == self.sender.id

    def is_duplicate(self, msg: Message) -> bool:
        """Whether a message of the same kind, run and index was handled already (a
        ``run_start`` of a run the stage is not in is taken again: ``retake``)."""
        duplicate = message_key(msg) in self._handled.get(msg.run, ())
        if msg.kind == "run_start":
            if duplicate and self.retake and msg.run != self.current_run:
                self._handled.pop(msg.run, None)  # the run again from its start
                duplicate = False
            if not duplicate:
                self.current_run = msg.run
        return duplicate

    def handled(self, origin: Origin, out_mark: int | None) -> None:
        """Note a message (its :func:`origin_of`, taken before it was handled) as handled;
        ``out_mark`` is our last sequence number sent so far (None: a sink, or nothing sent)."""
        keys = self._handled.get(origin.run)
        if keys is None:
            keys = self._handled[origin.run] = set()
            while len(self._handled) > KEPT_RUNS:
                self._handled.popitem(last=False)
        keys.add(origin.key)
        if origin.kind in BOUNDARY_KINDS and origin.sender is not None:
            mark = -1 if out_mark is None else out_mark
            self._boundaries.append(_Boundary(origin.sender, origin.seq, mark, origin.run))

    def release(self, downstream_through: int | None, *, sink: bool) -> None:
        """Release the boundaries whose output the downstream has released (all for a sink)."""
        while self._boundaries:
            b = self._boundaries[0]
            done = b.out_mark < 0 or (
                downstream_through is not None and downstream_through >= b.out_mark
            )
            if not (sink or done):
                return
            self._boundaries.popleft()
            self.released[b.sender.stage] = (b.sender, b.seq)
            if b.run is not None:
                self.last_released_run = b.run

    def ack_message(self) -> Message:
        """The ``ack`` this stage publishes now."""
        meta = {
            "stage": self.stage,
            "in_addr": self.in_addr,
            "incarnation": self.incarnation,
            "through": {str(s): seq for s, seq in self.released.values()},
            "released_run": (
                self.last_released_run if self.complete_run is None else self.complete_run()
            ),
        }
        return Message("ack", meta=meta, sender=self.sender)


class OutputLink:
    """The sending side of one link: which downstream instance, what it released.

    Parameters
    ----------
    out_addr : the downstream's input address (acks naming it are the downstream's).
    me : this stage's sender (the key of its sequence numbers in the downstream's acks).
    """

    def __init__(self, out_addr: str, me: Sender, incarnation: int = 0) -> None:
        self.out_addr = out_addr
        self.me = me
        self.my_incarnation = int(incarnation)
        self.downstream: Sender | None = None
        self.incarnation: int | None = None
        #: our last sequence number the downstream released (None: none yet)
        self.through: int | None = None
        #: the downstream's last released run (a restarted source resumes after it)
        self.released_run: str | None = None
        self.heard = False

    def on_ack(self, ack: Message) -> bool:
        """Take one ``ack``; True when it comes from a restarted downstream instance that has
        not heard from us yet (everything unreleased must be sent to it again)."""
        meta = ack.meta
        if ack.kind != "ack" or meta.get("in_addr") != self.out_addr or ack.sender is None:
            return False
        self.heard = True
        through = meta.get("through")
        if isinstance(through, dict) and isinstance(through.get(str(self.me)), int):
            self.through = max(self.through or -1, through[str(self.me)])
        run = meta.get("released_run")
        if isinstance(run, str):
            self.released_run = run
        if ack.sender == self.downstream:
            return False
        self.downstream = ack.sender
        incarnation = meta.get("incarnation")
        self.incarnation = incarnation if isinstance(incarnation, int) else 0
        return self.incarnation > 0

    def address(self, msg: Message) -> None:
        """Address ``msg`` to the downstream instance we know (none: to whoever is there), from
        this instance (its incarnation)."""
        msg.meta[LINK_FROM] = self.my_incarnation
        if self.downstream is None:
            msg.meta.pop(LINK_TO, None)
        else:
            msg.meta[LINK_TO] = self.downstream.id
