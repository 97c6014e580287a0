"""Where a restarted source resumes (issue 11 item 4): after the last of its runs that any stage
says it released, not only its direct downstream, which may have been restarted too and then
has released nothing yet (the source sent the whole session again: seen in the soak benchmark,
the recorder got run_start of the first run again mid-session)."""

from __future__ import annotations

import threading

import pytest
import zmq

from realtime.stages.recovery import Recovery
from rt_wire import transport
from rt_wire.message import Message
from rt_wire.sender import Sender

ACKS = "inproc://source-resume-acks"
OUT = "tcp://127.0.0.1:1"  # the source's output: preprocess's input
RUNS = ["run-01", "run-02", "run-03", "run-04", "run-05"]


def _ack(stage: str, n: int, in_addr: str, run: str | None, incarnation: int = 0) -> Message:
    meta = {"stage": stage, "in_addr": in_addr, "incarnation": incarnation, "through": {}}
    meta["released_run"] = run
    return Message("ack", meta=meta, sender=Sender(stage, f"{n}-abcdef"))


@pytest.fixture
def hub():
    """The telemetry hub's output, publishing ``acks`` over and over until the test ends."""
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.bind(ACKS)
    state = {"acks": [], "stop": threading.Event()}

    def publish():
        while not state["stop"].wait(0.02):
            for ack in list(state["acks"]):
                transport.try_publish(pub, ack)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield ctx, state
    state["stop"].set()
    thread.join(2)
    pub.close(0)
    ctx.term()


def _restarted_source(ctx) -> Recovery:
    recovery = Recovery(
        "source",
        Sender("source", "9-ffffff"),
        in_addr=None,
        out_addr=OUT,
        ack_addr=ACKS,
        incarnation=1,
        counters={"stale": 0, "duplicates": 0, "resent": 0, "replay_overflow": 0},
        report=lambda level, text: None,
    )
    recovery.open(ctx)
    return recovery


def test_a_source_resumes_after_the_last_run_released_anywhere(hub):
    ctx, state = hub
    state["acks"] = [
        _ack("preprocess", 1, OUT, None, incarnation=3),  # restarted too: released nothing yet
        _ack("estimate", 2, "tcp://127.0.0.1:2", "run-03"),
        _ack("decode", 3, "tcp://127.0.0.1:3", "run-02"),  # behind: an older ack
        _ack("recorder", 4, "tcp://127.0.0.1:4", "other-run"),  # not one of the source's runs
    ]
    recovery = _restarted_source(ctx)
    try:
        assert recovery.resume_point(lambda: False, None, RUNS) == "run-03"
        assert recovery.output.released_run is None  # its downstream alone: from the start
    finally:
        recovery.close()


def test_nothing_released_anywhere_resumes_from_the_start(hub):
    ctx, state = hub
    state["acks"] = [_ack("preprocess", 1, OUT, None, incarnation=1)]
    recovery = _restarted_source(ctx)
    try:
        assert recovery.resume_point(lambda: False, None, RUNS) is None
    finally:
        recovery.close()


def test_without_the_run_order_the_downstreams_answer_is_taken(hub):
    """A scanner source without a design does not know its runs ahead."""
    ctx, state = hub
    state["acks"] = [
        _ack("preprocess", 1, OUT, "run-02"),
        _ack("estimate", 2, "tcp://127.0.0.1:2", "run-04"),
    ]
    recovery = _restarted_source(ctx)
    try:
        assert recovery.resume_point(lambda: False, None) == "run-02"
    finally:
        recovery.close()
