"""What CURVE costs a data link: one volume's trip through PUSH/PULL, plain vs CURVE.

Sends ``--n`` volumes of NSD size (81 x 104 x 83 float32, 2.8 MB) one at a time over loopback TCP
and reports the median and 95th percentile of send-to-received time, for plain links and for
CURVE (both ends on this machine, the same key pair).

    python benchmarks/bench_curve.py --n 200
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import zmq

from rt_wire import transport
from rt_wire.curve_auth import CurveSecurity, stop_authenticator
from rt_wire.curve_keys import create_key_pair
from rt_wire.message import Message

SHAPE = (81, 104, 83)  # an NSD 1.8 mm volume


def trip_ms(security: CurveSecurity | None, n: int, port: int) -> np.ndarray:
    """Send-to-received milliseconds of ``n`` volumes, one in flight at a time."""
    ctx = zmq.Context()
    addr = f"tcp://127.0.0.1:{port}"
    pull = transport.data_receiver(ctx, addr, security=security)
    push = transport.data_sender(ctx, addr, security=security)
    volume = np.random.default_rng(0).standard_normal(SHAPE).astype("f4")
    times = []
    try:
        for i in range(n + 5):  # the first few connect and warm up
            t0 = time.perf_counter()
            transport.send(push, Message("volume", run="r", index=i, buffers={"volume": volume}))
            transport.recv(pull)
            if i >= 5:
                times.append(1000 * (time.perf_counter() - t0))
    finally:
        push.close(0)
        pull.close(0)
        stop_authenticator(ctx)
        ctx.term()
    return np.array(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="volumes per mode (default 200)")
    parser.add_argument("--port", type=int, default=5790, help="TCP port (default 5790)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as keys:
        create_key_pair(keys, "bench")
        curve = CurveSecurity.load(keys, "bench")
        print(f"{'link':8s} {'p50 ms':>8s} {'p95 ms':>8s}   ({args.n} volumes of {SHAPE} float32)")
        for name, security in (("plain", None), ("curve", curve)):
            ms = trip_ms(security, args.n, args.port)
            print(f"{name:8s} {np.median(ms):8.2f} {np.percentile(ms, 95):8.2f}")


if __name__ == "__main__":
    main()
