"""The console's telemetry receiver: delivery, bad frames, hub restarts, and never stalling
the data path."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from gui.model import SessionModel
from gui.receiver import Receiver
from realtime.stages.base import Stage
from rt_base.errors import StageError
from rt_wire import transport
from rt_wire.message import Message
from rt_wire.telemetry import TelemetryHub
from tests.gui.synthetic import synthetic_stream


def _hub_addrs(base_port: int) -> tuple[str, str]:
    return f"tcp://127.0.0.1:{base_port + 4}", f"tcp://127.0.0.1:{base_port + 5}"


def _until(pred, timeout: float = 10.0, every=None) -> None:
    """Wait for ``pred()``; ``every()`` is called meanwhile (e.g. to publish until a late
    subscriber has joined: ZMQ PUB/SUB drops what is sent before the subscription arrives)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        if every is not None:
            every()
        time.sleep(0.02)


def _publisher(addr: str) -> zmq.Socket:
    return transport.display_publisher(zmq.Context.instance(), addr)


def _seen(model: SessionModel, stage: str) -> bool:
    health = model.health()
    return stage in health and health[stage].state != "waiting"


def test_receiver_delivers_the_stream_to_the_model(base_port):
    hub_in, hub_out = _hub_addrs(base_port)
    hub = TelemetryHub(hub_in, hub_out).start()
    model = SessionModel(dataset_loader=None)
    pub = _publisher(hub_in)
    try:
        with Receiver(hub_out, model) as receiver:
            hello = Message("status", meta={"stage": "hello"})
            _until(lambda: _seen(model, "hello"), every=lambda: transport.try_publish(pub, hello))
            for i, msg in enumerate(synthetic_stream(n_volumes=20)):
                assert transport.try_publish(pub, msg)
                if i % 10 == 0:
                    time.sleep(0.005)  # stay below the small display queues
            _until(lambda: model.snapshot().session.ended)
            snap = model.snapshot()
            assert snap.accuracy.decoded == 3 and snap.trace_time.size == 20
            assert receiver.received > 0 and receiver.running
    finally:
        pub.close(0)
        hub.stop()
    assert not receiver.running


def test_bad_frames_are_logged_and_skipped(base_port):
    hub_in, hub_out = _hub_addrs(base_port)
    hub = TelemetryHub(hub_in, hub_out).start()
    model = SessionModel(dataset_loader=None)
    pub = _publisher(hub_in)
    try:
        with Receiver(hub_out, model) as receiver:
            junk = [b"tr", b"{not json"]
            _until(lambda: model.bad_frames > 0, every=lambda: pub.send_multipart(junk))
            ok = Message("status", meta={"stage": "after-junk"})
            _until(lambda: _seen(model, "after-junk"), every=lambda: transport.try_publish(pub, ok))
            assert receiver.bad >= 1
            assert any("dropped a telemetry frame" in e.text for e in model.snapshot().log)
    finally:
        pub.close(0)
        hub.stop()


def _restart_hub(hub_in: str, hub_out: str) -> TelemetryHub:
    """A new hub on the old addresses (ZMQ frees a closed socket's port asynchronously)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return TelemetryHub(hub_in, hub_out).start()
        except StageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_receiver_reconnects_after_the_hub_restarts(base_port):
    hub_in, hub_out = _hub_addrs(base_port)
    model = SessionModel(dataset_loader=None)
    pub = _publisher(hub_in)
    hub = TelemetryHub(hub_in, hub_out).start()
    try:
        with Receiver(hub_out, model):
            first = Message("status", meta={"stage": "first"})
            _until(lambda: _seen(model, "first"), every=lambda: transport.try_publish(pub, first))
            hub.stop()
            hub = _restart_hub(hub_in, hub_out)  # the same addresses, a new hub
            again = Message("status", meta={"stage": "again"})
            _until(lambda: _seen(model, "again"), every=lambda: transport.try_publish(pub, again))
    finally:
        pub.close(0)
        hub.stop()


def test_receiver_reports_a_bad_address():
    with pytest.raises(Exception, match="'telemetry' must be a ZMQ endpoint"):
        Receiver("localhost:5", SessionModel(dataset_loader=None))
    receiver = Receiver("tcp://127.0.0.1:1", SessionModel(dataset_loader=None)).start()
    with pytest.raises(StageError, match="already started"):
        receiver.start()
    receiver.stop()


class Echo(Stage):
    """A stage that forwards every message and publishes each ``tr`` to telemetry."""

    name = "echo"
    publish_kinds = frozenset({"tr"})

    def handle(self, msg):
        return [msg]


class StalledModel(SessionModel):
    """A console whose model never returns: its receiver stops reading after one batch."""

    def __init__(self) -> None:
        super().__init__(dataset_loader=None)
        self.entered = threading.Event()
        self.release = threading.Event()

    def feed_many(self, msgs) -> None:
        self.entered.set()
        self.release.wait(30)


def _run_data_path(base_port: int, n: int, payload: int) -> float:
    """Seconds to push ``n`` messages through an Echo stage that publishes each one."""
    ctx = zmq.Context.instance()
    a_in, a_out = f"tcp://127.0.0.1:{base_port}", f"tcp://127.0.0.1:{base_port + 1}"
    push = transport.data_sender(ctx, a_in)
    pull = transport.data_receiver(ctx, a_out)
    raw = np.zeros(payload // 4, np.float32)
    try:
        with Echo(in_addr=a_in, out_addr=a_out, telemetry_addr=_hub_addrs(base_port)[0]) as stage:
            start = time.monotonic()
            for i in range(n):
                transport.send(push, Message("tr", seq=i, index=i, buffers={"raw": raw}))
            transport.send(push, Message("end", seq=n))
            got = 0
            while True:
                assert pull.poll(10_000), "the data path stalled"
                msg = transport.recv(pull)
                if msg.kind == "end":
                    break
                got += 1
            elapsed = time.monotonic() - start
            assert stage.join(5)
    finally:
        push.close(0)
        pull.close(0)
    assert got == n  # the data path loses nothing either way
    return elapsed


def test_a_stalled_console_does_not_slow_the_data_path(base_port):
    hub_in, hub_out = _hub_addrs(base_port)
    hub = TelemetryHub(hub_in, hub_out).start()
    n, payload = 300, 256 * 1024  # 75 MB of telemetry: far more than the display queues hold
    try:
        baseline = _run_data_path(base_port, n, payload)
        stalled = StalledModel()
        receiver = Receiver(hub_out, stalled).start()
        raw_sub = transport.display_subscriber(zmq.Context.instance(), hub_out)  # never read
        pub = _publisher(hub_in)
        probe = Message("status", meta={"stage": "probe"})
        _until(lambda: stalled.entered.is_set(), every=lambda: transport.try_publish(pub, probe))
        try:
            with_stall = _run_data_path(base_port, n, payload)
        finally:
            stalled.release.set()
            receiver.stop()
            raw_sub.close(0)
            pub.close(0)
    finally:
        hub.stop()
    print(f"data path: {baseline:.3f} s alone, {with_stall:.3f} s with a stalled console")
    assert with_stall < 2.0 * baseline + 0.5, (baseline, with_stall)
