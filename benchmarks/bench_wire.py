"""The wire format's cost per message: encode and decode, with the hardened checks.

    python benchmarks/bench_wire.py                  # 2000 repeats of each message
    python benchmarks/bench_wire.py --repeats 500

Messages as the pipeline sends them: a ``run_start`` (meta with the affine), an NSD-size
``volume`` (81 x 104 x 83 float32, 2.8 MB), a ``tr`` of 15 724 voxels (``raw`` and ``z``), and a
hostile header nested 100 000 levels deep (refused).  Prints microseconds per call (median and
p95 of the repeats), CPU time, not counting the socket.  ``encode`` includes the check that the
other end can decode the header (:func:`rt_wire.message.encode`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from rt_base.errors import WireError
from rt_wire.message import Message, decode, encode
from rt_wire.sender import Sender


def _messages() -> dict[str, Message]:
    sender = Sender.new("source")
    rng = np.random.default_rng(0)
    stamps = {f"stage{i}.done": 1.7e9 + i for i in range(8)}
    return {
        "run_start": Message(
            "run_start",
            run="run-01",
            sender=sender,
            meta={
                "tr": 1.6,
                "n_volumes": 188,
                "shape": [81, 104, 83],
                "affine": np.eye(4).tolist(),
            },
        ),
        "volume (2.8 MB)": Message(
            "volume",
            seq=17,
            run="run-01",
            index=16,
            sender=sender,
            t=stamps,
            buffers={"volume": rng.normal(size=(81, 104, 83)).astype(np.float32)},
        ),
        "tr (15724 voxels)": Message(
            "tr",
            seq=17,
            run="run-01",
            index=16,
            sender=sender,
            t=stamps,
            meta={"motion": {"params": [0.0] * 6, "fd": 0.1}},
            buffers={
                "raw": rng.normal(size=15724).astype(np.float32),
                "z": rng.normal(size=15724).astype(np.float32),
            },
        ),
    }


def _time_us(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        start = time.process_time_ns()
        fn()
        times.append((time.process_time_ns() - start) / 1e3)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="calls timed per row")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    print(f"{'message':<20} {'encode p50':>11} {'p95':>8} {'decode p50':>11} {'p95':>8}  (us)")
    for name, msg in _messages().items():
        frames = [bytes(f) for f in encode(msg)]
        enc = _time_us(lambda m=msg: encode(m), args.repeats)
        dec = _time_us(lambda f=frames: decode(f), args.repeats)
        print(f"{name:<20} {enc[0]:>11.1f} {enc[1]:>8.1f} {dec[0]:>11.1f} {dec[1]:>8.1f}")
    deep = [b"tr", b"[" * 100_000 + b"]" * 100_000]

    def refuse() -> None:
        try:
            decode(deep)
        except WireError:
            return
        raise AssertionError("a header nested 100 000 deep was accepted")

    rej = _time_us(refuse, max(1, args.repeats // 10))
    print(f"{'nested 100000 deep':<20} {'':>11} {'':>8} {rej[0]:>11.1f} {rej[1]:>8.1f}  (refused)")


if __name__ == "__main__":
    main()
