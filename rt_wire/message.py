"""The wire format: ZMQ multipart ``[topic, header, *buffers]``.

``header`` is UTF-8 JSON::

    {"schema": 2, "kind": "tr", "seq": 17, "run": "run-01", "index": 16,
     "sender": {"stage": "preprocess", "id": "4711-9f3c2a7e01b4"},
     "meta": {...}, "t": {"source.acquired": 1732262400.1, ...},
     "buffers": [{"name": "raw", "dtype": "float32", "shape": [15724]}]}

and each buffer frame holds the raw C-contiguous bytes of one array, in header order.  Nothing
is ever pickled.  :func:`decode` validates everything within the bounds of
:mod:`rt_wire.header` and raises :class:`WireError` (only that, whatever it is given) with what
was wrong; a stage logs it, drops the frame and goes on.  :func:`encode` refuses what
:func:`decode` would refuse, so whatever a stage sends, the next one can read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rt_base.errors import SchemaVersionError, WireError
from rt_wire import header as wire_header
from rt_wire.header import fail, short_repr
from rt_wire.sender import ANONYMOUS, Sender

#: 2: the header names its ``sender`` (1 had none)
SCHEMA_VERSION = 2
#: the keys every header has
HEADER_KEYS = frozenset({"schema", "kind", "seq", "run", "index", "sender", "meta", "t", "buffers"})

#: Every message kind and what it carries.
KINDS: dict[str, str] = {
    "run_start": "a run begins: meta has tr, n_volumes, shape, affine",
    "volume": "one acquired volume: buffer 'volume' (X, Y, Z), stored integers with meta "
    "'scale' or float32 (rt_wire.volume)",
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
    "ack": "what a stage has released of its upstreams' messages (telemetry only; see "
    "realtime.stages.link_acks)",
}


@dataclass
class Message:
    """One message on the wire.

    Parameters
    ----------
    kind : one of :data:`KINDS`.
    seq : sequence number of the sender (set by the sender).
    run : run label, or None.
    index : TR index (volume, tr) or trial number (trial, response, retrieval), or None.
    meta : JSON-serializable details.
    t : timestamps (seconds since the epoch) keyed ``"stage.event"``, accumulated on the way.
    buffers : named arrays sent as raw bytes.
    sender : who sent it (a stage stamps its own when it sends); None is sent as
        :data:`~rt_wire.sender.ANONYMOUS`, this process's identity.
    """

    kind: str
    seq: int = 0
    run: str | None = None
    index: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    t: dict[str, float] = field(default_factory=dict)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    sender: Sender | None = None

    def derive(self, kind: str, **changes: Any) -> Message:
        """A new message that inherits run, index and the timestamps collected so far (not the
        sender: whoever sends it stamps its own)."""
        out = Message(kind=kind, run=self.run, index=self.index, t=dict(self.t))
        for key, value in changes.items():
            setattr(out, key, value)
        return out


def encode(msg: Message) -> list[bytes | memoryview]:
    """Frames for ``socket.send_multipart(frames)``.

    Raises
    ------
    WireError
        The message could not be decoded at the other end: an unknown kind, a header that is
        not JSON (NaN, infinities, objects) or beyond the bounds of :mod:`rt_wire.header`, a
        buffer of a dtype or shape the wire does not carry.
    """
    if msg.kind not in KINDS:
        raise WireError(f"message kind must be one of {sorted(KINDS)}, got {msg.kind!r}")
    if len(msg.buffers) > wire_header.MAX_BUFFERS:
        raise WireError(
            f"a message carries at most {wire_header.MAX_BUFFERS} buffers, got {len(msg.buffers)}"
        )
    specs = []
    frames: list[bytes | memoryview] = []
    for name, arr in msg.buffers.items():
        arr = np.asarray(arr)  # not ascontiguousarray: it makes a 0-d array 1-d
        if not arr.dtype.isnative:  # the wire carries native (little-endian) bytes
            arr = arr.astype(arr.dtype.newbyteorder("="))
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")
        if arr.dtype.name not in wire_header.DTYPES:
            raise WireError(f"buffer {name!r} has unsupported dtype {arr.dtype.name}")
        specs.append({"name": name, "dtype": arr.dtype.name, "shape": list(arr.shape)})
        frames.append(memoryview(arr).cast("B") if arr.size else b"")
    sender = msg.sender or ANONYMOUS
    header = {
        "schema": SCHEMA_VERSION,
        "kind": msg.kind,
        "seq": int(msg.seq),
        "run": msg.run,
        "index": None if msg.index is None else int(msg.index),
        "sender": sender.to_json(),
        "meta": msg.meta,
        "t": msg.t,
        "buffers": specs,
    }
    try:
        raw = json.dumps(header, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError) as err:
        raise WireError(f"message header is not JSON-serializable: {err}") from None
    try:
        wire_header.check_size_and_depth(raw)
        _check_header(header, len(frames))  # as json.dumps wrote it (allow_nan=False: finite)
    except WireError as err:
        raise WireError(f"a {msg.kind!r} message cannot be sent: {err}") from None
    return [msg.kind.encode(), raw, *frames]


def decode(frames: Any) -> Message:
    """Parse and validate ``[topic, header, *buffers]``.

    Arrays are zero-copy views of the frames' memory (read-only).

    Raises
    ------
    SchemaVersionError
        The header's schema version is not :data:`SCHEMA_VERSION`.
    WireError
        Anything else wrong (and nothing else is raised, whatever ``frames`` holds): too few
        frames, a frame that is not bytes, bad JSON, a header beyond the bounds of
        :mod:`rt_wire.header`, unknown kind, wrong types, a bad sender, a buffer whose size does
        not match its dtype and shape, a topic that does not match the kind.
    """
    n_frames = len(frames) if hasattr(frames, "__len__") else 0
    if n_frames > wire_header.MAX_BUFFERS + 2:  # before a view of each is made
        raise fail(
            f"{n_frames} frames, more than [topic, header] and {wire_header.MAX_BUFFERS} buffers"
        )
    views = _byte_views(frames)
    if len(views) < 2:
        raise fail(f"expected at least 2 frames [topic, header], got {len(views)}")
    topic, head, *bufs = views
    header = wire_header.parse_json(head.tobytes())
    specs = _check_header(header, len(bufs))
    if topic != header["kind"].encode():
        raise fail(f"topic {short_repr(topic.tobytes())} does not match kind {header['kind']!r}")
    arrays = dict(_array(spec, buf) for spec, buf in zip(specs, bufs, strict=True))
    return Message(
        kind=header["kind"],
        seq=header["seq"],
        run=header["run"],
        index=header["index"],
        meta=header["meta"],
        t={k: float(v) for k, v in header["t"].items()},
        buffers=arrays,
        sender=Sender.from_json(header["sender"]),
    )


def _byte_views(frames: Any) -> list[memoryview]:
    """Each frame (bytes, or a ``zmq.Frame``) as a flat byte view."""
    try:
        views = [memoryview(getattr(f, "buffer", f)) for f in frames]
        return [v.cast("B") if v.format != "B" or v.ndim != 1 else v for v in views]
    except (TypeError, ValueError) as err:
        raise fail(f"frames must be a list of byte strings ({err})") from None


def _check_header(header: Any, n_buffers: int) -> list[tuple[str, np.dtype, tuple[int, ...]]]:
    """Validate a parsed header: a JSON object of this schema version with every key, a known
    kind, fields of the right types, a sender, and buffer specs that fit ``n_buffers`` frames."""
    if not isinstance(header, dict):
        raise fail(f"header must be a JSON object, got {type(header).__name__}")
    schema = header.get("schema")
    if schema != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"message has schema version {short_repr(schema)} but this build speaks "
            f"{SCHEMA_VERSION}; run the same mindeye-rt version on every machine of the pipeline"
        )
    missing = HEADER_KEYS - header.keys()
    if missing:
        raise fail(f"header lacks {sorted(missing)}")
    extra = header.keys() - HEADER_KEYS
    if extra:
        raise fail(f"header has unknown keys {short_repr(sorted(extra))}")
    kind = header["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise fail(f"unknown kind {short_repr(kind)}")
    wire_header.check_fields(header)
    Sender.from_json(header["sender"])
    return wire_header.check_buffer_specs(header["buffers"], n_buffers)


def _array(spec: tuple[str, np.dtype, tuple[int, ...]], view: memoryview) -> tuple[str, np.ndarray]:
    name, dtype, shape = spec
    expected = math.prod(shape) * dtype.itemsize
    if view.nbytes != expected:
        raise fail(
            f"buffer {short_repr(name)}: {view.nbytes} bytes for dtype {dtype} shape {shape} "
            f"(expected {expected})"
        )
    arr = np.frombuffer(view, dtype=dtype).reshape(shape) if expected else np.zeros(shape, dtype)
    return name, arr
