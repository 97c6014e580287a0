"""The fused stage's plumbing, on three toy parts: each message goes through the parts in order,
what a part's idle or finish returns goes through the parts after it only, a part's bad message
stops there, and what the parts publish goes out after the fused stage's own send."""

from __future__ import annotations

import pytest

from realtime.stages import fused as fused_module
from realtime.stages.base import Stage
from realtime.stages.fused import FusedStage
from rt_base.errors import ConfigError, MessageError
from rt_wire.message import Message


def _part(stage_name: str, seen: list, idle_out=(), finish_out=()):
    class Part(Stage):
        name = stage_name
        publish_kinds = frozenset({"tr"})

        def handle(self, msg):
            seen.append((self.name, msg.kind, msg.meta.get("path", [])[:]))
            if msg.meta.get("bad_at") == self.name:
                raise MessageError("refused on purpose")
            msg.meta["path"] = [*msg.meta.get("path", []), self.name]
            return [msg]

        def idle(self):
            return [Message(k, meta={"path": [self.name]}) for k in idle_out]

        def finish(self):
            return [Message(k, meta={"path": [self.name]}) for k in finish_out]

    return Part()


def _fused(seen, **kwargs):
    parts = [
        _part("preprocess", seen),
        _part("estimate", seen, **kwargs),
        _part("decode", seen),
    ]
    return FusedStage(parts), parts


def test_a_message_goes_through_the_parts_in_order_with_their_stamps():
    seen: list = []
    stage, parts = _fused(seen)
    (out,) = stage.handle(Message("tr", run="r", index=0))
    assert out.meta["path"] == ["preprocess", "estimate", "decode"]
    assert [s[0] for s in seen] == ["preprocess", "estimate", "decode"]
    stamps = [
        f"{p}.{e}" for p in ("preprocess", "estimate", "decode") for e in ("received", "done")
    ]
    assert [k for k in out.t if k in stamps] == stamps
    times = [out.t[k] for k in stamps]
    assert times == sorted(times)
    assert all(p.counters["received"] == p.counters["sent"] == 1 for p in parts)


def test_what_a_part_makes_when_idle_or_finishing_goes_through_the_parts_after_it_only():
    seen: list = []
    stage, _ = _fused(seen, idle_out=("response",), finish_out=("gap",))
    (idle,) = stage.idle()
    assert idle.kind == "response" and idle.meta["path"] == ["estimate", "decode"]
    assert [s[0] for s in seen] == ["decode"]
    (done,) = stage.finish()
    assert done.kind == "gap" and done.meta["path"] == ["estimate", "decode"]


def test_a_bad_message_stops_at_the_part_that_refuses_it():
    seen: list = []
    stage, parts = _fused(seen)
    assert stage.handle(Message("tr", run="r", index=0, meta={"bad_at": "estimate"})) == []
    assert [s[0] for s in seen] == ["preprocess", "estimate"]
    assert [p.counters["bad"] for p in parts] == [0, 1, 0]
    assert stage.counters["bad"] == 0  # the part's own count, as when split


def test_the_parts_publications_go_out_after_the_send_as_each_part_made_them(monkeypatch):
    published: list[Message] = []
    monkeypatch.setattr(fused_module.transport, "try_publish", lambda pub, m: published.append(m))
    seen: list = []
    stage, parts = _fused(seen)
    stage._pub = object()  # any socket: try_publish is replaced
    outs = stage.handle(Message("tr", run="r", index=0))
    assert published == []  # nothing before the fused stage's own send
    stage._emit(None, outs)
    assert [m.sender for m in published] == [p.sender for p in parts]
    assert [m.meta["path"] for m in published] == [
        ["preprocess"],
        ["preprocess", "estimate"],
        ["preprocess", "estimate", "decode"],
    ]
    assert "estimate.received" not in published[0].t and "decode.done" in published[2].t
    assert outs[0].sender == stage.sender  # what goes downstream is the fused stage's


def test_parts_in_another_order_are_refused():
    seen: list = []
    parts = [_part("estimate", seen), _part("preprocess", seen), _part("decode", seen)]
    with pytest.raises(ConfigError, match="runs \\['preprocess', 'estimate', 'decode'\\] in order"):
        FusedStage(parts)
