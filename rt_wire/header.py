"""Parsing and validating a header frame: the bounds any input must stay within.

Whatever bytes arrive, these functions either return validated values or raise
:class:`~rt_base.errors.WireError`; nothing else escapes (a stage catches the wire error, counts
the frame as bad and goes on).  The bounds are far above what the pipeline sends (a header of a
few kB, 3 buffers, rank 3, an NSD volume of 2.8 MB) and low enough that a hostile header cannot
exhaust the receiver: the JSON nesting is measured with a linear scan before ``json.loads``
recurses into it, and no array is built whose shape numpy could not hold.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from rt_base.errors import WireError

#: the largest header frame, in bytes
MAX_HEADER_BYTES = 1 << 20
#: the deepest nesting of JSON arrays and objects in a header (the header object itself is 1)
MAX_DEPTH = 32
#: the most buffers one message carries
MAX_BUFFERS = 64
#: the highest rank of one buffer
MAX_RANK = 8
#: the most bytes of one buffer, and of all buffers of one message together
MAX_BUFFER_BYTES = 1 << 31
#: the largest integer a header may carry as ``seq``, ``index`` or a timestamp (int64)
MAX_INT = (1 << 63) - 1
#: the dtypes a buffer may have (never object, never a structured or void dtype)
DTYPES = frozenset(
    {"bool", "uint8", "int16", "uint16", "int32", "int64", "float16", "float32", "float64"}
)

# a JSON string, or an unterminated one running to the end: always matches from a quote, so the
# scan is linear whatever the input (no backtracking over unbalanced quotes)
_STRING = re.compile(rb'"(?:[^"\\]+|\\.?)*"?')
_BRACKET_STEP = np.zeros(256, np.int8)
_BRACKET_STEP[[ord("["), ord("{")]] = 1
_BRACKET_STEP[[ord("]"), ord("}")]] = -1


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: errors about hostile input stay short."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def fail(what: str) -> WireError:
    """The wire error for a frame that failed validation."""
    return WireError(f"bad frame: {what}")


def nesting_depth(raw: bytes) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON text ``raw``, brackets in strings ignored.

    Linear in ``len(raw)``; on text that is not JSON the count may be off, which only decides
    which error the (anyway rejected) text gets.
    """
    outside = _STRING.sub(b"", raw)
    if not outside:
        return 0
    steps = _BRACKET_STEP[np.frombuffer(outside, np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def check_size_and_depth(raw: bytes) -> None:
    """Refuse a header over :data:`MAX_HEADER_BYTES` or nested deeper than :data:`MAX_DEPTH`."""
    if len(raw) > MAX_HEADER_BYTES:
        raise fail(f"header of {len(raw)} bytes exceeds {MAX_HEADER_BYTES}")
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:  # the usual header: too few to nest deep
        return
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise fail(f"header nests JSON {depth} levels deep, more than {MAX_DEPTH}")


def parse_json(raw: bytes) -> Any:
    """``json.loads`` of a bounded header: UTF-8, no NaN or infinities (they could not be sent
    on, see :func:`rt_wire.message.encode`), no duplicate keys."""
    check_size_and_depth(raw)
    try:
        return json.loads(
            raw.decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(f"header is not UTF-8 JSON ({err})") from None
    except RecursionError:  # not reached below MAX_DEPTH; kept so nothing else can escape
        raise fail("header nests JSON too deeply") from None


def _no_constant(name: str) -> float:
    raise fail(f"header holds {name}, which JSON does not allow")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise fail(f"header holds the number {text[:40]}, too large for a float")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise fail(f"header repeats the key {short_repr(key)} in one object")
        out[key] = value
    return out


def is_int(value: Any, low: int = -MAX_INT - 1, high: int = MAX_INT) -> bool:
    """An integer (not a bool) within ``[low, high]``."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def check_fields(header: dict[str, Any]) -> None:
    """The types of ``seq``, ``run``, ``index``, ``meta`` and ``t``."""
    seq = header["seq"]
    if not is_int(seq, 0):
        raise fail(f"'seq' must be an integer from 0 to {MAX_INT}, got {short_repr(seq)}")
    run = header["run"]
    if run is not None and not isinstance(run, str):
        raise fail(f"'run' must be a string or null, got {short_repr(run)}")
    index = header["index"]
    if index is not None and not is_int(index):
        raise fail(f"'index' must be a 64-bit integer or null, got {short_repr(index)}")
    if not isinstance(header["meta"], dict):
        raise fail(f"'meta' must be an object, got {short_repr(header['meta'])}")
    stamps = header["t"]
    if not isinstance(stamps, dict) or not all(
        is_int(v) or (isinstance(v, float) and math.isfinite(v)) for v in stamps.values()
    ):
        raise fail(f"'t' must map names to finite numbers, got {short_repr(stamps)}")


def check_buffer_specs(specs: Any, n_frames: int) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """``[(name, dtype, shape)]`` of the header's ``buffers``: at most :data:`MAX_BUFFERS`, one
    per buffer frame, unique names, whitelisted dtypes, shapes numpy can build within
    :data:`MAX_BUFFER_BYTES` (each and all together)."""
    if not isinstance(specs, list):
        raise fail(f"'buffers' must be a list, got {short_repr(specs)}")
    if len(specs) > MAX_BUFFERS:
        raise fail(f"header lists {len(specs)} buffers, more than {MAX_BUFFERS}")
    if len(specs) != n_frames:
        raise fail(f"header lists {len(specs)} buffers but {n_frames} buffer frames came")
    out, total = [], 0
    for spec in specs:
        name, dtype, shape = _buffer_spec(spec)
        if any(name == other for other, _, _ in out):
            raise fail(f"two buffers are named {short_repr(name)}")
        total += math.prod(shape) * dtype.itemsize
        if total > MAX_BUFFER_BYTES:
            raise fail(f"the buffers hold more than {MAX_BUFFER_BYTES} bytes together")
        out.append((name, dtype, shape))
    return out


def _buffer_spec(spec: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
        raise fail(f"buffer spec must have exactly name, dtype, shape: got {short_repr(spec)}")
    name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
    if not isinstance(name, str) or not name:
        raise fail(f"buffer name must be a non-empty string, got {short_repr(name)}")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise fail(
            f"buffer {short_repr(name)}: dtype {short_repr(dtype)} is not one of {sorted(DTYPES)}"
        )
    return name, np.dtype(dtype), check_shape(name, shape, np.dtype(dtype).itemsize)


def check_shape(name: str, shape: Any, itemsize: int) -> tuple[int, ...]:
    """``shape`` as a tuple numpy can build: rank at most :data:`MAX_RANK`, non-negative
    integer dimensions, at most :data:`MAX_BUFFER_BYTES` (numpy refuses shapes whose product
    over the non-zero dimensions overflows, even when another dimension is 0)."""
    if not isinstance(shape, list) or not all(is_int(n, 0) for n in shape):
        raise fail(
            f"buffer {short_repr(name)}: shape must be a list of non-negative integers, got {short_repr(shape)}"
        )
    if len(shape) > MAX_RANK:
        raise fail(f"buffer {short_repr(name)}: rank {len(shape)} is more than {MAX_RANK}")
    nonzero = math.prod(n for n in shape if n) * itemsize
    if nonzero > MAX_BUFFER_BYTES:
        raise fail(
            f"buffer {short_repr(name)}: shape {short_repr(shape)} would need more than {MAX_BUFFER_BYTES} bytes"
        )
    return tuple(shape)
