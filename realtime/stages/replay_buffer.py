"""What a stage has sent and its downstream has not released yet, to send again after the
downstream restarts (:mod:`realtime.stages.link_acks`).

Bounded by bytes and by messages: it holds a run and what is in flight (a run of an NSD-size
subject at the source is about 0.6 GB of volumes; the default bound is above it).  When a
message does not fit, the oldest ones are forgotten and counted (``replay_overflow``): the data
path never waits on the buffer, but a restart of the downstream could then lose them, which the
stage reports.
"""

from __future__ import annotations

from collections import deque

from rt_base.checks import check_number
from rt_wire.message import Message

#: default bounds of a replay buffer
MAX_MESSAGES = 20_000
MAX_BYTES = 1 << 30


def message_bytes(msg: Message) -> int:
    """The bytes a buffered message holds (its arrays; headers are small)."""
    return sum(int(a.nbytes) for a in msg.buffers.values()) + 256


class ReplayBuffer:
    """Messages sent and not yet released, oldest first, by sequence number.

    Parameters
    ----------
    max_messages, max_bytes : the bounds (see the module docstring).
    """

    def __init__(self, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES) -> None:
        self.max_messages = check_number(max_messages, "max_messages", minimum=1, integer=True)
        self.max_bytes = check_number(max_bytes, "max_bytes", minimum=1, integer=True)
        self._items: deque[tuple[int, Message, int]] = deque()
        self.bytes = 0
        #: messages forgotten before they were released (a restart could lose them)
        self.overflow = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, msg: Message) -> None:
        """Keep ``msg`` (its ``seq`` set) until it is released."""
        size = message_bytes(msg)
        self._items.append((msg.seq, msg, size))
        self.bytes += size
        while len(self._items) > 1 and (
            len(self._items) > self.max_messages or self.bytes > self.max_bytes
        ):
            self._pop()
            self.overflow += 1

    def release(self, through: int) -> int:
        """Forget every message up to sequence number ``through``; returns how many."""
        n = 0
        while self._items and self._items[0][0] <= through:
            self._pop()
            n += 1
        return n

    def messages(self) -> list[Message]:
        """What is kept, oldest first (to send again)."""
        return [msg for _, msg, _ in self._items]

    def _pop(self) -> None:
        _, _, size = self._items.popleft()
        self.bytes -= size
