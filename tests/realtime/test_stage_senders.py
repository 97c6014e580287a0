"""A stage's input under hostile or surprising senders, over a real PUSH/PULL pair on loopback:
junk frames, a forged sequence number, an unknown sender, a restarted upstream."""

import logging

import numpy as np

from realtime.stages.input_checks import MAX_REPORTED_SENDERS, default_upstream
from realtime.stages.preprocess import PreprocessStage
from rt_wire import transport
from rt_wire.message import Message
from rt_wire.sender import Sender
from tests.realtime.test_stage import Doubler, _link, _recv_all

REAL = Sender("source", "100-aaaaaaaaaaaa")


class FromSource(Doubler):
    """A Doubler that knows its upstream is the source."""

    name = "fromsource"
    upstream = frozenset({"source"})


def _tr(seq, sender=REAL, index=None):
    return Message("tr", seq=seq, index=index, sender=sender, buffers={"z": np.ones(2, "f4")})


def _close(*socks):
    for s in socks:
        s.close()


def test_junk_frames_are_counted_as_bad_and_the_stage_keeps_running(base_port):
    """Issue 11: frames like these made decode raise TypeError / OverflowError / ValueError /
    RecursionError, and the stage died."""
    good = [bytes(f) for f in transport.encode(_tr(0))]
    head = good[1].decode()
    junk = [
        [b"tr", b"[" * 100_000 + b"]" * 100_000],
        [b"tr", head.replace('"kind":"tr"', '"kind":[]').encode(), good[2]],
        [b"tr", head.replace('"shape":[2]', '"shape":[12357,63355383261945708544]').encode(), b""],
        [b"tr", head.replace('"shape":[2]', '"shape":[1099511627776,1099511627776,0]').encode()]
        + [b""],
        [b"tr", head.replace('"meta":{}', '"meta":{"a":NaN}').encode(), good[2]],
        [b"tr", head.replace('"t":{}', '"t":{"a":1e999}').encode(), good[2]],
        [b"\xff" * 7, b"\x00\x01\x02"],
        [b"tr"],
    ]
    push, pull, a_in, a_out = _link(base_port)
    with Doubler(in_addr=a_in, out_addr=a_out) as stage:
        for frames in junk:
            push.send_multipart(frames)
        transport.send(push, _tr(0))
        transport.send(push, Message("end", seq=1, sender=REAL))
        msgs = _recv_all(pull)
        assert stage.join(5)  # in tests any other error would be re-raised here
    assert [m.kind for m in msgs] == ["tr", "end"]
    assert stage.counters["bad"] == len(junk) and stage.counters["errors"] == 0
    _close(push, pull)


def test_a_forged_huge_sequence_number_does_not_silence_the_real_upstream(base_port):
    """Issue 11: one message with a huge seq made the stage drop every later message of the
    real upstream as a repeat."""
    forger = Sender("source", "666-ffffffffffff")
    push, pull, a_in, a_out = _link(base_port)
    with FromSource(in_addr=a_in, out_addr=a_out) as stage:
        transport.send(push, _tr(0, index=0))
        transport.send(push, _tr(1, index=1))
        transport.send(push, _tr(10**15, forger, index=99))
        for seq in (2, 3, 4):
            transport.send(push, _tr(seq, index=seq))
        transport.send(push, Message("end", seq=5, sender=REAL))
        msgs = _recv_all(pull)
        assert stage.join(5)
    assert [m.index for m in msgs if m.kind == "tr"] == [0, 1, 99, 2, 3, 4]
    assert not [m for m in msgs if m.kind == "gap"]
    assert (stage.counters["lost"], stage.counters["repeated"]) == (0, 0)
    _close(push, pull)


def test_an_unknown_senders_forged_gap_is_not_counted_as_lost(base_port):
    forger = Sender("intruder", "666-ffffffffffff")
    push, pull, a_in, a_out = _link(base_port)
    with FromSource(in_addr=a_in, out_addr=a_out) as stage:
        transport.send(push, _tr(0, index=0))
        transport.send(push, _tr(0, forger, index=98))
        transport.send(push, _tr(10**15, forger, index=99))
        transport.send(push, _tr(1, index=1))
        transport.send(push, Message("end", seq=2, sender=REAL))
        msgs = _recv_all(pull)
        assert stage.join(5)
    assert [m.index for m in msgs if m.kind == "tr"] == [0, 98, 99, 1]
    assert not [m for m in msgs if m.kind == "gap"] and stage.counters["lost"] == 0
    _close(push, pull)


