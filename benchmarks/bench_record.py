"""Cost of keeping the received volumes on record (:mod:`realtime.volume_record`).

    python benchmarks/bench_record.py --dataset tiny        # a dataset's first run (name or path)
    python benchmarks/bench_record.py --volumes 188         # synthetic, NSD's 81x104x83 grid

Feeds one run through a :class:`~realtime.volume_record.VolumeRecord` as a source does and
prints the time each volume's write takes on the source's thread (after the volume is sent:
it delays the next volume only if it takes longer than a TR), then the run-end compression to
``.nii.gz`` (on its own thread, while the next run streams): seconds, MB/s, size ratio.
The synthetic volumes are a smooth head-sized intensity field plus 2 % noise, in scanner-like
units; real data compress differently.  Timings are figures, not assertions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _synthetic(shape, n: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    head = 1000 * np.exp(-2 * (grid**2).sum(0)).astype(np.float32)
    vols = [head + rng.normal(0, 20, shape).astype(np.float32) for _ in range(n)]
    return np.stack(vols, -1), 1.6


def _dataset(name: str) -> tuple[np.ndarray, float]:
    from replay_data.resolve import resolve_replay

    ds = resolve_replay(name, progress=False, log=lambda *a: None)
    return ds.load_run(ds.runs[0]), float(ds.meta.tr)


def bench(data: np.ndarray, tr: float) -> None:
    from realtime.session_layout import RecordLabels
    from realtime.volume_record import VolumeRecord
    from rt_wire.message import Message

    shape, n = data.shape[:3], data.shape[-1]
    meta = {"tr": tr, "n_volumes": n, "shape": list(shape), "affine": np.eye(4).tolist()}
    with tempfile.TemporaryDirectory() as tmp:
        record = VolumeRecord(tmp, RecordLabels("bench", "1"))
        record.take(Message("run_start", run="run-01", meta=meta))
        times = []
        for k in range(n):
            vol = np.ascontiguousarray(data[..., k], dtype=np.float32)
            t0 = time.perf_counter()
            record.take(Message("volume", run="run-01", index=k, buffers={"volume": vol}))
            times.append(time.perf_counter() - t0)
        raw = Path(record.layout.bold_nii(1)).stat().st_size
        t0 = time.perf_counter()
        record.take(Message("run_end", run="run-01", meta={"n_volumes": n}))
        record.close()
        compress = time.perf_counter() - t0
        packed = Path(record.layout.bold_gz(1)).stat().st_size
    ms = 1e3 * np.asarray(times)
    print(f"run of {n} volumes {shape}, {raw / 1e6:.1f} MB as .nii")
    print(
        f"write per volume: p50 {np.percentile(ms, 50):.2f} ms, p95 {np.percentile(ms, 95):.2f} "
        f"ms, max {ms.max():.2f} ms (TR {tr:g} s)"
    )
    print(
        f"compression at run end: {compress:.2f} s ({raw / 1e6 / compress:.0f} MB/s), "
        f".nii.gz {packed / raw:.0%} of the .nii"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", help="a replay dataset's first run (name or path)")
    p.add_argument("--volumes", type=int, default=188, help="synthetic volumes (default 188)")
    args = p.parse_args(argv)
    data, tr = _dataset(args.dataset) if args.dataset else _synthetic((81, 104, 83), args.volumes)
    bench(data, tr)


if __name__ == "__main__":
    main()
