"""The console's telemetry receiver: a background thread from the hub into the model.

It subscribes (ZMQ SUB) to the session's telemetry hub, reads on its own thread, and hands
batches to :meth:`gui.model.SessionModel.feed_many`.  The pipeline never waits on it: the hub
and the stages publish without blocking and drop what a slow subscriber cannot take.

Volumes (megabytes each, and only the newest one is shown) come on a socket of their own with a
tiny queue; everything else (TR means, trials, retrievals, status, logs, and reconstructions:
one image per trial, each kept, as each marks its trial) on a second socket with a deeper one,
which ZMQ's I/O thread fills even while the GUI holds the interpreter, so a burst of volumes
cannot crowd out a retrieval.  When the receiver falls
behind it skips to the newest state: of the volumes waiting in a batch only the newest is
shown (the skipped ones are counted).  A hub that restarts is reconnected to by ZMQ; a new
session is recognised by the model.  Frames that fail validation are logged and skipped.

Errors in the model are logged and the thread goes on; where
:func:`rt_base.debug.reraise_background_errors` says so (the test suite) the first one is
re-raised by :meth:`Receiver.stop`.
"""

from __future__ import annotations

import logging
import threading
import traceback

import zmq

from gui.model import SessionModel
from rt_base.checks import check_address
from rt_base.debug import reraise_background_errors
from rt_base.errors import MindEyeRTError, StageError, WireError
from rt_wire import transport
from rt_wire.message import KINDS, Message, decode

log = logging.getLogger("mindeye_rt.console")

BATCH = 500  # most messages taken per wake-up and socket
POLL_MS = 100
#: kinds of which only the newest of a batch matters (the display shows the latest one)
LATEST_ONLY = frozenset({"volume"})
#: kinds read on their own socket with a tiny queue (large, and only the newest is shown)
BULKY = ("volume",)
BULKY_HWM = 4
SMALL_HWM = 500  # queued small messages (a TR of subj01 is 126 kB: at most ~63 MB)


def channels(topics: tuple[str, ...]) -> list[tuple[tuple[str, ...], int]]:
    """Split subscriptions into ``(topics, receive HWM)`` per socket: bulky kinds apart."""
    wanted = tuple(KINDS) if topics == ("",) else tuple(topics)
    bulky = tuple(t for t in wanted if t in BULKY)
    small = tuple(t for t in wanted if t not in BULKY)
    return [(group, hwm) for group, hwm in ((small, SMALL_HWM), (bulky, BULKY_HWM)) if group]


def subscriber(ctx: zmq.Context, addr: str, topics: tuple[str, ...], hwm: int) -> zmq.Socket:
    """A SUB socket on ``addr`` for ``topics`` with receive high-water mark ``hwm`` (a CURVE
    client when the process has security: :func:`rt_wire.curve_auth.use_security`)."""
    return transport.display_subscriber(ctx, addr, topics, hwm=hwm)


class Receiver:
    """Reads telemetry from ``addr`` into ``model`` on a daemon thread.

    Parameters
    ----------
    addr : the telemetry hub's output endpoint (``StreamConfig.addresses()["telemetry"]``).
    model : where messages go (anything with ``feed_many``, ``note_skipped`` and
        ``note_bad_frame``).
    topics : message kinds to subscribe to (default: all).
    context : ZMQ context (default: the process-wide one).
    """

    def __init__(
        self,
        addr: str,
        model: SessionModel,
        *,
        topics: tuple[str, ...] = ("",),
        context: zmq.Context | None = None,
    ) -> None:
        self.addr = check_address(addr, "telemetry")
        self.model = model
        self.topics = tuple(topics)
        self._ctx = context or zmq.Context.instance()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.received = 0
        self.skipped = 0
        self.bad = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Receiver:
        """Connect and start reading; returns once the socket is up."""
        if self._thread is not None:
            raise StageError("the telemetry receiver was already started")
        self._thread = threading.Thread(target=self._main, name="console-receiver", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise StageError(f"cannot subscribe to telemetry at {self.addr!r}: {self._error}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and close the socket (re-raises a worker error in test mode)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout)
        if self._error is not None and reraise_background_errors():
            raise self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the thread --------------------------------------------------------------------------
    def _main(self) -> None:
        socks: list[zmq.Socket] = []
        try:
            for topics, hwm in channels(self.topics):
                socks.append(subscriber(self._ctx, self.addr, topics, hwm))
        except (zmq.ZMQError, MindEyeRTError) as err:
            for sock in socks:
                sock.close(0)
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        for sock in socks:
            poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(POLL_MS):
                    continue
                batch = [m for sock in socks for m in self._drain(sock)]  # small ones first
                if batch:
                    self._deliver(batch)
        finally:
            for sock in socks:
                sock.close(0)

    def _drain(self, sock: zmq.Socket) -> list[Message]:
        """Everything waiting (up to :data:`BATCH`), decoded; bad frames logged and skipped."""
        msgs: list[Message] = []
        while len(msgs) < BATCH:
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                msgs.append(decode(frames))
            except WireError as err:
                self.bad += 1
                log.warning("console dropped a telemetry frame: %s", err)
                self.model.note_bad_frame(err)
        self.received += len(msgs)
        return msgs

    def _deliver(self, batch: list[Message]) -> None:
        kept = skip_to_latest(batch)
        skipped = len(batch) - len(kept)
        if skipped:
            self.skipped += skipped
            self.model.note_skipped(skipped)
        try:
            self.model.feed_many(kept)
        except Exception as err:  # noqa: BLE001 - a display bug must not end the display
            log.error("console model failed on a message: %s\n%s", err, traceback.format_exc())
            if self._error is None:
                self._error = err


def skip_to_latest(batch: list[Message]) -> list[Message]:
    """Drop all but the newest message of each :data:`LATEST_ONLY` kind and run, keeping
    the order of the rest (every trace point, trial and retrieval is kept)."""
    newest: dict[tuple[str, str | None], int] = {}
    for i, msg in enumerate(batch):
        if msg.kind in LATEST_ONLY:
            newest[(msg.kind, msg.run)] = i
    return [
        m for i, m in enumerate(batch) if m.kind not in LATEST_ONLY or newest[(m.kind, m.run)] == i
    ]