def test_an_unknown_sender_is_counted_and_reported_once(base_port, caplog):
    intruder = Sender("intruder", "7-7")
    push, pull, a_in, a_out = _link(base_port)
    with caplog.at_level(logging.WARNING), FromSource(in_addr=a_in, out_addr=a_out) as stage:
        transport.send(push, _tr(0))
        for seq in range(3):
            transport.send(push, _tr(seq, intruder))
        transport.send(push, _tr(1))
        transport.send(push, Message("end", seq=2, sender=REAL))
        msgs = _recv_all(pull)
        assert stage.join(5)
    assert [m.kind for m in msgs].count("tr") == 5  # counted and reported, not dropped
    assert stage.counters["unknown_senders"] == 1
    lines = [r.getMessage() for r in caplog.records if "unknown sender" in r.getMessage()]
    assert len(lines) == 1 and "intruder/7-7" in lines[0] and "['source']" in lines[0]
    _close(push, pull)


def test_a_flood_of_unknown_senders_is_counted_but_reported_a_bounded_number_of_times(
    base_port, caplog
):
    push, pull, a_in, a_out = _link(base_port)
    n = MAX_REPORTED_SENDERS + 20
    with caplog.at_level(logging.WARNING), FromSource(in_addr=a_in, out_addr=a_out) as stage:
        for i in range(n):
            transport.send(push, _tr(0, Sender("intruder", f"{i}")))
        transport.send(push, Message("end", seq=0, sender=REAL))
        _recv_all(pull)
        assert stage.join(5)
    assert stage.counters["unknown_senders"] == n
    lines = [r.getMessage() for r in caplog.records if "unknown sender" in r.getMessage()]
    assert len(lines) == MAX_REPORTED_SENDERS and "only counted" in lines[-1]
    _close(push, pull)


def test_a_restarted_upstream_is_counted_and_none_of_its_messages_dropped(base_port):
    restarted = Sender("source", "101-bbbbbbbbbbbb")
    push, pull, a_in, a_out = _link(base_port)
    with FromSource(in_addr=a_in, out_addr=a_out) as stage:
        for seq in range(3):
            transport.send(push, _tr(seq, index=seq))
        for seq in range(3):  # the new instance numbers from 0 again
            transport.send(push, _tr(seq, restarted, index=10 + seq))
        transport.send(push, _tr(0, restarted, index=20))  # and then it restarts its numbering
        transport.send(push, Message("end", seq=1, sender=restarted))
        msgs = _recv_all(pull)
        assert stage.join(5)
    assert [m.index for m in msgs if m.kind == "tr"] == [0, 1, 2, 10, 11, 12, 20]
    assert stage.counters["upstream_restarts"] == 2
    assert (stage.counters["unknown_senders"], stage.counters["lost"]) == (0, 0)
    _close(push, pull)


def test_a_gap_and_a_repeat_name_their_sender_and_every_sent_message_names_the_stage(base_port):
    push, pull, a_in, a_out = _link(base_port)
    with Doubler(in_addr=a_in, out_addr=a_out) as stage:
        for seq in (0, 3, 2):  # 1 and 2 lost, then 2 arrives late: a repeat
            transport.send(push, _tr(seq))
        transport.send(push, Message("end", seq=4, sender=REAL))
        msgs = _recv_all(pull)
        assert stage.join(5)
    gaps = [m for m in msgs if m.kind == "gap"]
    assert len(gaps) == 1 and gaps[0].meta["sender"] == str(REAL)
    assert (stage.counters["lost"], stage.counters["repeated"]) == (2, 1)
    assert {m.sender for m in msgs} == {stage.sender}
    assert [m.seq for m in msgs] == list(range(len(msgs)))
    _close(push, pull)


def test_each_pipeline_stage_expects_the_one_before_it():
    assert default_upstream("source") is None
    assert default_upstream("preprocess") == {"source"}
    assert default_upstream("decode") == {"estimate"}
    # reconstruct is optional; "fused" runs decode with preprocess and estimate (--fuse-stages)
    assert default_upstream("recorder") == {"reconstruct", "decode", "fused"}
    assert default_upstream("doubler") is None
    stage = PreprocessStage(np.ones((2, 2, 2), bool))
    assert stage.input_checks.sequences.upstream == {"source"}
    assert (
        stage.sender.stage == "preprocess"
        and stage.sender != PreprocessStage(np.ones((2, 2, 2), bool)).sender
    )
