"""Hostile frames: each is refused with a WireError naming what was wrong, never another error.

The first cases are issue 11's report: frames that made ``decode`` raise TypeError,
OverflowError, ValueError or RecursionError (found by the fuzzing in test_message_fuzz.py), which
killed the receiving stage.
"""

import json

import numpy as np
import pytest

from rt_base.errors import WireError
from rt_wire import header as wire_header
from rt_wire.message import Message, decode, encode
from rt_wire.sender import Sender

SENDER = Sender("preprocess", "4711-abcdef012345")


def _frames(msg):
    return [bytes(f) for f in encode(msg)]


@pytest.fixture
def good():
    msg = Message("tr", seq=1, run="r", index=0, sender=SENDER, buffers={"z": np.ones(4, "f4")})
    return _frames(msg)


def _with(frames, **changes):
    h = json.loads(frames[1])
    h.update(changes)
    return [frames[0], json.dumps(h).encode(), *frames[2:]]


def _with_spec(frames, **changes):
    h = json.loads(frames[1])
    h["buffers"][0].update(changes)
    return [frames[0], json.dumps(h).encode(), *frames[2:]]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "mutate, match",
    [
        # issue 11: these raised TypeError / OverflowError / ValueError / RecursionError
        (lambda f: _with(f, kind=[]), "unknown kind"),
        (lambda f: _with(f, kind={"a": 1}), "unknown kind"),
        (lambda f: _with_spec(f, shape=[12357, 63355383261945708544]), "shape"),
        (lambda f: [*_with_spec(f, shape=[1 << 40, 1 << 40, 0])[:2], b""], "more than"),
        (lambda f: [f[0], _nested(100_000)], "levels deep"),
        (
            lambda f: [f[0], f[1].replace(b'"meta":{}', b'"meta":' + _nested(5000)), *f[2:]],
            "levels deep",
        ),
        (lambda f: _with(f, t={"x": 10**400}), "'t'"),
        # numbers that could not be sent on (a stage forwarding them would crash in encode)
        (lambda f: [f[0], f[1].replace(b'"meta":{}', b'"meta":{"a":NaN}'), *f[2:]], "NaN"),
        (lambda f: [f[0], f[1].replace(b'"meta":{}', b'"meta":{"a":1e400}'), *f[2:]], "float"),
        (lambda f: [f[0], f[1].replace(b'"t":{}', b'"t":{"a":-Infinity}'), *f[2:]], "Infinity"),
        # bounds
        (lambda f: [f[0], b" " * (wire_header.MAX_HEADER_BYTES + 1), *f[2:]], "exceeds"),
        (lambda f: _with_spec(f, shape=[1] * (wire_header.MAX_RANK + 1)), "rank"),
        (lambda f: _with_spec(f, shape=[1 << 62]), "more than"),
        (lambda f: _with_spec(f, shape=[4.0]), "shape"),
        (lambda f: _with_spec(f, shape=[True, 4]), "shape"),
        (lambda f: _with_spec(f, shape=4), "shape"),
        (lambda f: _with_spec(f, dtype="object"), "dtype"),
        (lambda f: _with_spec(f, dtype="V8"), "dtype"),
        (lambda f: _with_spec(f, dtype=["float32"]), "dtype"),
        (lambda f: _with_spec(f, name=""), "name"),
        (lambda f: _with(f, seq=1 << 63), "'seq'"),
        (lambda f: _with(f, seq=1.0), "'seq'"),
        (lambda f: _with(f, index=-(1 << 64)), "'index'"),
        (lambda f: _with(f, run=7), "'run'"),
        (lambda f: _with(f, meta=[]), "'meta'"),
        (lambda f: _with(f, t=[]), "'t'"),
        (lambda f: _with(f, buffers={}), "'buffers'"),
        (lambda f: _with(f, extra=1), "unknown keys"),
        (lambda f: [f[0], f[1].replace(b'"seq":1', b'"seq":1,"seq":2'), *f[2:]], "repeats"),
        # the sender
        (lambda f: _with(f, sender=None), "'sender'"),
        (lambda f: _with(f, sender={"stage": "source"}), "'sender'"),
        (lambda f: _with(f, sender={"stage": "source", "id": ""}), "sender id"),
        (lambda f: _with(f, sender={"stage": "../etc", "id": "1"}), "sender stage"),
        (lambda f: _with(f, sender={"stage": "s", "id": "x" * 65}), "sender id"),
        (lambda f: _with(f, sender={"stage": 3, "id": "1"}), "sender stage"),
        # frames that are not byte strings at all
        (lambda f: None, "list of byte strings"),
        (lambda f: [f[0], 12, *f[2:]], "list of byte strings"),
        (lambda f: [f[0], f[1], np.ones((4, 4), "f4")[:, ::2]], "list of byte strings"),
    ],
)
def test_hostile_frames_raise_only_wire_errors(good, mutate, match):
    with pytest.raises(WireError, match=match):
        decode(mutate(good))


