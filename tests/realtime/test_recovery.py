"""The restart protocol's parts without a session: the replay buffer, acks and releases, the
supervisor's restarts, a crashed stage's exit code (issue 11 item 4)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from realtime.config import StreamConfig
from realtime.stages.base import Stage
from realtime.stages.link_acks import (
    LINK_FROM,
    LINK_TO,
    InputAcks,
    OutputLink,
    message_key,
    origin_of,
)
from realtime.stages.replay_buffer import ReplayBuffer, message_bytes
from realtime.summary_restarts import read_restarts, restart_figures
from realtime.supervisor import RESTARTS_FILE, Supervisor, describe_exit
from rt_base.errors import ConfigError, StageError
from rt_wire.message import Message
from rt_wire.sender import Sender

UP = Sender("preprocess", "1-aaaaaa")
ME = Sender("estimate", "2-bbbbbb")


def _msg(kind, seq, run="run-01", index=None, sender=UP, **meta):
    return Message(kind, seq=seq, run=run, index=index, meta=dict(meta), sender=sender)


# -- the replay buffer ---------------------------------------------------------------------------
def test_replay_buffer_keeps_until_released_in_order():
    buf = ReplayBuffer()
    for seq in range(5):
        buf.add(_msg("tr", seq, index=seq))
    assert [m.seq for m in buf.messages()] == [0, 1, 2, 3, 4]
    assert buf.release(2) == 3 and [m.seq for m in buf.messages()] == [3, 4]
    assert buf.release(2) == 0 and len(buf) == 2 and buf.overflow == 0


def test_replay_buffer_is_bounded_by_messages_and_bytes():
    buf = ReplayBuffer(max_messages=3)
    for seq in range(5):
        buf.add(_msg("tr", seq))
    assert [m.seq for m in buf.messages()] == [2, 3, 4] and buf.overflow == 2
    big = Message("volume", buffers={"volume": np.zeros(1000, np.float32)})
    buf = ReplayBuffer(max_bytes=2 * message_bytes(big))
    for seq in range(4):
        big.seq = seq
        buf.add(Message("volume", seq=seq, buffers=big.buffers))
    assert len(buf) == 2 and buf.overflow == 2 and buf.bytes == 2 * message_bytes(big)
    with pytest.raises(ConfigError, match="max_messages"):
        ReplayBuffer(max_messages=0)


# -- the receiving side --------------------------------------------------------------------------
def test_a_restarted_stage_takes_only_messages_addressed_to_it():
    first = InputAcks("estimate", ME, "tcp://127.0.0.1:1", incarnation=0)
    assert first.accepts(_msg("tr", 0))  # addressed to nobody: the first instance takes it
    assert first.accepts(_msg("tr", 1, **{LINK_TO: ME.id}))
    later = InputAcks("estimate", Sender("estimate", "3-cccccc"), "tcp://127.0.0.1:1", 1)
    assert not later.accepts(_msg("tr", 0))
    assert not later.accepts(_msg("tr", 1, **{LINK_TO: ME.id}))  # the old instance's
    msg = _msg("tr", 2, **{LINK_TO: "3-cccccc"})
    assert later.accepts(msg) and LINK_TO not in msg.meta  # the stage never sees the address


def test_duplicates_are_found_by_kind_run_and_index_whoever_sends_them():
    acks = InputAcks("estimate", ME, "a", 0)
    acks.handled(origin_of(_msg("tr", 0, index=4)), None)
    other = Sender("preprocess", "9-ffffff")
    assert acks.is_duplicate(_msg("tr", 17, index=4, sender=other))
    assert not acks.is_duplicate(_msg("tr", 1, index=5))
    assert not acks.is_duplicate(_msg("trial", 1, index=4))
    assert not acks.is_duplicate(_msg("tr", 1, run="run-02", index=4))
    gap = _msg("gap", 3, lost_volumes=[7], sender=UP)
    gap.meta["sender"] = str(UP)
    acks.handled(origin_of(gap), None)
    again = _msg("gap", 0, lost_volumes=[7], sender=other)
    again.meta["sender"] = str(other)
    assert acks.is_duplicate(again)
    assert message_key(again) != message_key(_msg("gap", 0, lost_volumes=[8]))


def test_input_is_released_at_run_end_once_the_output_is_released():
    acks = InputAcks("estimate", ME, "tcp://x:1", 0)
    acks.handled(origin_of(_msg("run_start", 0)), out_mark=0)
    acks.handled(origin_of(_msg("tr", 1, index=0)), out_mark=1)
    acks.release(1, sink=False)
    assert acks.released == {}  # no run boundary yet: the run's state still needs it
    acks.handled(origin_of(_msg("run_end", 2)), out_mark=3)
    acks.release(2, sink=False)
    assert acks.released == {}  # our run_end (seq 3) not yet released downstream
    acks.release(3, sink=False)
    assert acks.released == {"preprocess": (UP, 2)} and acks.last_released_run == "run-01"
    ack = acks.ack_message()
    assert ack.kind == "ack" and ack.sender == ME
    assert ack.meta["through"] == {str(UP): 2} and ack.meta["in_addr"] == "tcp://x:1"
    assert ack.meta["released_run"] == "run-01" and ack.meta["incarnation"] == 0


def test_a_sink_releases_at_once_and_a_restarted_upstream_replaces_the_old():
    acks = InputAcks("recorder", ME, "a", 0)
    acks.handled(origin_of(_msg("run_end", 5)), out_mark=None)
    new = Sender("preprocess", "7-dddddd")
    acks.handled(origin_of(_msg("run_end", 9, run="run-02", sender=new)), out_mark=None)
    acks.release(None, sink=True)
    assert acks.ack_message().meta["through"] == {str(new): 9}


# -- the sending side ----------------------------------------------------------------------------
def _ack(sender, through=None, incarnation=0, in_addr="tcp://x:1", run=None):
    meta = {"in_addr": in_addr, "incarnation": incarnation, "through": through or {}}
    meta["released_run"] = run
    return Message("ack", meta=meta, sender=sender)


def test_output_link_resends_only_to_a_restarted_downstream():
    link = OutputLink("tcp://x:1", UP)
    msg = _msg("tr", 0)
    link.address(msg)
    assert LINK_TO not in msg.meta  # nobody known yet
    assert not link.on_ack(_ack(ME, in_addr="tcp://y:2"))  # another link's ack
    assert not link.heard
    assert not link.on_ack(_ack(ME))  # the first instance: nothing to send again
    assert link.downstream == ME and link.heard
    link.address(msg)
    assert msg.meta[LINK_TO] == ME.id
    assert not link.on_ack(_ack(ME, through={str(UP): 4}, run="run-01"))
    assert link.through == 4 and link.released_run == "run-01"
    assert not link.on_ack(_ack(ME, through={str(UP): 2}))  # an older ack never goes back
    assert link.through == 4
    restarted = Sender("estimate", "5-eeeeee")
    assert link.on_ack(_ack(restarted, incarnation=1))
    assert not link.on_ack(_ack(restarted, incarnation=1))  # told once


def _take(acks: InputAcks, msg) -> bool:
    """What the stage loop does with one message: True when it is handled (not a duplicate)."""
    if acks.is_duplicate(msg):
        return False
    acks.handled(origin_of(msg), out_mark=None)
    return True


def test_a_stage_in_another_run_takes_a_run_again_from_its_start():
    """Taken back to an older run (a restarted upstream), then sent a newer run it had begun:
    a stage with per-run state takes that run again from its run_start; a sink never does."""
    for retake in (True, False):
        acks = InputAcks("estimate", ME, "tcp://x:1", 0, retake=retake)
        assert _take(acks, _msg("run_start", 0, run="run-05"))
        assert _take(acks, _msg("tr", 1, run="run-05", index=0))
        assert _take(acks, _msg("run_start", 2, run="run-02"))  # an older run, never handled
        again = [_msg("run_start", 3, run="run-05"), _msg("tr", 4, run="run-05", index=0)]
        assert [_take(acks, m) for m in again] == [retake, retake]
        assert _take(acks, _msg("tr", 5, run="run-05", index=1))  # new: in its run's state
    acks = InputAcks("estimate", ME, "tcp://x:1", 0, retake=True)
    assert _take(acks, _msg("run_start", 0, run="run-05"))
    assert not _take(acks, _msg("run_start", 1, run="run-05"))  # its own run: a duplicate


def test_a_sinks_ack_says_the_last_run_it_has_whole():
    acks = InputAcks("recorder", ME, "tcp://x:1", 0)
    _take(acks, _msg("run_end", 0, run="run-09"))
    acks.release(None, sink=True)
    assert acks.ack_message().meta["released_run"] == "run-09"
    acks.complete_run = lambda: "run-40"  # the recorder's, from its record
    assert acks.ack_message().meta["released_run"] == "run-40"


def test_the_tail_of_a_replaced_upstream_instance_is_dropped():
    """Once a newer instance of an upstream stage has sent, what still comes from an older one
    (queued before it was killed; a PULL socket takes its peers in turn) is stale."""
    inputs = InputAcks("estimate", ME, "tcp://x:1", 0)
    old, new = Sender("preprocess", "1-aaaaaa"), Sender("preprocess", "7-ffffff")

    def tr(sender, incarnation, index):
        return _msg("tr", index, index=index, sender=sender, **{LINK_FROM: incarnation})

    assert inputs.accepts(tr(old, 2, 0))
    assert inputs.accepts(tr(old, 2, 1))  # its tail before the new instance spoke: taken
    assert inputs.accepts(tr(new, 3, 0))
    assert not inputs.accepts(tr(old, 2, 2))  # after: dropped
    assert inputs.accepts(tr(new, 3, 1))
    msg = tr(new, 3, 2)
    assert inputs.accepts(msg) and LINK_FROM not in msg.meta  # not passed on
    assert inputs.accepts(tr(Sender("source", "2-cccccc"), 0, 0))  # another stage: apart
    assert inputs.accepts(_msg("tr", 9, index=9, sender=old))  # no incarnation: recovery off
    link = OutputLink("tcp://y:2", ME, incarnation=4)
    out = _msg("tr", 0, sender=ME)
    link.address(out)
    assert out.meta[LINK_FROM] == 4


# -- the supervisor ------------------------------------------------------------------------------
def _launcher(codes: list[int]):
    """A launch() whose processes exit with ``codes`` in turn (then run until stopped)."""
    calls = []

    def launch(name, incarnation):
        calls.append((name, incarnation))
        code = codes.pop(0) if codes else None
        script = "import time; time.sleep(60)" if code is None else f"raise SystemExit({code})"
        return subprocess.Popen([sys.executable, "-c", script])

    return launch, calls


def _wait_exit(sup, name):
    sup.procs[name].wait(10)


def test_supervisor_restarts_a_dead_stage_and_records_it(tmp_path):
    launch, calls = _launcher([3])
    lines = []
    sup = Supervisor(launch, tmp_path, max_restarts=2, log=lines.append)
    sup.start("decode")
    _wait_exit(sup, "decode")
    assert sup.check() == ["decode"]
    assert calls == [("decode", 0), ("decode", 1)]
    assert (tmp_path / "logs" / "decode.pid").read_text().strip() == str(sup.procs["decode"].pid)
    sup.procs["decode"].send_signal(signal.SIGKILL)
    _wait_exit(sup, "decode")
    assert sup.check() == ["decode"] and calls[-1] == ("decode", 2)
    rows = read_restarts(tmp_path)
    assert [r["exit"] for r in rows] == ["exit code 3", "signal SIGKILL"]
    assert [r["restart"] for r in rows] == [1, 2]
    assert "stage 'decode' died (signal SIGKILL); restarted it (2 of at most 2)" in lines[-1]
    sup.procs["decode"].send_signal(signal.SIGKILL)
    _wait_exit(sup, "decode")
    with pytest.raises(StageError, match=r"died \(signal SIGKILL\) after 2 restart"):
        sup.check()
    sup.stop_all()


def test_supervisor_leaves_a_clean_exit_alone(tmp_path):
    launch, calls = _launcher([0])
    sup = Supervisor(launch, tmp_path, max_restarts=1, log=print)
    sup.start("source")
    _wait_exit(sup, "source")
    assert sup.check() == [] and sup.exited("source") == 0 and len(calls) == 1
    assert not (tmp_path / RESTARTS_FILE).exists()


def test_bad_max_restarts_is_refused_clearly(tmp_path):
    with pytest.raises(ConfigError, match="'max_restarts'.*-1"):
        StreamConfig(replay="tiny", max_restarts=-1)
    with pytest.raises(ConfigError, match="max_restarts"):
        Supervisor(lambda n, i: None, tmp_path, max_restarts=1.5, log=print)
    assert describe_exit(-9) == "signal SIGKILL" and describe_exit(2) == "exit code 2"


def test_summary_says_whether_anything_was_lost(tmp_path):
    assert restart_figures(tmp_path, 0, 5, 5)["restarts"] == []
    (tmp_path / RESTARTS_FILE).write_text(
        json.dumps({"stage": "decode", "exit": "signal SIGKILL", "restart": 1, "time": 1.0})
        + "\n{cut"
    )
    figures = restart_figures(tmp_path, 0, 5, 5)
    assert figures["restarts_per_stage"] == {"decode": 1} and figures["nothing_lost"] is True
    assert restart_figures(tmp_path, 2, 5, 5)["nothing_lost"] is False
    assert restart_figures(tmp_path, 0, 4, 5)["nothing_lost"] is False
    assert restart_figures(tmp_path, None, 4, 5)["nothing_lost"] is None


# -- a crashed stage's exit code -----------------------------------------------------------------
class _Crashing(Stage):
    name = "crashing"

    def handle(self, msg):
        return ()

    def produce(self):
        time.sleep(0.3)  # after start() has returned
        yield Message("run_start", run="run-01")
        raise RuntimeError("boom")


def test_a_crashed_stage_exits_non_zero(monkeypatch):
    from realtime.cli import _run_stage

    monkeypatch.delenv("MINDEYE_RT_RAISE")  # production: the error is logged, not re-raised
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stage = _Crashing()
        assert _run_stage(stage) == 1 and stage.crashed
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_release_names_the_upstream_even_when_the_stage_forwards_the_message():
    acks = InputAcks("estimate", ME, "a", 0)
    msg = _msg("run_end", 7)
    origin = origin_of(msg)
    msg.sender, msg.seq = ME, 99  # a stage forwards the object with its own stamp
    acks.handled(origin, out_mark=None)
    acks.release(None, sink=True)
    assert acks.released == {"preprocess": (UP, 7)}


def test_a_stage_process_freezes_its_start_up_objects_before_it_starts(monkeypatch):
    import gc

    from realtime.cli import _run_stage

    monkeypatch.delenv("MINDEYE_RT_RAISE")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    gc.unfreeze()
    frozen_at_start = []
    stage = _Crashing()
    original = stage.start
    stage.start = lambda: (frozen_at_start.append(gc.get_freeze_count()), original())[1]
    try:
        _run_stage(stage)
        assert frozen_at_start and frozen_at_start[0] > 10_000  # pytest, numpy, zmq ...
    finally:
        gc.unfreeze()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_background_nice_is_checked_where_it_is_given(capsys):
    from realtime.cli import main

    with pytest.raises(ConfigError, match="'background_nice' must be"):
        StreamConfig(replay="tiny", background_nice=20)
    with pytest.raises(ConfigError, match="'background_nice' must be"):
        StreamConfig(replay="tiny", background_nice=-1)
    assert StreamConfig(replay="tiny").background_nice == 5
    assert main(["stage", "recorder", "--nice", "-3"]) != 0  # refused before the stage starts
    assert "'nice' must be" in capsys.readouterr().err
