"""The replay source's control channel and the pacer behind it (no Qt)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import zmq

from gui.control import ControlClient
from realtime.stages.source import ReplaySource
from rt_base.errors import ConfigError, StageError
from rt_wire import transport
from tests.gui.synthetic import write_tiny_dataset

# -- the pacer -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("ctl") / "ds", n_volumes=40, tr=1.0)


def _addrs(port: int) -> tuple[str, str]:
    return f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}"


class Sink:
    """Collects what the source sends (a PULL on the data path) on a thread."""

    def __init__(self, addr: str) -> None:
        self.msgs: list = []
        self.times: list[float] = []
        self._sock = transport.data_receiver(zmq.Context.instance(), addr)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._sock.poll(20):
                msg = transport.recv(self._sock)
                self.msgs.append(msg)
                self.times.append(time.monotonic())

    def volumes(self) -> list[int]:
        return [m.index for m in self.msgs if m.kind == "volume"]

    def kinds(self) -> list[str]:
        return [m.kind for m in self.msgs]

    def wait_for(self, pred, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {self.kinds()[-5:]}")
            time.sleep(0.01)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close(0)


@pytest.fixture
def session(dataset, base_port):
    data_addr, control_addr = _addrs(base_port)
    sink = Sink(data_addr)
    source = ReplaySource(
        str(dataset.root), speed=25.0, out_addr=data_addr, control_addr=control_addr
    )
    client = ControlClient(control_addr, timeout_s=2.0)
    source.start()
    yield source, sink, client
    client.close()
    if source.running:
        source.stop()
    sink.close()


def test_pause_stops_volumes_and_resume_continues_without_loss(session):
    source, sink, client = session
    sink.wait_for(lambda: len(sink.volumes()) >= 5)
    reply = client.send("pause")
    assert reply["ok"] and reply["state"]["paused"] is True
    time.sleep(0.1)  # at most the volume already due may still arrive
    n_paused = len(sink.volumes())
    time.sleep(0.4)  # 10 volumes' worth at 25x
    assert len(sink.volumes()) == n_paused
    assert client.send("resume")["state"]["paused"] is False
    sink.wait_for(lambda: "end" in sink.kinds())
    assert source.join(5)
    assert sink.volumes() == list(range(40))  # every volume, in order, none twice
    gaps = np.diff(sink.times[sink.kinds().index("volume") :])
    assert gaps.max() >= 0.4  # the pause


def test_speed_change_takes_effect_mid_run(session):
    source, sink, client = session
    sink.wait_for(lambda: len(sink.volumes()) >= 4)
    assert client.send("speed", 100.0)["state"]["speed"] == 100.0
    start = time.monotonic()
    sink.wait_for(lambda: "end" in sink.kinds())
    # the remaining ~36 volumes at 100x (0.36 s) instead of 25x (1.44 s)
    assert time.monotonic() - start < 1.0
    assert source.speed == 100.0
    assert sink.volumes() == list(range(40))


def test_stop_ends_the_replay_cleanly(session):
    source, sink, client = session
    sink.wait_for(lambda: len(sink.volumes()) >= 5)
    assert client.send("stop")["state"]["stopping"] is True
    sink.wait_for(lambda: "end" in sink.kinds(), timeout=5)
    assert source.join(5)
    kinds = sink.kinds()
    assert kinds[-2:] == ["run_end", "end"]
    run_end = sink.msgs[-2]
    n = len(sink.volumes())
    assert n < 40
    assert run_end.meta["stopped"] is True and run_end.meta["n_volumes_sent"] == n
    assert sink.msgs[-1].meta["stopped"] is True


def test_bad_commands_are_answered_with_an_error_and_the_source_goes_on(session, base_port):
    source, sink, client = session
    with pytest.raises(ConfigError, match="'cmd' must be one of .*'jump'"):
        client.send("jump")
    raw = zmq.Context.instance().socket(zmq.REQ)
    raw.setsockopt(zmq.RCVTIMEO, 2000)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(_addrs(base_port)[1])
    try:
        for request, match in [
            (b'{"cmd": "jump"}', "'cmd' must be one of"),
            (b"not json", "must be JSON"),
            (b"[1, 2]", "must be a JSON object"),
            (b'{"cmd": "speed", "value": -2}', "'speed' must be a non-negative number, got -2"),
            (b'{"cmd": "speed"}', "needs a 'value'"),
            (b'{"cmd": "pause", "value": 3}', "takes no 'value'"),
            (b'{"cmd": "pause", "extra": 1}', "only 'cmd' and 'value'"),
        ]:
            raw.send(request)
            reply = json.loads(raw.recv())
            assert reply["ok"] is False and match in reply["error"], (request, reply)
    finally:
        raw.close(0)
    state = client.send("state")["state"]
    assert state["paused"] is False and state["speed"] == 25.0
    client.send("speed", 0.0)  # the rest as fast as possible
    sink.wait_for(lambda: "end" in sink.kinds())
    assert sink.volumes() == list(range(40))


def test_client_reports_a_source_that_does_not_answer(base_port):
    client = ControlClient(_addrs(base_port)[1], timeout_s=0.2)
    with pytest.raises(StageError, match="did not answer 'pause' within 0.2 s"):
        client.send("pause")
    with pytest.raises(StageError, match="did not answer"):  # usable again after a timeout
        client.send("resume")
    client.close()


def test_control_address_conflict_is_a_clear_error(dataset, base_port):
    data_addr, control_addr = _addrs(base_port)
    blocker = zmq.Context.instance().socket(zmq.REP)
    blocker.bind(control_addr)
    try:
        source = ReplaySource(
            str(dataset.root), speed=0, out_addr=data_addr, control_addr=control_addr
        )
        with pytest.raises(StageError, match="cannot bind 'control_addr'"):
            source.start()
    finally:
        blocker.close(0)
    with pytest.raises(ConfigError, match="'control_addr' must be a ZMQ endpoint"):
        ReplaySource(str(dataset.root), control_addr="localhost:5")