def test_two_buffers_of_one_name_are_refused(good):
    h = json.loads(good[1])
    h["buffers"] = [h["buffers"][0], dict(h["buffers"][0])]
    with pytest.raises(WireError, match="two buffers are named 'z'"):
        decode([good[0], json.dumps(h).encode(), good[2], good[2]])


def test_too_many_buffers_are_refused_before_their_specs_are_read(good):
    h = json.loads(good[1])
    n = wire_header.MAX_BUFFERS + 1
    h["buffers"] = [{"name": f"b{i}", "dtype": "uint8", "shape": [0]} for i in range(n)]
    with pytest.raises(WireError, match=f"{n} buffers, more than"):
        decode([good[0], json.dumps(h).encode(), b""])  # refused before the frames are counted


def test_a_flood_of_frames_is_refused_by_its_count(good):
    with pytest.raises(WireError, match="frames, more than"):
        decode([*good, *[b""] * 100_000])


def test_brackets_inside_strings_do_not_count_as_nesting(good):
    deep_text = "[" * 1000 + '\\"{' * 100
    frames = _frames(Message("tr", sender=SENDER, meta={"note": deep_text}))
    assert decode(frames).meta == {"note": deep_text}


def test_the_depth_scan_is_linear_on_unbalanced_quotes():
    raw = b'"' + b'\\"' * 400_000  # an unterminated string of escaped quotes
    assert wire_header.nesting_depth(raw) == 0
    assert wire_header.nesting_depth(b'{"a":[1,{"b":"]]]"}]}') == 3


def test_a_long_bad_value_is_cut_short_in_the_error(good):
    with pytest.raises(WireError) as info:
        decode(_with(good, run=["x" * 100_000]))
    assert len(str(info.value)) < 300


def test_encode_refuses_what_decode_would_refuse():
    with pytest.raises(WireError, match="levels deep"):
        nested: list = []
        for _ in range(wire_header.MAX_DEPTH):
            nested = [nested]
        encode(Message("tr", meta={"x": nested}))
    with pytest.raises(WireError, match="at most"):
        encode(Message("tr", buffers={f"b{i}": np.zeros(1) for i in range(100)}))
    with pytest.raises(WireError, match="rank"):
        encode(Message("tr", buffers={"a": np.zeros((1,) * 9)}))
    with pytest.raises(WireError, match="'seq'"):
        encode(Message("tr", seq=-1))
    with pytest.raises(WireError, match="not JSON"):
        encode(Message("tr", meta={"x": float("inf")}))


def test_big_endian_arrays_arrive_with_their_values():
    arr = np.arange(6, dtype=">f4").reshape(2, 3)
    back = decode(_frames(Message("tr", buffers={"a": arr})))
    np.testing.assert_array_equal(back.buffers["a"], arr)
    assert back.buffers["a"].dtype == np.dtype("float32")


def test_the_sender_travels_and_an_unnamed_message_goes_as_this_process():
    from rt_wire.sender import ANONYMOUS

    assert decode(_frames(Message("tr", sender=SENDER))).sender == SENDER
    assert decode(_frames(Message("tr"))).sender == ANONYMOUS
    a, b = Sender.new("decode"), Sender.new("decode")
    assert a != b and a.stage == "decode" and str(a).startswith("decode/")
