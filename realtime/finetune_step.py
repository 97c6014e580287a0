"""One fine-tune step between runs, in its own process: ``mindeye-rt finetune-step JOB_DIR``.

The decode stage (:mod:`realtime.stages.decode_finetune`) writes a job folder and starts this
command; it reads the job, fine-tunes a copy of the current model
(:func:`mindeye_models.finetune.finetune_step`) at a lower priority with one torch thread (the
decode stage shares the cores and must not slow down), and writes, each whole or not at all::

    JOB_DIR/job.json            what to do: checkpoint, targets, options, the run it follows
    JOB_DIR/data.npz            the session's trials so far: responses, image ids, runs, trials
    JOB_DIR/model.safetensors   the fine-tuned weights (+ model.json), only when accepted
    JOB_DIR/result.json         the verdict, validation before and after, seconds (last)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rt_base.atomic import write_json
from rt_base.errors import ConfigError

JOB_FILE = "job.json"
DATA_FILE = "data.npz"
RESULT_FILE = "result.json"
MODEL_NAME = "model"  # model.safetensors + model.json
#: how much less important than the stages a step runs (``os.nice`` increment)
NICENESS = 10


def write_job(job_dir: Path, data: dict[str, np.ndarray], job: dict[str, Any]) -> Path:
    """Write a step's inputs (``data.npz`` first, then ``job.json``) into ``job_dir``."""
    from rt_base.atomic import write_with

    job_dir.mkdir(parents=True, exist_ok=True)
    write_with(job_dir / DATA_FILE, lambda tmp: _save_npz(tmp, data))
    write_json(job_dir / JOB_FILE, job)
    return job_dir


def _save_npz(path: Path, data: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
        np.savez(fh, **data)


def read_result(job_dir: Path) -> dict[str, Any] | None:
    """The step's ``result.json``, or None while it is not written."""
    path = Path(job_dir) / RESULT_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def run_step(job_dir: str | Path, *, log=print, lower_priority: bool = True) -> dict[str, Any]:
    """Carry out the job in ``job_dir``; returns what ``result.json`` holds."""
    import torch

    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import load_checkpoint, save_checkpoint
    from mindeye_models.finetune import FinetuneConfig, finetune_step

    started = time.perf_counter()
    job_dir = Path(job_dir)
    if lower_priority:
        try:
            os.nice(NICENESS)
        except OSError:  # not allowed here: the step still runs on one thread
            pass
    torch.set_num_threads(1)
    # the optimizer's first construction imports torch._dynamo (seconds, many on a busy CPU):
    # done here, before the budget left is reckoned, so the training's clock does not pay it
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
    job_path = job_dir / JOB_FILE
    if not job_path.is_file():
        raise ConfigError(f"{str(job_path)!r} does not exist: give the folder of a fine-tune job")
    job = json.loads(job_path.read_text())
    cfg = FinetuneConfig.from_dict(job["config"])
    with np.load(job_dir / DATA_FILE) as data:
        voxels, image_ids = data["voxels"], data["image_ids"]
    t = time.perf_counter()
    model, extra = load_checkpoint(job["checkpoint"], device=cfg.device)
    read_model_s = time.perf_counter() - t
    targets = ImageBank.load(job["targets"])
    rehearsal = None
    if job.get("rehearsal"):  # the session's file, unchanged (its sha256 is in the job)
        from mindeye_models.finetune_rehearsal import read_rehearsal

        record = job["rehearsal"]
        rehearsal = read_rehearsal(
            record["path"],
            sha256=record["sha256"],
            n_voxels=model.config.n_voxels,
            token_shape=targets.token_shape,
            embedder=extra.get("embedder"),
        )
    loaded_s = time.perf_counter() - started
    cfg = FinetuneConfig.from_dict({**job["config"], "budget_s": step_budget(job, read_model_s)})
    result = finetune_step(model, voxels, image_ids, targets, cfg, log=log, rehearsal=rehearsal)
    out = result.to_dict()
    out.update(after_run=job["after_run"], step=job["step"], from_checkpoint=job["checkpoint"])
    if result.accepted:
        info = {k: out[k] for k in ("step", "after_run", "n_train", "n_val", "before", "after")}
        weights = save_checkpoint(model, job_dir / MODEL_NAME, extra={**extra, "finetuned": info})
        out["weights"] = str(weights)
    out["load_seconds"] = round(loaded_s, 3)
    out["seconds"] = round(time.perf_counter() - started, 3)
    out["step_budget_s"] = cfg.budget_s
    if "launched_at" in job:  # the whole step: process start, imports, loading, saving
        out["since_launch_seconds"] = round(time.time() - float(job["launched_at"]), 3)
    write_json(job_dir / RESULT_FILE, out)
    return out


def step_budget(job: dict[str, Any], read_model_s: float, now: float | None = None) -> float:
    """Seconds left for :func:`finetune_step` of a job's budget (``budget_s``, counted from
    ``launched_at``: the process start and the imports are in it): less what has passed and a
    reserve for saving the weights afterwards (``reserve_s``, at least 1.5 times as long as
    reading the model took: writing it takes about as long).  At least 0.05 s: a step with no
    time left validates once and trains nothing."""
    now = time.time() if now is None else now
    since_launch = now - float(job.get("launched_at", now))
    reserve = max(float(job.get("reserve_s", 2.0)), 1.5 * read_model_s)
    return max(0.05, float(job["budget_s"]) - since_launch - reserve)


def add_finetune_step(sub) -> None:
    """The ``finetune-step`` subcommand (started by the decode stage, not by hand)."""
    p = sub.add_parser(
        "finetune-step",
        help="fine-tune the decoder on a session's trials so far (started by the decode stage)",
    )
    p.add_argument("job_dir", help="the step's folder: job.json and data.npz")


def cmd_finetune_step(args) -> int:
    result = run_step(args.job_dir)
    verdict = "accepted" if result["accepted"] else "not accepted"
    print(f"fine-tune step {result['step']}: {verdict} ({result['reason']})", flush=True)
    # the result and weights are on disk: skip the interpreter's teardown of torch, which on a
    # busy CPU at nice +10 took 14 s (measured) after a step had finished within its budget
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
