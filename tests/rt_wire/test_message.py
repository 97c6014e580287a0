import json

import numpy as np
import pytest

from rt_base.errors import SchemaVersionError, WireError
from rt_wire.message import SCHEMA_VERSION, Message, decode, encode
from rt_wire.sequence import SequenceTracker


def _frames(msg):
    return [bytes(f) for f in encode(msg)]


def test_round_trip_keeps_arrays_and_header():
    vol = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    ids = np.array([5, 1, 9], np.int64)
    msg = Message(
        "volume",
        seq=7,
        run="run-01",
        index=3,
        meta={"time": 4.8},
        t={"source.acquired": 1.5},
        buffers={"volume": vol, "ids": ids},
    )
    back = decode(_frames(msg))
    assert (back.kind, back.seq, back.run, back.index) == ("volume", 7, "run-01", 3)
    assert back.meta == {"time": 4.8} and back.t == {"source.acquired": 1.5}
    np.testing.assert_array_equal(back.buffers["volume"], vol)
    assert back.buffers["volume"].dtype == np.float32 and back.buffers["ids"].dtype == np.int64
    np.testing.assert_array_equal(back.buffers["ids"], ids)


def test_non_contiguous_and_empty_buffers():
    a = np.arange(20, dtype=np.float64).reshape(4, 5)[:, ::2]
    msg = Message("tr", buffers={"a": a, "empty": np.zeros((0, 3), np.float32)})
    back = decode(_frames(msg))
    np.testing.assert_array_equal(back.buffers["a"], a)
    assert back.buffers["empty"].shape == (0, 3)


def _header(frames):
    return json.loads(frames[1])


def _with_header(frames, **changes):
    h = _header(frames)
    h.update(changes)
    return [frames[0], json.dumps(h).encode(), *frames[2:]]


@pytest.fixture
def good():
    return _frames(Message("tr", seq=1, run="r", index=0, buffers={"z": np.ones(4, np.float32)}))


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda f: f[:1], "at least 2 frames"),
        (lambda f: [f[0], b"\xff\xfe", *f[2:]], "not UTF-8 JSON"),
        (lambda f: [f[0], b"[1, 2]", *f[2:]], "JSON object"),
        (lambda f: _with_header(f, kind="bogus"), "unknown kind"),
        (lambda f: [b"volume", *f[1:]], "does not match kind"),
        (lambda f: _with_header(f, seq=-1), "'seq'"),
        (lambda f: _with_header(f, seq=True), "'seq'"),
        (lambda f: _with_header(f, index="3"), "'index'"),
        (lambda f: _with_header(f, t={"x": "now"}), "'t'"),
        (lambda f: f[:2], "buffer frames"),
        (lambda f: [*f[:2], f[2][:-1]], "bytes for dtype"),
        (
            lambda f: _with_header(f, buffers=[{"name": "z", "dtype": "object", "shape": [4]}]),
            "dtype",
        ),
        (
            lambda f: _with_header(f, buffers=[{"name": "z", "dtype": "float32", "shape": [-4]}]),
            "shape",
        ),
    ],
)
def test_bad_frames_are_rejected_with_a_reason(good, mutate, match):
    with pytest.raises(WireError, match=match):
        decode(mutate(good))


def test_missing_header_key(good):
    h = _header(good)
    del h["meta"]
    with pytest.raises(WireError, match="lacks"):
        decode([good[0], json.dumps(h).encode(), *good[2:]])


def test_unknown_schema_names_both_versions(good):
    with pytest.raises(SchemaVersionError, match=f"99.*{SCHEMA_VERSION}"):
        decode(_with_header(good, schema=99))


def test_encode_refuses_what_cannot_travel():
    with pytest.raises(WireError, match="kind"):
        encode(Message("nope"))
    with pytest.raises(WireError, match="JSON"):
        encode(Message("tr", meta={"x": object()}))
    with pytest.raises(WireError, match="JSON"):
        encode(Message("tr", meta={"x": float("nan")}))
    with pytest.raises(WireError, match="dtype"):
        encode(Message("tr", buffers={"c": np.zeros(2, np.complex64)}))


def test_sequence_tracker_reports_gaps_repeats_and_restarts():
    tr = SequenceTracker()
    assert [tr.check(s) for s in (0, 1, 2)] == [("ok", 0)] * 3
    assert tr.check(5) == ("gap", 2)
    assert tr.check(4) == ("repeat", 0)
    assert tr.check(6) == ("ok", 0)
    assert tr.check(0) == ("restart", 0)
    assert tr.check(1) == ("ok", 0)
    assert (tr.lost, tr.repeated, tr.restarts) == (2, 1, 1)
