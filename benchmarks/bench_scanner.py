"""A live scanner session on this machine: scanner-sim writes DICOM/NIfTI files at the TR's pace
while ``mindeye-rt stream --scanner`` watches the folder; prints the session's figures.

    python benchmarks/bench_scanner.py --replay subj01-moving --format mosaic --runs run-01
    python benchmarks/bench_scanner.py --format enhanced --speed 4      # a whole session, faster

The stream starts first; the export starts once the stream's source is up (its log file
appears, so every other stage is ready), as at a scanner where the pipeline waits for the first
volume.  Acquisition -> retrieval runs from the moment the console finished writing a volume's
file to the trial's top-k, so it includes finding and reading the file.  Two clocks start it:
the file's mtime (what the pipeline sees and the session summary counts from) and the moment
scanner-sim stamped the file closed (``scanner-sim --times``); both are printed, with the spans
of the way from the file to the top-k.  The mtime is stamped as the console's last write starts,
so it also counts that write (a quarter of the file: 2.6 ms p50, 4.5-5.2 ms p95 measured on this
machine after the writer's pause); the close stamp, taken 0.03 ms after the close, marks the
file complete, where the pipeline's own work begins.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_pipeline import print_latency  # a sibling script (benchmarks/ is on the path)

from realtime.cpu_pinning import available_cpus, cpu_plan, pin_threads


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replay", default="subj01-moving")
    ap.add_argument("--format", default="mosaic", choices=["mosaic", "enhanced", "nifti"])
    ap.add_argument("--runs", nargs="+")
    ap.add_argument("--speed", type=float, default=1.0, help="scanner-sim pace (1: real time)")
    ap.add_argument("--motion", default="correct")
    ap.add_argument("--recon", default="none")
    ap.add_argument("--decode-precision", default="auto", choices=["auto", "fp32", "int8"])
    ap.add_argument(
        "--background-nice", default="5", help="the stream's --background-nice (0: as the others)"
    )
    ap.add_argument(
        "--fuse-stages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the stream's --fuse-stages (the default) or --no-fuse-stages (split processes)",
    )
    ap.add_argument(
        "--fuse-source",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the stream's --fuse-source (the default: the source in the fused process) or "
        "--no-fuse-source (the source its own process)",
    )
    ap.add_argument(
        "--pin-cpus",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the stream's --pin-cpus (the default: scanner-sim, like every process of the "
        "session but the critical stages, on the shared CPUs) or --no-pin-cpus",
    )
    ap.add_argument("--out", help="session folder (default: a temporary one)")
    args = ap.parse_args()
    # the stream makes its plan from the CPUs it may use, so this script moves to the shared
    # ones (with scanner-sim, started later) only once the stream has started
    plan = cpu_plan(available_cpus()) if args.pin_cpus else None
    work = Path(tempfile.mkdtemp(prefix="bench-scanner-"))
    out = Path(args.out) if args.out else work / "session"
    export = work / "export"
    export.mkdir()
    runs = ["--runs", *args.runs] if args.runs else []
    stream = [
        sys.executable, "-m", "realtime.cli", "stream", "--scanner", str(export),
        "--replay", args.replay, "--headless", "--quiet", "--out", str(out),
        "--motion", args.motion, "--recon", args.recon, "--scanner-idle", "30", *runs,
        "--decode-precision", args.decode_precision, "--background-nice", args.background_nice,
        "--fuse-stages" if args.fuse_stages else "--no-fuse-stages",
        *(["--fuse-source" if args.fuse_source else "--no-fuse-source"] if args.fuse_stages
          else []),
        "--pin-cpus" if args.pin_cpus else "--no-pin-cpus",
    ]  # fmt: skip
    sim = [
        sys.executable, "-m", "realtime.cli", "scanner-sim", "--replay", args.replay,
        "--to", str(export), "--format", args.format, "--speed", str(args.speed), *runs,
        "--times", str(work / "closed.tsv"),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(stream)
    if plan is not None:
        pin_threads(plan["shared"])
    # the process the source runs in: its log says when the source watches the folder
    log = out / "logs" / ("fused.log" if args.fuse_stages and args.fuse_source else "source.log")
    while not (log.exists() and "for the scanner's volumes" in log.read_text(errors="replace")):
        if proc.poll() is not None:
            sys.exit(f"stream ended before its source started (code {proc.returncode})")
        time.sleep(0.2)
    time.sleep(1.0)
    subprocess.run(sim, check=True)
    code = proc.wait()
    wall = time.perf_counter() - t0
    s = json.loads((out / "summary.json").read_text())
    print(f"\n=== scanner benchmark ({args.format}, scanner-sim speed {args.speed}) ===")
    print(f"dataset {s['dataset']} (simulated={s['simulated']}), input {s['input']}, exit {code}")
    print(f"volumes {s['volumes_received']} (lost {s['volumes_lost']}), trials {s['trials']}")
    print(f"whole session incl. start-up: {wall:.1f} s; real-time factor {s['realtime_factor']}")
    print_latency(s)
    _first_trials(out)
    retrievals = [
        r["t"] for r in map(json.loads, open(out / "timing.jsonl")) if r["kind"] == "retrieval"
    ]
    _from_close(retrievals, export, work / "closed.tsv")
    _hops(retrievals)
    print(
        f"top-1 real-time {s['retrieval_top1']}, offline {s['offline_top1']} "
        f"({s['retrieval_ways']}-way)"
    )
    if s.get("motion"):
        print(f"motion: {json.dumps(s['motion'].get('error_vs_truth') or {})}")
        print(
            f"        FD max {s['motion']['fd_max_mm']} mm, over: {s['motion']['fd_over_threshold']}"
        )


def _first_trials(out: Path) -> None:
    """Acquisition -> retrieval of each run's first three trials (the warm-up's test)."""
    import csv

    with open(out / "retrievals.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    first: dict[str, list[str]] = {}
    for r in rows:
        first.setdefault(r["run"], [])
        if len(first[r["run"]]) < 3:
            first[r["run"]].append(f"{float(r['latency_ms']):.1f}")
    for run, lat in first.items():
        print(f"first trials of {run}: {', '.join(lat)} ms (acquisition -> top-k)")


def _from_close(retrievals: list[dict], export: Path, closed_log: Path) -> None:
    """Acquisition -> top-k from the writer's close, and the spans on the way (ms)."""
    import numpy as np

    from realtime.scanner_sim import read_times

    closed = read_times(closed_log)
    # the pipeline's acquisition stamp (a file's mtime) -> the writer's close of that file
    pairs = [((export / n).stat().st_mtime, t) for n, t in closed.items() if (export / n).exists()]
    by_mtime = dict(pairs)
    if len(by_mtime) < len(pairs):  # files written faster than the filesystem's mtime resolution
        print("files share mtimes (a fast scanner-sim): the close-time figures are not available")
        return
    trials = [t for t in retrievals if "decode.done" in t]
    trials = [t for t in trials if t.get("source.acquired") in by_mtime]
    if not trials:
        print("no trial matched a closed file: the close-time figures are not available")
        return
    spans = {
        "file mtime -> writer's close": ("source.acquired", "closed"),
        "writer's close -> file read": ("closed", "source.read"),
        "read -> preprocess done": ("source.read", "preprocess.done"),
        "preprocess done -> estimate done": ("preprocess.done", "estimate.done"),
        "estimate done -> decode done": ("estimate.done", "decode.done"),
        "writer's close -> top-k": ("closed", "decode.done"),
        "file mtime -> top-k": ("source.acquired", "decode.done"),
    }
    print(f"per trial ({len(trials)}), ms{'p50':>28s}{'p95':>9s}{'max':>9s}")
    for label, (a, b) in spans.items():
        stamps = [{**t, "closed": by_mtime[t["source.acquired"]]} for t in trials]
        d = np.array([1e3 * (t[b] - t[a]) for t in stamps])
        print(f"  {label:<34s}{np.percentile(d, 50):>9.2f}{np.percentile(d, 95):>9.2f}"
              f"{d.max():>9.2f}")  # fmt: skip


