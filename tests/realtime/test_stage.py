import time

import numpy as np
import pytest
import zmq

from realtime.stages.base import Stage
from realtime.stages.preprocess import PreprocessStage
from rt_base import debug
from rt_base.errors import MessageError, StageError
from rt_wire import transport
from rt_wire.message import Message


class Doubler(Stage):
    """Doubles each TR's ``z``; a ``tr`` without ``z`` is a bad message, a ``log`` trips a bug."""

    name = "doubler"

    def handle(self, msg):
        if msg.kind == "tr":
            if "z" not in msg.buffers:
                raise MessageError("a 'tr' needs a 'z' buffer")
            return [msg.derive("tr", buffers={"z": msg.buffers["z"] * 2})]
        if msg.kind == "log":
            raise RuntimeError("a bug in the handler")
        return [msg]


def _link(base_port):
    ctx = zmq.Context.instance()
    a_in, a_out = f"tcp://127.0.0.1:{base_port}", f"tcp://127.0.0.1:{base_port + 1}"
    push = transport.data_sender(ctx, a_in)
    pull = transport.data_receiver(ctx, a_out)
    return push, pull, a_in, a_out


def _recv_all(pull, until_kind="end", timeout=10.0):
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pull.poll(100):
            msg = transport.recv(pull)
            out.append(msg)
            if msg.kind == until_kind:
                return out
    raise AssertionError(f"no {until_kind!r} within {timeout} s; got {[m.kind for m in out]}")


def test_lifecycle_guards(base_port):
    stage = Doubler(in_addr=f"tcp://127.0.0.1:{base_port}")
    assert not stage.running
    with pytest.raises(StageError, match="not started"):
        stage.stop()
    with stage:
        assert stage.running
        with pytest.raises(StageError, match="already started"):
            stage.start()
    assert not stage.running


def test_bind_conflict_is_a_clear_error(base_port):
    addr = f"tcp://127.0.0.1:{base_port}"
    with Doubler(in_addr=addr):
        with pytest.raises(StageError, match="cannot bind"):
            Doubler(in_addr=addr).start()


def test_bad_frames_are_dropped_and_the_stage_keeps_running(base_port):
    push, pull, a_in, a_out = _link(base_port)
    with Doubler(in_addr=a_in, out_addr=a_out) as stage:
        push.send_multipart([b"tr", b"not json"])
        push.send_multipart([b"tr"])
        transport.send(push, Message("tr", seq=0, buffers={"z": np.ones(3, np.float32)}))
        transport.send(push, Message("end", seq=1))
        msgs = _recv_all(pull)
        assert stage.join(5)
    assert [m.kind for m in msgs] == ["tr", "end"]
    np.testing.assert_array_equal(msgs[0].buffers["z"], 2 * np.ones(3))
    assert stage.counters["bad"] == 2 and stage.counters["errors"] == 0
    assert stage.counters["received"] == 2
    assert "doubler.received" in msgs[0].t and "doubler.done" in msgs[0].t
    push.close()
    pull.close()


def test_lost_message_on_a_link_is_reported_downstream(base_port):
    push, pull, a_in, a_out = _link(base_port)
    with Doubler(in_addr=a_in, out_addr=a_out) as stage:
        for seq in (0, 1, 4):  # 2 and 3 lost in transit
            transport.send(push, Message("tr", seq=seq, buffers={"z": np.zeros(1, np.float32)}))
        transport.send(push, Message("tr", seq=3, buffers={"z": np.zeros(1, np.float32)}))  # late
        transport.send(push, Message("end", seq=5))
        msgs = _recv_all(pull)
        stage.join(5)
    gaps = [m for m in msgs if m.kind == "gap"]
    assert len(gaps) == 1 and gaps[0].meta["lost_messages"] == 2
    assert [m.kind for m in msgs].count("tr") == 3  # the repeat/late one is dropped
    assert stage.counters["lost"] == 2
    assert [m.seq for m in msgs] == list(range(len(msgs)))  # downstream numbering is contiguous
    push.close()
    pull.close()


