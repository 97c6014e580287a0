"""Soak: a long ``--speed 0`` replay with stage processes killed at random and junk frames on the
stages' input ports; prints volumes, kills, frames injected, volumes lost and each stage's RSS.

    python benchmarks/bench_soak.py                      # 10,000 volumes of the tiny subject
    python benchmarks/bench_soak.py --volumes 2000 --kill-every 15 --seed 1
    python benchmarks/bench_soak.py --speed 20 --kill-every 1e9  # memory over 13 min, no kill
    python benchmarks/bench_soak.py --volumes 3000 --kill-every 5 --layout fused-source

The subject is the tests' tiny simulated subject (60 volumes, 20 trials a run); its test runs are
repeated under new run labels until the session has ``--volumes`` volumes.  While the session
runs (``mindeye-rt stream``, stages as processes), a seeded chaos thread kills a random data
stage process (``--layout split``, the default: source, preprocess, estimate, decode, recorder;
``fused``: source, fused, recorder; ``fused-source``, the stream's default: fused, recorder)
with SIGKILL every ``--kill-every`` seconds on average, and sends ``--junk-rate`` malformed frames a second to random stage input
ports (each kind of frame that ``decode`` must refuse); a sampler reads every stage process's
RSS from ``/proc`` once a second.  Printed per stage: its RSS at 25, 50, 75 and 100 % of the
session (whichever process of the stage was running then), and the same marks over the life of
its longest-lived process (flat memory: the last mark close to the first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import zmq

#: per ``--layout``: the stream's flags, the data stages killed (each a process), and the ports
#: junk frames go to (the stages' inputs that the layout binds)
LAYOUTS = {
    "split": (
        ["--no-fuse-stages"],
        ("source", "preprocess", "estimate", "decode", "recorder"),
        ("preprocess", "estimate", "decode", "recorder"),
    ),
    "fused": (
        ["--fuse-stages", "--no-fuse-source"],
        ("source", "fused", "recorder"),
        ("preprocess", "recorder"),  # (the fused stage's input is preprocess's address)
    ),
    "fused-source": (["--fuse-stages", "--fuse-source"], ("fused", "recorder"), ("recorder",)),
}
#: where in a run (fraction of its samples) RSS is printed
MARKS = (0.25, 0.5, 0.75, 1.0)
#: a stage process younger than this is not killed (it is still loading)
MIN_AGE_S = 4.0


def junk_frames(rng: np.random.Generator) -> list[bytes]:
    """One malformed message: each kind is one that :func:`rt_wire.message.decode` refuses."""
    kind = int(rng.integers(7))
    noise = rng.bytes(int(rng.integers(1, 512)))
    if kind == 0:
        return [b"volume", noise]  # a header that is not JSON
    if kind == 1:
        return [noise]  # a single frame
    if kind == 2:  # deep nesting
        return [b"tr", b"[" * 5000 + b"]" * 5000]
    if kind == 3:  # a buffer whose bytes do not match its shape
        head = {
            "schema": 2,
            "kind": "tr",
            "seq": int(rng.integers(1 << 40)),
            "run": "run-001",
            "index": 0,
            "sender": {"stage": "preprocess", "id": "junk-1"},
            "meta": {},
            "t": {},
            "buffers": [{"name": "z", "dtype": "float32", "shape": [10, 10]}],
        }
        return [b"tr", json.dumps(head).encode(), noise + bytes(401)]  # never 400 bytes
    if kind == 4:  # topic and kind disagree
        return [b"end", json.dumps({"schema": 2, "kind": "tr"}).encode()]
    if kind == 5:  # an unknown schema version
        return [b"tr", json.dumps({"schema": 999, "kind": "tr"}).encode()]
    return [b"tr", b"{}", noise, noise]  # header missing every key


def build_dataset(work: Path, volumes: int):
    """The tiny subject with its test runs repeated until there are ``volumes`` volumes."""
    from replay_data.dataset_reader import ReplayDataset
    from replay_data.dataset_writer import DatasetWriter
    from replay_data.simulate import simulate_subject
    from replay_data.simulation_config import SimulationConfig

    base = work / "datasets" / "tiny"
    if not base.exists():
        simulate_subject(base, SimulationConfig.tiny(snr=4.0, n_test_images=10), progress=False)
    src = ReplayDataset.open(base)
    per_run = src.n_volumes(src.runs[0])
    n_runs = -(-volumes // per_run)
    root = work / "datasets" / f"soak-{n_runs}"
    if root.exists():
        return ReplayDataset.open(root)
    shutil.copytree(base, root)
    info = json.loads((root / "dataset.json").read_text())
    (root / "dataset.json").write_text(json.dumps({**info, "complete": False}))  # to add runs
    writer = DatasetWriter.resume(root)
    have = len(writer.written_runs)
    for i in range(have, n_runs):
        run = src.runs[i % len(src.runs)]
        writer.write_run(src.load_run(run), src.events(run), run=f"run-{i + 1:03d}")
    return writer.finalize()


def rss_kib(pid: int) -> int | None:
    """The resident set size of process ``pid`` (KiB), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def at_marks(samples: list) -> list:
    """The samples at :data:`MARKS` of ``samples`` (time order)."""
    return [samples[max(0, round(m * len(samples)) - 1)] for m in MARKS]


