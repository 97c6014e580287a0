"""Sequence checks on one input link: per sender, so no sender can silence another.

Each sender (:class:`~rt_wire.sender.Sender`) numbers its messages 0, 1, 2, ...  The receiver
keeps one :class:`SequenceTracker` per sender (:class:`LinkSequences`): a gap, a repeat or a
restart is judged against that sender's own numbers only.  A restarted upstream (a new id), a
second sender, or a forged message with a huge sequence number under another id gets a tracker
of its own and cannot make the receiver drop the real stream as repeats.

Which senders are expected: a receiver that knows the stage names of its upstream expects any
sender of those names (a restarted upstream has a new id but the same name); one that does not
expects the first id it sees of each stage name.  Every other sender is *unknown*: its messages
are still checked and passed on, and :attr:`LinkSequences.unknown` counts it (the stage reports
it once).  The number of trackers is bounded (:data:`MAX_SENDERS`): beyond it, the least
recently heard unknown sender (or, failing one, the least recently heard sender; never the one
just heard) is forgotten, which can cost a gap report but never a dropped message (a forgotten
sender starts afresh; an unknown one heard again is counted again).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from rt_base.checks import check_number
from rt_wire.sender import Sender

#: the most senders one link keeps sequence numbers of
MAX_SENDERS = 64


class SequenceTracker:
    """Detects lost and repeated messages from one sender's sequence numbers.

    ``check(seq)`` returns ``("ok"|"gap"|"repeat"|"restart", n_missing)``.  A gap means
    messages ``expected .. seq-1`` never came; a repeat (seq below the next expected) is to be
    dropped; ``seq == 0`` after other messages means the sender restarted (counted, not dropped).
    """

    def __init__(self) -> None:
        self.expected: int | None = None
        self.lost = 0
        self.repeated = 0
        self.restarts = 0

    def check(self, seq: int) -> tuple[str, int]:
        if self.expected is None or seq == self.expected:
            self.expected = seq + 1
            return "ok", 0
        if seq == 0:
            self.restarts += 1
            self.expected = 1
            return "restart", 0
        if seq < self.expected:
            self.repeated += 1
            return "repeat", 0
        missing = seq - self.expected
        self.lost += missing
        self.expected = seq + 1
        return "gap", missing


@dataclass(frozen=True)
class Arrival:
    """What :meth:`LinkSequences.check` found about one message.

    ``state`` and ``missing`` are :meth:`SequenceTracker.check`'s for the message's sender;
    ``new`` is True for the first message heard from this sender (or since it was forgotten);
    ``expected`` is False for an unknown sender; ``replaces`` is the earlier sender of the same
    stage name when an expected sender appears with a new id (an upstream restarted).
    """

    state: str
    missing: int
    sender: Sender
    new: bool
    expected: bool
    replaces: Sender | None = None


class LinkSequences:
    """Per-sender sequence tracking on one input link.

    Parameters
    ----------
    upstream : stage names expected to send on this link, or None when the receiver does not
        know them (then the first id heard of each stage name is expected).
    max_senders : the most senders tracked at once (see the module docstring).
    """

    def __init__(
        self, upstream: frozenset[str] | None = None, max_senders: int = MAX_SENDERS
    ) -> None:
        self.max_senders = check_number(max_senders, "max_senders", minimum=1, integer=True)
        self.upstream = None if upstream is None else frozenset(upstream)
        self._trackers: OrderedDict[Sender, SequenceTracker] = OrderedDict()
        self._expected: set[Sender] = set()
        #: the latest expected sender of each stage name (an upstream's newest instance)
        self._latest: dict[str, Sender] = {}
        #: how many distinct unknown senders were heard
        self.unknown = 0
        #: how many times an expected stage name came with a new id (an upstream restarted)
        self.replaced = 0

    @property
    def senders(self) -> list[Sender]:
        """The senders tracked now, least recently heard first."""
        return list(self._trackers)

    def check(self, sender: Sender, seq: int) -> Arrival:
        """Check ``seq`` against ``sender``'s own sequence."""
        tracker = self._trackers.get(sender)
        new = tracker is None
        replaces = None
        if new:
            tracker = SequenceTracker()
            expected = self._classify(sender)
            if expected:
                replaces = self._latest.get(sender.stage)
                self._latest[sender.stage] = sender
                self._expected.add(sender)
                self.replaced += replaces is not None
            else:
                self.unknown += 1
            self._trackers[sender] = tracker
            self._evict(sender)
        else:
            self._trackers.move_to_end(sender)
        state, missing = tracker.check(seq)
        return Arrival(state, missing, sender, new, sender in self._expected, replaces)

    def _classify(self, sender: Sender) -> bool:
        """Whether a sender heard for the first time is expected."""
        if self.upstream is not None:
            return sender.stage in self.upstream
        if sender in self._expected:  # forgotten and heard again
            return True
        seen = sender.stage in self._latest
        return not seen and len(self._latest) < self.max_senders

    def _evict(self, keep: Sender) -> None:
        """Forget senders beyond :attr:`max_senders`, never ``keep`` (the one just heard)."""
        while len(self._trackers) > self.max_senders:
            others = [s for s in self._trackers if s != keep]
            victim = next((s for s in others if s not in self._expected), others[0])
            del self._trackers[victim]
            if victim != self._latest.get(victim.stage):
                self._expected.discard(victim)
