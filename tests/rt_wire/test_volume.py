"""A volume on the wire as its stored integers and their scale (rt_wire.volume)."""

from __future__ import annotations

import numpy as np
import pytest

from rt_base.errors import MessageError
from rt_wire.message import Message, decode, encode
from rt_wire.volume import SCALE_KEY, volume_payload, volume_values


def _stored(dtype="int16"):
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, (5, 6, 7)).astype(dtype, order="F")  # as a NIfTI run slices


@pytest.mark.parametrize("dtype", ["int16", "uint16"])
def test_stored_integers_travel_as_they_are_and_scale_like_the_reader(dtype):
    stored = _stored(dtype)
    slope, inter = 0.023206287994980812, 760.4236450195312
    buffer, meta = volume_payload(stored, slope, inter)
    assert buffer.dtype == stored.dtype and buffer.flags.c_contiguous
    assert buffer.nbytes == stored.size * 2  # half of float32
    msg = decode(encode(Message("volume", run="r", index=0, meta=meta, buffers={"volume": buffer})))
    values = volume_values(msg.buffers["volume"], msg.meta)
    want = stored.astype(np.float32) * np.float32(slope) + np.float32(inter)  # the reader's
    assert values.dtype == np.float32 and np.array_equal(values, want)
    assert msg.meta[SCALE_KEY] == [float(np.float32(slope)), float(np.float32(inter))]


def test_other_types_travel_as_float32_scanner_units_without_a_scale():
    stored = _stored().astype(np.float64)
    buffer, meta = volume_payload(stored, 2.0, 1.0)
    assert meta == {} and buffer.dtype == np.float32
    np.testing.assert_array_equal(buffer, (stored * 2 + 1).astype(np.float32))
    assert volume_values(buffer, meta) is buffer  # already scanner units


@pytest.mark.parametrize(
    "scale",
    [None, [1.0], [0.0, 1.0], [float("nan"), 0.0], [1.0, float("inf")], [True, 0.0], "1,0"],
)
def test_a_stored_volume_without_a_usable_scale_is_a_message_error(scale):
    meta = {} if scale is None else {SCALE_KEY: scale}
    with pytest.raises(MessageError, match="must carry 'scale'"):
        volume_values(_stored(), meta)


def test_a_float_volume_with_a_scale_is_a_message_error():
    with pytest.raises(MessageError, match="must not carry a 'scale'"):
        volume_values(np.zeros((2, 2, 2), np.float32), {SCALE_KEY: [1.0, 0.0]})
