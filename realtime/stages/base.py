"""The one stage lifecycle: start/stop, context manager, ``running``, a not-started guard.

A stage owns a worker thread that creates its sockets, receives messages from its input
(PULL), hands each to :meth:`Stage.handle`, and sends what that returns downstream (PUSH) and
to the telemetry hub (PUB).

Errors on the data path: a frame that does not decode, or a message that :meth:`Stage.handle`
rejects with :class:`~rt_base.errors.MessageError` ("this message is bad"), is logged with its
kind, run and index, counted as ``bad`` and dropped; the stage goes on.  Any other exception in
``handle`` is a bug: it is logged and counted as ``errors``, and in tests
(:func:`rt_base.debug.reraise_background_errors`) re-raised from :meth:`Stage.stop` /
:meth:`Stage.join`.

Every message a stage sends carries its :attr:`Stage.sender` (its name and an id of this
instance), and its input is checked per sender (:mod:`realtime.stages.input_checks`): gaps,
repeats, restarted upstreams and unknown senders are counted in :data:`COUNTERS`.

Each stage builds itself from its spec (JSON values: its links :data:`LINK_KEYS` and its options)
with :meth:`Stage.from_spec`; the keyword-only parameters of its :meth:`Stage.from_options` are the
options it takes.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import zmq

from realtime.stages.input_checks import InputChecks
from realtime.stages.recovery import Recovery
from rt_base.checks import check_number
from rt_base.debug import reraise_background_errors
from rt_base.errors import ConfigError, MessageError, StageError, WireError
from rt_wire import transport
from rt_wire.message import Message, decode
from rt_wire.sender import Sender

STATUS_PERIOD_S = 1.0
POLL_MS = 50
#: the spec keys every stage takes: where it connects, whether it exits after ``end``, where
#: acks are read and how many times the launcher restarted it (:mod:`realtime.stages.recovery`)
LINK_KEYS = ("in_addr", "out_addr", "telemetry_addr", "exit_on_end", "ack_addr", "incarnation")
#: the counters every stage's status carries (see docs/interfaces.md, "The wire")
COUNTERS = (
    "received",
    "sent",
    "bad",
    "errors",
    "lost",
    "repeated",
    "unknown_senders",
    "upstream_restarts",
    "stale",
    "duplicates",
    "resent",
    "replay_overflow",
)


class Stage(ABC):
    """Base of every pipeline stage.

    Parameters
    ----------
    in_addr : ZMQ endpoint this stage's PULL socket binds (None for a source).
    out_addr : endpoint of the downstream stage's input that the PUSH socket connects to
        (None for a sink).
    telemetry_addr : endpoint of the telemetry hub's input (None: no telemetry).
    exit_on_end : stop by itself after forwarding the session's ``end`` message.
    ack_addr : the telemetry hub's output, where acks are read (None: nothing is kept for a
        restart; see :mod:`realtime.stages.recovery`).
    incarnation : 0 at the first start, n after the launcher restarted the stage n times.
    """

    name = "stage"
    #: how long the input loop waits for a message before turning (and calling :meth:`idle`)
    poll_ms: int = POLL_MS
    #: kinds published to telemetry besides status/log (the console reads these)
    publish_kinds: frozenset[str] = frozenset()
    #: options :meth:`from_options` takes through ``**options`` besides its keyword-only ones
    extra_spec_options: tuple[str, ...] = ()
    #: stage names expected to send on this stage's input; None: see
    #: :func:`~realtime.stages.input_checks.default_upstream`
    upstream: frozenset[str] | None = None

    def __init__(
        self,
        *,
        in_addr: str | None = None,
        out_addr: str | None = None,
        telemetry_addr: str | None = None,
        exit_on_end: bool = True,
        ack_addr: str | None = None,
        incarnation: int = 0,
        context: zmq.Context | None = None,
    ) -> None:
        self.in_addr = in_addr
        self.out_addr = out_addr
        self.telemetry_addr = telemetry_addr
        self.exit_on_end = exit_on_end
        self.log = logging.getLogger(f"mindeye_rt.{self.name}")
        self._ctx = context or zmq.Context.instance()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._seq_out = 0
        self._pub: zmq.Socket | None = None
        self._last_status = 0.0
        #: who this instance is on the wire: stamped on every message it sends
        self.sender = Sender.new(self.name)
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.input_checks = InputChecks(self.name, self.counters, self.report, self.upstream)
        self.recovery = Recovery(
            self.name,
            self.sender,
            in_addr=in_addr,
            out_addr=out_addr,
            ack_addr=ack_addr if telemetry_addr else None,
            incarnation=check_number(incarnation, "incarnation", minimum=0, integer=True),
            counters=self.counters,
            report=self.report,
        )
        self.ended = False

    # -- building from a spec ----------------------------------------------------------------
    @classmethod
    def spec_options(cls) -> tuple[str, ...]:
        """The options this stage's spec takes besides :data:`LINK_KEYS`."""
        return (*(p.name for p in _option_parameters(cls)), *cls.extra_spec_options)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Stage:
        """Build the stage from ``spec``: its links and options, all JSON values.

        Raises
        ------
        ConfigError
            An option this stage does not take, or a required one missing; errors of the
            options' values come from the stage itself.
        """
        options = dict(spec)
        links = {k: options.pop(k) for k in LINK_KEYS if k in options}
        accepted = cls.spec_options()
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ConfigError(
                f"stage {cls.name!r} does not take option(s) {unknown}; it takes {list(accepted)}"
            )
        for param in _option_parameters(cls):
            if param.default is param.empty and param.name not in options:
                raise ConfigError(
                    f"stage {cls.name!r} needs option {param.name!r} (--set {param.name}=VALUE)"
                )
        return cls.from_options(links, **options)

    @classmethod
    def from_options(cls, links: dict[str, Any], **options: Any) -> Stage:
        """Build the stage from its links and checked spec options.

        A stage overrides this with its options as keyword-only parameters (their defaults are
        the spec's defaults); this default passes everything to the constructor.
        """
        return cls(**links, **options)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Stage:
        """Open the sockets and start the worker thread; returns once the sockets are up."""
        if self._thread is not None:
            raise StageError(f"stage {self.name!r} was already started")
        self._thread = threading.Thread(target=self._main, name=f"stage-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            self._thread.join(5)
            raise StageError(f"stage {self.name!r} failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to stop, wait for it, and re-raise its error in test mode."""
        self._check_started()
        self._stop.set()
        self._thread.join(timeout)
        self._reraise()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the stage to finish by itself (after ``end``); True when it has."""
        self._check_started()
        self._thread.join(timeout)
        self._reraise()
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def crashed(self) -> bool:
        """Whether the worker died of an error (the stage's process then exits non-zero)."""
        return self._error is not None

    def __enter__(self) -> Stage:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self.stop()

    def _check_started(self) -> None:
        if self._thread is None:
            raise StageError(f"stage {self.name!r} was not started: call start() first")

    def _reraise(self) -> None:
        if self._error is not None and reraise_background_errors():
            raise self._error

    # -- hooks for subclasses ----------------------------------------------------------------
    @abstractmethod
    def handle(self, msg: Message) -> Iterable[Message]:
        """Process one input message; return the messages to send downstream."""

    def produce(self) -> Iterator[Message]:
        """For sources (no input): yield messages until done."""
        raise NotImplementedError

    def finish(self) -> Iterable[Message]:
        """Called once when ``end`` arrives, before it is forwarded."""
        return ()

    def idle(self) -> Iterable[Message]:
        """Called on every turn of the input loop (at least every ``poll_ms``): messages that
        background work has made ready since the last turn."""
        return ()

    def sockets_open(self) -> None:
        """Called on the worker thread once the sockets are up, before the first message."""
        return None

    def status(self) -> dict:
        """Counters (:data:`COUNTERS`) and health, published every second."""
        return dict(self.counters)

    # -- the worker --------------------------------------------------------------------------
    def _main(self) -> None:
        pull = push = None
        try:
            if self.in_addr:
                pull = transport.data_receiver(self._ctx, self.in_addr)
            if self.out_addr:
                push = transport.data_sender(self._ctx, self.out_addr)
            if self.telemetry_addr:
                self._pub = transport.display_publisher(self._ctx, self.telemetry_addr)
            self.recovery.open(self._ctx)
            self.sockets_open()
        except BaseException as err:  # noqa: BLE001 - reported through start()
            self._error = err
            self._ready.set()
            for s in (pull, push):
                if s is not None:
                    s.close(0)
            return
        self._ready.set()
        try:
            if pull is None:
                self._produce_loop(push)
            else:
                self._consume(pull, push)
        except BaseException as err:  # noqa: BLE001 - a stage reports, never dies silently
            self._error = err
            self.log.error("stage %s crashed: %s\n%s", self.name, err, traceback.format_exc())
        finally:
            self._publish_status(final=True)
            self.recovery.close()
            for s in (pull, push, self._pub):
                if s is not None:
                    s.close()

    def _produce_loop(self, push: zmq.Socket | None) -> None:
        """A source's loop: send what :meth:`produce` yields until it ends (or stop())."""
        for msg in self.produce():
            if self._stop.is_set():
                break
            self._emit(push, [msg])
            self._turn(push)
            self._maybe_status()
        self.ended = True
        self._drain(push)

    def _consume(self, pull: zmq.Socket, push: zmq.Socket | None) -> None:
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        while not self._stop.is_set():
            self._maybe_status()
            ready = self._safe(self.idle)
            if ready:
                self._emit(push, ready)
            self._turn(push)
            if not poller.poll(self.poll_ms):
                continue
            frames = pull.recv_multipart(copy=False)
            now = time.time()
            try:
                msg = decode(frames)
            except WireError as err:
                self.reject(err)
                continue
            if not self.recovery.accepts(msg):  # addressed to this stage's previous process
                continue
            outs = self._check_sequence(msg)
            if outs is None:
                continue
            if self.recovery.is_duplicate(msg, self._out_mark(push)):
                continue
            origin = self.recovery.origin(msg)
            self.counters["received"] += 1
            msg.t[f"{self.name}.received"] = now
            if msg.kind == "end":
                outs += list(self._safe(self.finish))
                outs.append(msg)
                self._emit(push, outs)
                self.recovery.handled(origin, self._out_mark(push))
                self.ended = True
                if self.exit_on_end:
                    self._drain(push)
                    return
                continue
            outs += list(self._safe(lambda m=msg: self.handle(m), msg))
            self._emit(push, outs)
            self.recovery.handled(origin, self._out_mark(push))

    def _check_sequence(self, msg: Message) -> list[Message] | None:
        """Check ``msg.seq`` against its sender's own sequence: None drops a repeat; else the
        messages to send before it (a ``gap`` when messages of this sender went missing)."""
        return self.input_checks.check(msg)

    def _safe(self, fn: Callable[[], Iterable[Message]], msg: Message | None = None):
        """``list(fn())``; a bad message is rejected, any other error logged (and re-raised in
        tests).  ``msg`` is the message ``fn`` handles, if any."""
        try:
            return list(fn())
        except MessageError as err:
            self.reject(err, msg)
            return []
        except Exception as err:
            self.counters["errors"] += 1
            self.log.error("%s failed on a message: %s\n%s", self.name, err, traceback.format_exc())
            self._publish_log("error", f"{type(err).__name__}: {err}")
            if reraise_background_errors():
                raise
            return []

    def reject(self, err: MessageError, msg: Message | None = None) -> None:
        """Drop a bad message: log it (with its kind, run and index) and count it as ``bad``."""
        self.counters["bad"] += 1
        what = "a message" if msg is None else describe(msg)
        text = f"dropped {what}: {err}"
        self.log.warning("%s %s", self.name, text)
        self._publish_log("warning", text)

    def _emit(self, push: zmq.Socket | None, msgs: list[Message]) -> None:
        done = time.time()
        for msg in msgs:
            msg.t.setdefault(f"{self.name}.done", done)
            msg.sender = self.sender
            if push is not None:
                msg.seq = self._seq_out
                self._seq_out += 1
                self.recovery.address(msg)
                self.recovery.keep(msg)
                self._send_blocking(push, msg)
                self.counters["sent"] += 1
            if self._pub is not None and msg.kind in self.publish_kinds:
                transport.try_publish(self._pub, msg)

    def _send_blocking(self, push: zmq.Socket, msg: Message) -> None:
        """Back-pressure: wait for room downstream, but stay responsive to stop()."""
        while True:
            try:
                transport.send(push, msg, flags=zmq.NOBLOCK)
                return
            except zmq.Again:
                if self._stop.is_set():
                    raise StageError(f"{self.name} stopped with messages still unsent") from None
                if self._turn(push):  # the downstream restarted: msg was sent again with the rest
                    return
                time.sleep(0.005)

    # -- restarts (realtime.stages.recovery) --------------------------------------------------
    def _out_mark(self, push: zmq.Socket | None) -> int | None:
        """Our last sequence number sent (None: a sink, or nothing sent yet)."""
        return self._seq_out - 1 if push is not None and self._seq_out else None

    def _turn(self, push: zmq.Socket | None) -> bool:
        """Acks in and out; True when the downstream restarted and was sent all again."""
        return self.recovery.step(push, self._pub, self._stop)

    def _drain(self, push: zmq.Socket | None) -> None:
        """After ``end``: stay until the downstream has released everything, or stop()."""
        self.recovery.drain(push, self._pub, self._stop)

    def _maybe_status(self) -> None:
        if time.monotonic() - self._last_status >= STATUS_PERIOD_S:
            self._publish_status()

    def _publish_status(self, final: bool = False) -> None:
        self._last_status = time.monotonic()
        if self._pub is None:
            return
        meta = {"stage": self.name, "final": final, **self.status()}
        status = Message("status", meta=meta, t={"sent": time.time()}, sender=self.sender)
        transport.try_publish(self._pub, status)

    def report(self, level: str, text: str) -> None:
        """Log ``text`` at ``level`` (``info``, ``warning`` or ``error``) and show it on the
        consoles (the telemetry log)."""
        getattr(self.log, level)(text)
        self._publish_log(level, text)

    def _publish_log(self, level: str, text: str) -> None:
        if self._pub is not None:
            meta = {"stage": self.name, "level": level, "text": text}
            log = Message("log", meta=meta, t={"sent": time.time()}, sender=self.sender)
            transport.try_publish(self._pub, log)


def describe(msg: Message) -> str:
    """``"a 'trial' message (run 'run-01', index 3)"``: which message, for log lines."""
    return f"a {msg.kind!r} message (run {msg.run!r}, index {msg.index!r})"


def _option_parameters(cls: type[Stage]) -> list[inspect.Parameter]:
    """The keyword-only parameters of ``cls.from_options``: the stage's spec options."""
    params = inspect.signature(cls.from_options).parameters.values()
    return [p for p in params if p.kind is p.KEYWORD_ONLY]