_HOPS = (
    "source.acquired", "source.read", "source.done", "preprocess.received", "preprocess.done",
    "estimate.received", "estimate.done", "decode.received", "decode.done",
)  # fmt: skip


def _hops(retrievals: list[dict]) -> None:
    """Each hop of a trial's way, in ms: a stage's own work (``X.received -> X.done``) and each
    passage between two processes (``X.done -> Y.received``: sending, the wire and the wake-up),
    with the mean over the slowest tenth of the trials (where the p95 comes from)."""
    import numpy as np

    trials = [t for t in retrievals if all(k in t for k in _HOPS)]
    if not trials:
        print("no trial has every stamp: the per-hop figures are not available")
        return
    total = np.array([1e3 * (t["decode.done"] - t["source.acquired"]) for t in trials])
    slow = total >= np.percentile(total, 90)
    print(
        f"per hop ({len(trials)} trials), ms{'p50':>24s}{'p95':>9s}{'max':>9s}{'slowest 10%':>13s}"
    )
    for a, b in itertools.pairwise(_HOPS):
        d = np.array([1e3 * (t[b] - t[a]) for t in trials])
        print(f"  {a + ' -> ' + b:<40s}{np.percentile(d, 50):>9.2f}{np.percentile(d, 95):>9.2f}"
              f"{d.max():>9.2f}{d[slow].mean():>13.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
