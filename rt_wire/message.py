"""The wire format: ZMQ multipart ``[topic, header, *buffers]``.

``header`` is UTF-8 JSON::

    {"schema": 1, "kind": "tr", "seq": 17, "run": "run-01", "index": 16,
     "meta": {...}, "t": {"source.acquired": 1732262400.1, ...},
     "buffers": [{"name": "raw", "dtype": "float32", "shape": [15724]}]}

and each buffer frame holds the raw C-contiguous bytes of one array, in header order.  Nothing
is ever pickled.  :func:`decode` validates everything and raises :class:`WireError` with what
was wrong; a stage logs it, drops the frame and goes on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rt_base.errors import SchemaVersionError, WireError

SCHEMA_VERSION = 1

#: Every message kind and what it carries.
KINDS: dict[str, str] = {
    "run_start": "a run begins: meta has tr, n_volumes, shape, affine",
    "volume": "one acquired volume: buffer 'volume' (X, Y, Z)",
    "trial": "a trial event (stimulus onset): meta has onset, duration, image_id, ...",
    "tr": "one masked TR: buffers 'raw' (V,) and 'z' (V,)",
    "response": "a trial's estimated response: buffer 'response' (V,)",
    "retrieval": "a trial's MindEye retrieval: buffers 'ids' (k,), 'scores' (k,), 'embedding'",
    "latent": "a trial's model outputs for reconstruction (decode -> reconstruct only): buffers "
    "'tokens' (T, D) backbone tokens and 'response' (V,)",
    "recon": "a trial's reconstruction: buffer 'image' (H, W, 3) uint8, optional 'blurry' "
    "(h, w, 3) uint8; meta has mode, compute_ms, backlog",
    "gap": "volumes or messages found missing or repeated: meta says which",
    "run_end": "a run ended",
    "end": "the session ended; stages flush and stop",
    "status": "a stage's health and counters (telemetry only)",
    "log": "a log record (telemetry only)",
}

_DTYPES = {"bool", "uint8", "int16", "int32", "int64", "float16", "float32", "float64"}
_MAX_HEADER = 1 << 20


@dataclass
class Message:
    """One message on the wire.

    Parameters
    ----------
    kind : one of :data:`KINDS`.
    seq : sequence number of the sending socket (set by the sender).
    run : run label, or None.
    index : TR index (volume, tr) or trial number (trial, response, retrieval), or None.
    meta : JSON-serializable details.
    t : timestamps (seconds since the epoch) keyed ``"stage.event"``, accumulated on the way.
    buffers : named arrays sent as raw bytes.
    """

    kind: str
    seq: int = 0
    run: str | None = None
    index: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    t: dict[str, float] = field(default_factory=dict)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)

    def derive(self, kind: str, **changes: Any) -> Message:
        """A new message that inherits run, index and the timestamps collected so far."""
        out = Message(kind=kind, run=self.run, index=self.index, t=dict(self.t))
        for key, value in changes.items():
            setattr(out, key, value)
        return out


def encode(msg: Message) -> list[bytes | memoryview]:
    """Frames for ``socket.send_multipart(frames, copy=False)``."""
    if msg.kind not in KINDS:
        raise WireError(f"message kind must be one of {sorted(KINDS)}, got {msg.kind!r}")
    specs = []
    frames: list[bytes | memoryview] = []
    for name, arr in msg.buffers.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.name not in _DTYPES:
            raise WireError(f"buffer {name!r} has unsupported dtype {arr.dtype.name}")
        specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        frames.append(memoryview(arr).cast("B") if arr.size else b"")
    header = {
        "schema": SCHEMA_VERSION,
        "kind": msg.kind,
        "seq": int(msg.seq),
        "run": msg.run,
        "index": None if msg.index is None else int(msg.index),
        "meta": msg.meta,
        "t": msg.t,
        "buffers": specs,
    }
    try:
        raw = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as err:
        raise WireError(f"message header is not JSON-serializable: {err}") from None
    return [msg.kind.encode(), raw, *frames]


def _fail(what: str) -> WireError:
    return WireError(f"bad frame: {what}")


def decode(frames: list[Any]) -> Message:
    """Parse and validate ``[topic, header, *buffers]``.

    Arrays are zero-copy views of the frames' memory (read-only).

    Raises
    ------
    SchemaVersionError
        The header's schema version is not :data:`SCHEMA_VERSION`.
    WireError
        Anything else wrong: too few frames, bad JSON, unknown kind, wrong types, a buffer whose
        size does not match its dtype and shape, a topic that does not match the kind.
    """
    if len(frames) < 2:
        raise _fail(f"expected at least 2 frames [topic, header], got {len(frames)}")
    topic, head, *bufs = (getattr(f, "buffer", f) for f in frames)
    header = _parse_header(head)
    kind = header["kind"]
    if bytes(topic) != kind.encode():
        raise _fail(f"topic {bytes(topic)!r} does not match kind {kind!r}")
    _check_fields(header)
    specs = header["buffers"]
    if not isinstance(specs, list) or len(specs) != len(bufs):
        n = len(specs) if isinstance(specs, list) else "?"
        raise _fail(f"header lists {n} buffers but {len(bufs)} buffer frames came")
    arrays: dict[str, np.ndarray] = {}
    for spec, buf in zip(specs, bufs, strict=True):
        arrays.update([_buffer(spec, buf)])
    return Message(
        kind=kind,
        seq=header["seq"],
        run=header["run"],
        index=header["index"],
        meta=header["meta"],
        t={k: float(v) for k, v in header["t"].items()},
        buffers=arrays,
    )


def _parse_header(head: Any) -> dict[str, Any]:
    """The header frame as a JSON object of this schema version, with every key and a known
    kind."""
    if len(head) > _MAX_HEADER:
        raise _fail(f"header of {len(head)} bytes exceeds {_MAX_HEADER}")
    try:
        header = json.loads(bytes(head).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(f"header is not UTF-8 JSON ({err})") from None
    if not isinstance(header, dict):
        raise _fail(f"header must be a JSON object, got {type(header).__name__}")
    schema = header.get("schema")
    if schema != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"message has schema version {schema!r} but this build speaks {SCHEMA_VERSION}; "
            "run the same mindeye-rt version on every machine of the pipeline"
        )
    missing = {"kind", "seq", "run", "index", "meta", "t", "buffers"} - header.keys()
    if missing:
        raise _fail(f"header lacks {sorted(missing)}")
    if header["kind"] not in KINDS:
        raise _fail(f"unknown kind {header['kind']!r}")
    return header


def _check_fields(header: dict[str, Any]) -> None:
    """The types of ``seq``, ``run``, ``index``, ``meta`` and ``t``."""
    seq = header["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise _fail(f"'seq' must be a non-negative integer, got {seq!r}")
    if header["run"] is not None and not isinstance(header["run"], str):
        raise _fail(f"'run' must be a string or null, got {header['run']!r}")
    index = header["index"]
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise _fail(f"'index' must be an integer or null, got {index!r}")
    if not isinstance(header["meta"], dict):
        raise _fail("'meta' must be an object")
    stamps = header["t"]
    if not isinstance(stamps, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in stamps.values()
    ):
        raise _fail("'t' must map names to finite numbers")


def _buffer(spec: Any, buf: Any) -> tuple[str, np.ndarray]:
    if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
        raise _fail(f"buffer spec must have exactly name, dtype, shape: got {spec!r}")
    name, dtype, shape = spec["name"], spec["dtype"], spec["shape"]
    if not isinstance(name, str) or not name:
        raise _fail(f"buffer name must be a non-empty string, got {name!r}")
    if dtype not in _DTYPES:
        raise _fail(f"buffer {name!r}: dtype {dtype!r} is not one of {sorted(_DTYPES)}")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise _fail(
            f"buffer {name!r}: shape must be a list of non-negative integers, got {shape!r}"
        )
    dt = np.dtype(dtype)
    expected = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    view = memoryview(buf)
    if view.nbytes != expected:
        raise _fail(
            f"buffer {name!r}: {view.nbytes} bytes for dtype {dtype} shape {tuple(shape)} "
            f"(expected {expected})"
        )
    arr = np.frombuffer(view, dtype=dt).reshape(shape) if expected else np.zeros(shape, dt)
    return name, arr


class SequenceTracker:
    """Detects lost and repeated messages from one sender's sequence numbers.

    ``check(seq)`` returns ``("ok"|"gap"|"repeat"|"restart", n_missing)``.  A gap means
    messages ``expected .. seq-1`` never came; a repeat (seq below the next expected) is to be
    dropped; ``seq == 0`` after other messages means the sender restarted (counted, not dropped).
    """

    def __init__(self) -> None:
        self.expected: int | None = None
        self.lost = 0
        self.repeated = 0
        self.restarts = 0

    def check(self, seq: int) -> tuple[str, int]:
        if self.expected is None or seq == self.expected:
            self.expected = seq + 1
            return "ok", 0
        if seq == 0:
            self.restarts += 1
            self.expected = 1
            return "restart", 0
        if seq < self.expected:
            self.repeated += 1
            return "repeat", 0
        missing = seq - self.expected
        self.lost += missing
        self.expected = seq + 1
        return "gap", missing
