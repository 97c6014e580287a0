"""A stage's checks of the messages on its input link: per-sender sequences, unknown senders.

Every message names its sender (:class:`~rt_wire.sender.Sender`); the stage keeps a sequence
per sender (:class:`~rt_wire.sequence.LinkSequences`), so a restarted upstream, a second sender
or a forged sequence number can never make it drop the real stream.  What it finds goes into the
stage's counters (:data:`realtime.stages.base.COUNTERS`) and its log:

- ``lost``: messages of an expected sender that never came (a ``gap`` message goes
  downstream; an unknown sender's skipped numbers are only logged, so a forged sequence number
  cannot inflate the count);
- ``repeated``: messages dropped because their sender had already sent that number;
- ``upstream_restarts``: a sender whose numbers went back to 0, or an expected stage name
  heard with a new id (its process was restarted);
- ``unknown_senders``: senders not expected on this link (see :func:`default_upstream`); each
  of the first :data:`MAX_REPORTED_SENDERS` is reported once, later ones only counted.  Their
  messages are still checked and passed on: telling a genuine sender from an impostor is the
  transport's authentication (ZMQ CURVE), not this bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable

from rt_base.names import FUSED_PARTS, FUSED_STAGE, OPTIONAL_STAGES, STAGE_NAMES
from rt_wire.message import Message
from rt_wire.sender import ANONYMOUS
from rt_wire.sequence import Arrival, LinkSequences

#: unknown senders reported one by one; later ones are only counted
MAX_REPORTED_SENDERS = 8


def default_upstream(name: str) -> frozenset[str] | None:
    """The stage names that send into stage ``name`` in a session: the one before it in
    :data:`~rt_base.names.STAGE_NAMES`, and the one before that while the nearer one is
    optional (``--recon none``); where that is the last of the fused stages, the fused stage too
    (``--fuse-stages``).  None for the source and for a stage not in that list (such a stage
    expects the first sender it hears of each stage name)."""
    if name not in STAGE_NAMES:
        return None
    names: set[str] = set()
    for before in reversed(STAGE_NAMES[: STAGE_NAMES.index(name)]):
        names.add(before)
        if before == FUSED_PARTS[-1]:
            names.add(FUSED_STAGE)
        if before not in OPTIONAL_STAGES:
            break
    return frozenset(names) or None


class InputChecks:
    """The sequence and sender checks of one stage's input.

    Parameters
    ----------
    stage : the stage's name (for log lines and ``gap`` messages).
    counters : the stage's counters, updated in place.
    report : ``report(level, text)``: log and publish a line (:meth:`Stage.report`).
    upstream : stage names expected on the input; None: :func:`default_upstream` of ``stage``.
    """

    def __init__(
        self,
        stage: str,
        counters: dict[str, int],
        report: Callable[[str, str], None],
        upstream: frozenset[str] | None = None,
    ) -> None:
        self.stage = stage
        self.counters = counters
        self.report = report
        self.sequences = LinkSequences(
            upstream if upstream is not None else default_upstream(stage)
        )

    def check(self, msg: Message) -> list[Message] | None:
        """None: drop ``msg`` (a repeat); else the messages to send before it (a ``gap`` when
        messages of its sender went missing)."""
        arrival = self.sequences.check(msg.sender or ANONYMOUS, msg.seq)
        self._note_sender(arrival)
        sender = arrival.sender
        if arrival.state == "repeat":
            self.counters["repeated"] += 1
            self.report("warning", f"dropped a repeated message (seq {msg.seq}) from {sender}")
            return None
        if arrival.state == "gap" and not arrival.expected:  # not the data path's numbers
            self.report(
                "warning",
                f"unknown sender {sender} skipped {arrival.missing} sequence number(s) before "
                f"seq {msg.seq} (not counted as lost)",
            )
            return []
        if arrival.state == "gap":
            self.counters["lost"] += arrival.missing
            self.report(
                "error",
                f"{arrival.missing} message(s) from {sender} lost before seq {msg.seq} on the "
                f"link into {self.stage}",
            )
            meta = {"stage": self.stage, "lost_messages": arrival.missing, "sender": str(sender)}
            return [Message("gap", run=msg.run, meta=meta)]
        if arrival.state == "restart":
            self.counters["upstream_restarts"] += 1
            self.report("warning", f"{sender} restarted (its sequence went back to 0)")
        return []

    def _note_sender(self, arrival: Arrival) -> None:
        """Count and report a sender heard for the first time that is unknown, or that
        replaces an expected upstream (same stage name, new id: a restart)."""
        if not arrival.new:
            return
        if arrival.replaces is not None:
            self.counters["upstream_restarts"] += 1
            self.report(
                "warning", f"{arrival.sender} now sends into {self.stage}, after {arrival.replaces}"
            )
        if arrival.expected:
            return
        self.counters["unknown_senders"] += 1
        n = self.counters["unknown_senders"]
        if n > MAX_REPORTED_SENDERS:
            return
        upstream = self.sequences.upstream
        expected = (
            f"expected {sorted(upstream)}"
            if upstream is not None
            else "another sender of that stage name came first"
        )
        more = "; later ones are only counted" if n == MAX_REPORTED_SENDERS else ""
        self.report(
            "warning",
            f"unknown sender {arrival.sender} on the link into {self.stage} ({expected}); its "
            f"messages are checked and passed on, and counted as unknown_senders{more}",
        )
