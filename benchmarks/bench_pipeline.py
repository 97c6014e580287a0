"""Per-stage latency and throughput of a replay at --speed 0.

    python benchmarks/bench_pipeline.py                 # the default subj01 (simulated unless real)
    python benchmarks/bench_pipeline.py --replay tiny   # any dataset name or path

Runs ``mindeye-rt stream --headless --speed 0`` with stages as separate processes and prints
the figures from the session's summary: volumes per second, the real-time factor (data time /
processing time; 1.0 = just keeps up at the scanner's pace), and per-stage latency percentiles.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replay", default="subj01")
    ap.add_argument("--runs", nargs="+")
    ap.add_argument("--out", help="session folder (default: a temporary one)")
    ap.add_argument("--launcher", default="process", choices=["process", "thread"])
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-pipeline-"))
    cmd = [
        sys.executable,
        "-m",
        "realtime.cli",
        "stream",
        "--replay",
        args.replay,
        "--headless",
        "--speed",
        "0",
        "--quiet",
        "--out",
        str(out),
        "--launcher",
        args.launcher,
    ]
    if args.runs:
        cmd += ["--runs", *args.runs]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    print("\n=== pipeline benchmark (replay at --speed 0) ===")
    print(f"dataset {s['dataset']} (simulated={s['simulated']}), launcher {args.launcher}")
    print(f"volumes {s['volumes_received']} (lost {s['volumes_lost']}), trials {s['trials']}")
    print(f"whole command incl. start-up and offline comparison: {wall:.1f} s")
    if s["realtime_factor"]:
        print(
            f"real-time factor {s['realtime_factor']:.2f}x "
            f"(data time / time from first acquisition to last volume recorded)"
        )
    print_latency(s)
    print(
        f"top-1 real-time {s['retrieval_top1']}, offline {s['offline_top1']} "
        f"({s['retrieval_ways']}-way)"
    )


def print_latency(s: dict) -> None:
    """The latency table of a session's summary ``s``: per stage, and acquisition -> top-k."""
    print(f"{'stage':<11s}{'p50 ms':>10s}{'p95 ms':>10s}{'max ms':>10s}{'n':>7s}")
    for stage, p in s["latency_ms"].items():
        print(f"{stage:<11s}{p['p50']:>10.2f}{p['p95']:>10.2f}{p['max']:>10.2f}{p['n']:>7d}")
    if s["end_to_end_ms"]:
        e = s["end_to_end_ms"]
        print(f"{'acq->top-k':<11s}{e['p50']:>10.2f}{e['p95']:>10.2f}{e['max']:>10.2f}{e['n']:>7d}")


if __name__ == "__main__":
    main()