def rss_lines(stage: str, samples: list[tuple[float, int, int]]) -> list[str]:
    """RSS of ``stage`` (samples: seconds, pid, KiB) at 25/50/75/100 % of the session, and over
    the life of its longest-lived process."""

    def fmt(xs):
        return ", ".join(f"{x[2] / 1024:6.1f} MiB @{x[0]:4.0f}s" for x in xs)

    pids = {
        pid: [x for x in samples if x[1] == pid] for pid in dict.fromkeys(x[1] for x in samples)
    }
    longest = max(pids.values(), key=len)
    return [
        f"RSS {stage:<10s} session 25/50/75/100 %: {fmt(at_marks(samples))}; "
        f"{len(pids)} process(es), max {max(x[2] for x in samples) / 1024:6.1f} MiB",
        f"RSS {stage:<10s} longest process (pid {longest[0][1]}, {len(longest)} samples) "
        f"25/50/75/100 %: {fmt(at_marks(longest))}",
    ]


class Chaos:
    """Kills stages, injects junk frames and samples RSS while a session runs."""

    def __init__(self, out: Path, addresses: dict, args) -> None:
        self.out = out
        self.args = args
        self.rng = np.random.default_rng(args.seed)
        self.kills: list[dict] = []
        self.injected = 0
        _, self.stages, inputs = LAYOUTS[args.layout]
        self.rss: dict[str, list[tuple[float, int, int]]] = {s: [] for s in self.stages}
        self.done = threading.Event()
        ctx = zmq.Context.instance()
        self.ports = []
        for name in inputs:
            sock = ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 100)
            sock.connect(addresses[name])
            self.ports.append(sock)

    def _pid(self, stage: str) -> int | None:
        try:
            return int((self.out / "logs" / f"{stage}.pid").read_text())
        except (OSError, ValueError):
            return None

    def run(self) -> None:
        t0 = time.monotonic()
        next_kill = t0 + self.rng.exponential(self.args.kill_every)
        next_sample = t0
        started: dict[int, float] = {}
        while not self.done.wait(0.01):
            now = time.monotonic()
            for stage in self.stages:
                pid = self._pid(stage)
                if pid is not None:
                    started.setdefault(pid, now)
            if now >= next_sample:
                next_sample = now + 1.0
                for stage in self.stages:
                    pid = self._pid(stage)
                    kib = rss_kib(pid) if pid else None
                    if kib is not None:
                        self.rss[stage].append((now - t0, pid, kib))
            if self.rng.random() < self.args.junk_rate * 0.01:
                sock = self.ports[int(self.rng.integers(len(self.ports)))]
                try:
                    sock.send_multipart(junk_frames(self.rng), flags=zmq.NOBLOCK)
                    self.injected += 1
                except zmq.Again:
                    pass
            if now >= next_kill:
                next_kill = now + self.rng.exponential(self.args.kill_every)
                stage = self.stages[int(self.rng.integers(len(self.stages)))]
                pid = self._pid(stage)
                if pid is None or now - started.get(pid, now) < MIN_AGE_S:
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue  # it had ended (a source after the last run)
                self.kills.append({"stage": stage, "pid": pid, "at_s": round(now - t0, 1)})
        for sock in self.ports:
            sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=10_000)
    ap.add_argument("--kill-every", type=float, default=20.0, help="mean seconds between kills")
    ap.add_argument("--junk-rate", type=float, default=20.0, help="junk frames per second")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--speed", type=float, default=0.0, help="replay speed (0: as fast as it goes; 20: a "
        "10,000-volume session lasts 13 min, long enough to see each process's memory)"
    )  # fmt: skip
    ap.add_argument(
        "--layout", choices=sorted(LAYOUTS), default="split",
        help="the stage processes: split (each its own; the default), fused (preprocess, "
        "estimate and decode in one) or fused-source (the source in it too: the stream's default)",
    )  # fmt: skip
    ap.add_argument("--base-port", type=int, default=27400)
    ap.add_argument("--work", help="folder for the dataset and model (default: a temporary one)")
    args = ap.parse_args()
    from mindeye_models.model_cache import ensure_model
    from realtime.config import StreamConfig

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-soak-"))
    os.environ.setdefault("MINDEYE_RT_HOME", str(work / "home"))  # nothing in the user's home
    ds = build_dataset(work, args.volumes)
    model = ensure_model(ds, models_dir=work / "models", preset="tiny", epochs=30, progress=False)
    n_volumes = sum(ds.n_volumes(r) for r in ds.runs)
    n_events = sum(len(ds.events(r)) for r in ds.runs)
    out = work / f"session-{time.strftime('%H%M%S')}"
    cmd = [
        sys.executable, "-m", "realtime.cli", "stream", "--replay", str(ds.root), "--headless",
        "--speed", f"{args.speed:g}", "--quiet", "--out", str(out), "--checkpoint", str(model),
        "--base-port", str(args.base_port), "--recon", "none", "--max-restarts", "100",
        *LAYOUTS[args.layout][0],
    ]  # fmt: skip
    addresses = StreamConfig(replay=str(ds.root), base_port=args.base_port).addresses()
    chaos = Chaos(out, addresses, args)
    thread = threading.Thread(target=chaos.run, daemon=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    thread.start()
    log_lines = proc.stdout.read().splitlines()
    code = proc.wait()
    chaos.done.set()
    thread.join(5)
    wall = time.perf_counter() - t0
    (work / "soak_stream.log").write_text("\n".join(log_lines) + "\n")
    s = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    print("\n=== soak benchmark ===")
    print(" ".join(sys.argv))
    print(f"exit code {code}; wall {wall:.0f} s; session {out}")
    print(f"volumes: expected {n_volumes}, received {s.get('volumes_received')}, "
          f"lost {s.get('volumes_lost')}; trials decoded {s.get('trials')} of {n_events}")  # fmt: skip
    retrievals = out / "retrievals.tsv"
    rows = retrievals.read_text().splitlines()[1:] if retrievals.exists() else []
    trials = {tuple(r.split("\t")[1:3]) for r in rows}
    print(
        f"retrievals.tsv: {len(rows)} rows, {len(trials)} distinct trials (each once: {len(rows) == len(trials)})"
    )
    per_stage = {k: sum(x["stage"] == k for x in chaos.kills) for k in chaos.stages}
    print(f"kills: {len(chaos.kills)} {per_stage}; restarts reported {len(s.get('restarts', []))}")
    print(f"junk frames injected: {chaos.injected}; summary nothing_lost: {s.get('nothing_lost')}")
    for stage, samples in chaos.rss.items():
        if samples:
            for line in rss_lines(stage, samples):
                print(line)
    (work / "soak_result.json").write_text(
        json.dumps({"kills": chaos.kills, "injected": chaos.injected, "rss": chaos.rss}) + "\n"
    )
    print(f"details: {work / 'soak_result.json'}, log {work / 'soak_stream.log'}")


if __name__ == "__main__":
    main()