def test_preprocess_reports_a_lost_volume(base_port):
    mask = np.zeros((4, 5, 3), bool)
    mask[1:3, 1:4, 1] = True
    push, pull, a_in, a_out = _link(base_port)
    rng = np.random.default_rng(0)
    with PreprocessStage(mask, in_addr=a_in, out_addr=a_out):
        seq = iter(range(100))
        transport.send(
            push,
            Message(
                "run_start",
                seq=next(seq),
                run="run-01",
                meta={"tr": 1.6, "n_volumes": 6, "shape": [4, 5, 3]},
            ),
        )
        for k in (0, 1, 2, 4):  # volume 3 never arrives, 5 is missing at the end
            vol = rng.normal(100, 1, mask.shape).astype(np.float32)
            transport.send(
                push,
                Message("volume", seq=next(seq), run="run-01", index=k, buffers={"volume": vol}),
            )
        transport.send(push, Message("run_end", seq=next(seq), run="run-01"))
        transport.send(push, Message("end", seq=next(seq)))
        msgs = _recv_all(pull)
    gaps = [m.meta["lost_volumes"] for m in msgs if m.kind == "gap"]
    assert gaps == [[3], [5]]
    trs = [m for m in msgs if m.kind == "tr"]
    assert [m.index for m in trs] == [0, 1, 2, 4]
    assert trs[0].buffers["raw"].shape == (int(mask.sum()),)
    push.close()
    pull.close()


def test_a_bad_message_is_logged_counted_and_the_stage_goes_on(base_port, caplog):
    push, pull, a_in, a_out = _link(base_port)
    with Doubler(in_addr=a_in, out_addr=a_out) as stage:
        transport.send(push, Message("tr", seq=0, run="run-01", index=0, buffers={"z": np.ones(2)}))
        transport.send(push, Message("tr", seq=1, run="run-01", index=1))  # no 'z': bad
        transport.send(push, Message("tr", seq=2, run="run-01", index=2, buffers={"z": np.ones(2)}))
        transport.send(push, Message("end", seq=3))
        msgs = _recv_all(pull)
        assert stage.join(5)  # a bad message is not a bug: nothing re-raised, even in tests
    assert [(m.kind, m.index) for m in msgs] == [("tr", 0), ("tr", 2), ("end", None)]
    assert stage.status()["bad"] == 1 and stage.status()["errors"] == 0
    assert stage.status()["received"] == 4
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "'tr' message (run 'run-01', index 1)" in text and "needs a 'z' buffer" in text
    push.close()
    pull.close()


def test_any_other_error_in_handle_is_a_bug_that_tests_see(base_port):
    push, pull, a_in, a_out = _link(base_port)
    stage = Doubler(in_addr=a_in, out_addr=a_out).start()
    transport.send(push, Message("log", seq=0))
    with pytest.raises(RuntimeError, match="a bug in the handler"):
        stage.join(5)
    assert stage.counters["errors"] == 1 and stage.counters["bad"] == 0
    push.close()
    pull.close()


def test_in_production_a_bug_is_logged_and_the_stage_goes_on(base_port, monkeypatch):
    monkeypatch.setenv(debug.ENV_VAR, "0")  # production: log, count, go on
    push, pull, a_in, a_out = _link(base_port)
    with Doubler(in_addr=a_in, out_addr=a_out) as stage:
        transport.send(push, Message("log", seq=0))
        transport.send(push, Message("tr", seq=1, buffers={"z": np.ones(1)}))
        transport.send(push, Message("end", seq=2))
        msgs = _recv_all(pull)
        assert stage.join(5)
    assert [m.kind for m in msgs] == ["tr", "end"]
    assert stage.counters["errors"] == 1
    push.close()
    pull.close()
