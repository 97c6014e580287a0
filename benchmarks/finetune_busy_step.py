"""A recorded fine-tune step run again on a busy CPU: does it end within its budget?

    python benchmarks/finetune_busy_step.py STEP_DIR [--budget 60 20] [--hogs 2] [--out DIR]

``STEP_DIR`` is a ``finetune/step-NN`` folder of a session streamed with ``--finetune
between-runs`` (its ``job.json`` and ``data.npz``).  For each budget the job is copied into
``--out``, its ``launched_at`` set to now, and ``mindeye-rt finetune-step`` started as the decode
stage starts it (one thread, nice +10) while ``--hogs`` processes spin on the cores.  Printed:
the wall time from launch to exit against the budget, and what the step did (epochs and batches
run, stopped early, alpha points validated, verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SPIN = "import time\nend = time.time() + 600\nwhile time.time() < end: pass"


def run_once(step_dir: Path, out: Path, budget: float, hogs: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("job.json", "data.npz"):
        shutil.copy(step_dir / name, out / name)
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(hogs)]
    try:
        time.sleep(1.0)  # the spinners are running
        job = json.loads((out / "job.json").read_text())
        job.update(budget_s=budget, dir=str(out), launched_at=time.time())
        job["config"]["budget_s"] = budget
        (out / "job.json").write_text(json.dumps(job))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "realtime.cli", "finetune-step", str(out)]
        with open(out / "step.log", "w") as log:
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=True)
        wall = time.time() - job["launched_at"]
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    r = json.loads((out / "result.json").read_text())
    keep = ("accepted", "alpha", "epochs_run", "batches_run", "stopped_early", "train_seconds")
    keep += ("step_budget_s", "since_launch_seconds", "reason")
    row = {"budget_s": budget, "hogs": hogs, "wall_s": round(wall, 2)}
    row.update({k: r.get(k) for k in keep})
    row["alphas_validated"] = [g["alpha"] for g in r.get("grid", [])]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step_dir", help="a recorded finetune/step-NN folder")
    ap.add_argument("--budget", type=float, nargs="+", default=[60.0, 20.0])
    ap.add_argument("--hogs", type=int, default=2, help="spinning processes (default 2)")
    ap.add_argument("--out", default="finetune-busy-step")
    args = ap.parse_args()
    rows = []
    for budget in args.budget:
        row = run_once(
            Path(args.step_dir), Path(args.out) / f"budget-{budget:g}", budget, args.hogs
        )
        print(json.dumps(row), flush=True)
        rows.append(row)
    (Path(args.out) / "busy_steps.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
