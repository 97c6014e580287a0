"""Property-based fuzzing of the wire format (hypothesis, derandomized: the same examples on
every run, so a failure here is reproducible and CI is not flaky).

- ``decode`` raises only :class:`WireError`, whatever it is given: random JSON headers, valid
  frames with one part mutated, truncated or extended buffers, random bytes;
- ``encode`` -> ``decode`` gives back any valid message exactly (arrays bit for bit).

The budget (150 examples a property) keeps the whole file at about 13 s of CPU, imports
included, on a 2-core machine (`time pytest tests/rt_wire/test_message_fuzz.py`).
"""

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rt_base.errors import WireError
from rt_wire import header as wire_header
from rt_wire.message import HEADER_KEYS, KINDS, SCHEMA_VERSION, Message, decode, encode
from rt_wire.sender import Sender

FUZZ = settings(
    derandomize=True,
    max_examples=150,
    database=None,  # derandomized: nothing to remember between runs, nothing written
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)
SENDERS = st.builds(Sender, NAMES, NAMES)
INT64 = st.integers(-(1 << 63), (1 << 63) - 1)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# anything json.loads can return, including what a header must not hold (NaN, huge numbers)
ANY_JSON = st.recursive(
    JSON_SCALARS | st.floats() | st.integers(min_value=1 << 63) | st.integers(max_value=-(1 << 64)),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
ARRAYS = hnp.arrays(
    dtype=st.sampled_from(sorted(wire_header.DTYPES)).map(np.dtype),
    shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
)
MESSAGES = st.builds(
    Message,
    kind=st.sampled_from(sorted(KINDS)),
    seq=st.integers(0, (1 << 63) - 1),
    run=st.none() | st.text(max_size=12),
    index=st.none() | INT64,
    meta=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5),
    t=st.dictionaries(st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False)),
    buffers=st.dictionaries(st.text(min_size=1, max_size=8), ARRAYS, max_size=4),
    sender=SENDERS,
)


def _decode_or_wire_error(frames) -> Message | None:
    """``decode(frames)``; None when it refused them with a WireError (any other error fails)."""
    try:
        return decode(frames)
    except WireError:
        return None


def _frames(msg: Message) -> list[bytes]:
    return [bytes(f) for f in encode(msg)]


@FUZZ
@given(msg=MESSAGES)
def test_encode_then_decode_gives_back_any_valid_message(msg):
    back = decode(_frames(msg))
    assert (back.kind, back.seq, back.run, back.index, back.sender) == (
        msg.kind,
        msg.seq,
        msg.run,
        msg.index,
        msg.sender,
    )
    assert back.meta == msg.meta and back.t == msg.t
    assert list(back.buffers) == list(msg.buffers)
    for name, arr in msg.buffers.items():
        got = back.buffers[name]
        assert (got.dtype, got.shape) == (arr.dtype, arr.shape)
        assert got.tobytes() == np.ascontiguousarray(arr).tobytes()


@FUZZ
@given(
    msg=st.builds(
        Message,
        kind=st.sampled_from(sorted(KINDS)) | st.text(max_size=4),
        seq=st.integers(),
        run=st.none() | st.text(max_size=4) | st.integers(),
        index=st.none() | st.integers(),
        meta=st.dictionaries(st.text(max_size=4), ANY_JSON, max_size=4),
        t=st.dictionaries(st.text(max_size=4), st.floats() | st.integers() | st.booleans()),
        buffers=st.dictionaries(st.text(min_size=1, max_size=4), ARRAYS, max_size=3),
        sender=SENDERS | st.none(),
    )
)
def test_whatever_encode_accepts_decode_accepts(msg):
    try:
        frames = _frames(msg)
    except WireError:
        return
    decode(frames)


@FUZZ
@given(
    header=st.fixed_dictionaries(
        {},
        optional={key: ANY_JSON for key in HEADER_KEYS},
    ),
    schema=st.sampled_from([SCHEMA_VERSION, None, 1, "2"]),
    topic=st.binary(max_size=12) | st.sampled_from(sorted(k.encode() for k in KINDS)),
    buffers=st.lists(st.binary(max_size=64), max_size=4),
)
def test_random_json_headers_raise_only_wire_errors(header, schema, topic, buffers):
    if schema is not None:
        header["schema"] = schema
    _decode_or_wire_error([topic, json.dumps(header).encode(), *buffers])


@FUZZ
@given(msg=MESSAGES, key=st.sampled_from(sorted(HEADER_KEYS)), value=ANY_JSON, drop=st.booleans())
def test_a_valid_header_with_one_field_replaced_raises_only_wire_errors(msg, key, value, drop):
    frames = _frames(msg)
    header = json.loads(frames[1])
    if drop:
        del header[key]
    else:
        header[key] = value
    _decode_or_wire_error([frames[0], json.dumps(header).encode(), *frames[2:]])


@FUZZ
@given(
    msg=MESSAGES.filter(lambda m: m.buffers),
    field=st.sampled_from(["name", "dtype", "shape"]),
    value=ANY_JSON | st.lists(st.integers(), max_size=10),
)
def test_a_buffer_spec_with_one_field_replaced_raises_only_wire_errors(msg, field, value):
    frames = _frames(msg)
    header = json.loads(frames[1])
    header["buffers"][0][field] = value
    _decode_or_wire_error([frames[0], json.dumps(header).encode(), *frames[2:]])


@FUZZ
@given(msg=MESSAGES, data=st.data())
def test_cut_extended_dropped_or_added_frames_raise_only_wire_errors(msg, data):
    frames = _frames(msg)
    original = list(frames)
    i = data.draw(st.integers(0, len(frames) - 1))
    how = data.draw(st.sampled_from(["cut", "extend", "drop", "add", "flip"]))
    frame = frames[i]
    if how == "cut":
        frames[i] = frame[: data.draw(st.integers(0, max(len(frame) - 1, 0)))]
    elif how == "extend":
        frames[i] = frame + data.draw(st.binary(min_size=1, max_size=16))
    elif how == "drop":
        del frames[i]
    elif how == "add":
        frames.insert(i, data.draw(st.binary(max_size=16)))
    elif frame:
        at = data.draw(st.integers(0, len(frame) - 1))
        frames[i] = (
            frame[:at] + bytes([frame[at] ^ data.draw(st.integers(1, 255))]) + frame[at + 1 :]
        )
    back = _decode_or_wire_error(frames)
    resized = how in ("extend", "drop", "add") or (how == "cut" and frames != original)
    if back is not None and resized and i >= 2:  # a buffer frame of another size never decodes
        raise AssertionError(f"a buffer frame that was {how} decoded: {back}")


@FUZZ
@given(frames=st.lists(st.binary(max_size=200), max_size=5))
def test_random_bytes_raise_only_wire_errors(frames):
    _decode_or_wire_error(frames)
