"""The decode stage's side of fine-tuning between runs (``stream --finetune between-runs``).

The decode stage keeps every decoded trial whose image it knows (its response and image id).
At a run's ``run_end`` it writes a job into the session folder and starts the step in its own
process (``mindeye-rt finetune-step``, :mod:`realtime.finetune_step`: lower priority, one torch
thread), so decoding never waits for it.  When the step's result comes, the run is *settled*:
the decode stage's status lists it (``finetune_settled``), which a replay source waits for
before it starts the next run (:mod:`realtime.stages.finetune_wait`).  Weights that validated
better are loaded and swapped in at the next ``run_start``, never mid-run; worse ones are not,
and the log says so.  A step over its budget is stopped and counts as not accepted.

The record, in the session folder::

    finetune/targets.safetensors      the image embeddings the steps train against
    finetune/step-NN/                 each step's job, data, result and (accepted) weights
    finetune/steps.jsonl              one line per settled step and per swap (the summary's)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from realtime.finetune_step import MODEL_NAME, read_result, write_job
from rt_base.checks import check_choice, check_number
from rt_base.errors import ConfigError

MODES = ("between-runs", "replay")  # replay: a rerun (realtime.stages.decode_swaps)
STEPS_FILE = "steps.jsonl"
TARGETS_FILE = "targets.safetensors"
#: seconds a step may run past its budget (process start, validation, saving) before it is
#: stopped; a source waits that long more at most
KILL_GRACE_S = 15.0
#: the options of a decode spec's ``finetune`` mapping, besides mode, dir and image_ids
STEP_OPTIONS = (
    "params",
    "epochs",
    "lr",
    "batch_size",
    "val_fraction",
    "holdout",
    "min_train",
    "seed",
    "alphas",
    "verdict",
    "l2sp",
    "rehearsal_ratio",
)


def wait_limit_s(budget_s: float) -> float:
    """How long a replay source waits at most for a step: its budget and the grace."""
    return float(budget_s) + KILL_GRACE_S + 5.0


class BetweenRunsFinetuner:
    """Collects the decoded trials, runs a step after each run, hands back better weights.

    Parameters
    ----------
    folder : the session's ``finetune`` folder.
    checkpoint : the model the session starts with (each step starts from the current one).
    targets : :class:`~mindeye_models.bank.ImageBank` of the session's images (the training
        targets; validation ranks among them).  Its file is written into ``folder``.
    budget_s : seconds a step may take, process start included.
    device : where the step trains (the decode stage's device).
    step_options : :class:`~mindeye_models.finetune.FinetuneConfig` fields (``params``,
        ``epochs``, ``lr`` ...).
    last_run : the session's last run, after which no step starts (None: unknown).
    report : ``report(level, text)`` of the decode stage (log and console).
    rehearsal : the rehearsal file's record (path, sha256, n_trials, n_voxels: see
        :func:`~mindeye_models.finetune_rehearsal.rehearsal_record`): each job carries it and
        the step trains on the file's trials too, refusing a changed file.
    """

    def __init__(
        self,
        folder: str | Path,
        checkpoint: str | Path,
        targets,
        *,
        budget_s: float = 60.0,
        device: str = "cpu",
        step_options: dict[str, Any] | None = None,
        last_run: str | None = None,
        report=None,
        rehearsal: dict | None = None,
    ) -> None:
        from mindeye_models.finetune import FinetuneConfig

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.current = str(checkpoint)
        self.budget_s = check_number(budget_s, "finetune_budget", minimum=1, unit="seconds")
        options = dict(step_options or {})
        unknown = sorted(set(options) - set(STEP_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown fine-tune option(s) {unknown}; known: {list(STEP_OPTIONS)}")
        self.config = asdict(FinetuneConfig(**options, budget_s=self.budget_s, device=device))
        self.targets_path = self.folder / TARGETS_FILE
        targets.save(self.targets_path)
        self.known_ids = {int(i) for i in targets.ids}
        self.report = report or (lambda level, text: None)
        self.trials: list[tuple[np.ndarray, int, str, int]] = []
        self.proc: subprocess.Popen | None = None
        self.job: dict[str, Any] | None = None
        self.steps = 0
        self.settled: list[str] = []
        self.pending: tuple[Any, dict] | None = None  # (model, result) waiting for a run_start
        self.swaps = 0
        self.model_label = "initial"
        self.last_run = last_run  # no step after it: no run is left to decode
        self.rehearsal = rehearsal
        if rehearsal is not None:
            self._record({"event": "rehearsal", **rehearsal})

    # -- the decode stage's calls -------------------------------------------------------------
    def observe(self, run: str, index: int, image_id, response: np.ndarray) -> None:
        """Keep a decoded trial whose image is among the targets."""
        if image_id is not None and int(image_id) in self.known_ids:
            self.trials.append((np.array(response, np.float32), int(image_id), run, int(index)))

    def run_ended(self, run: str) -> None:
        """Start a step on every trial so far (settled at once when one is still running)."""
        if run == self.last_run:
            self._settle(run)
            return
        if self.proc is not None:
            self._record(
                {
                    "event": "step",
                    "after_run": run,
                    "outcome": "skipped",
                    "accepted": False,
                    "reason": f"step {self.job['step']} was still running",
                }
            )
            self._settle(run)
            return
        from mindeye_models.finetune import held_out_split

        by_image = [t[1] for t in self.trials] if self.config["holdout"] == "images" else None
        train, val = held_out_split(len(self.trials), self.config["val_fraction"], by_image)
        if len(train) < self.config["min_train"] or len(val) < self.config["min_val"]:
            self._record(
                {
                    "event": "step",
                    "after_run": run,
                    "outcome": "skipped",
                    "accepted": False,
                    "reason": f"too few trials with a known image so far ({len(self.trials)})",
                }
            )
            self.report("info", f"fine-tune after {run}: skipped, {len(self.trials)} trials")
            self._settle(run)
            return
        self.steps += 1
        job_dir = self.folder / f"step-{self.steps:02d}"
        data = {
            "voxels": np.stack([t[0] for t in self.trials]) if self.trials else np.zeros((0, 0)),
            "image_ids": np.array([t[1] for t in self.trials], np.int64),
            "runs": np.array([t[2] for t in self.trials]),
            "trials": np.array([t[3] for t in self.trials], np.int64),
        }
        self.job = {
            "step": self.steps,
            "after_run": run,
            "checkpoint": self.current,
            "targets": str(self.targets_path),
            "config": self.config,
            "budget_s": self.budget_s,
            "launched_at": time.time(),
            "dir": str(job_dir),
            **({"rehearsal": self.rehearsal} if self.rehearsal else {}),
        }
        write_job(job_dir, data, self.job)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env["OPENBLAS_NUM_THREADS"] = "1"
        cmd = [sys.executable, "-m", "realtime.cli", "finetune-step", str(job_dir)]
        with open(job_dir / "step.log", "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.report(
            "info",
            f"fine-tune step {self.steps} after {run}: {len(self.trials)} trials, "
            f"budget {self.budget_s:g} s (pid {self.proc.pid})",
        )

    def poll(self) -> bool:
        """Check a running step; True when it has just settled (its result is in)."""
        if self.proc is None:
            return False
        code = self.proc.poll()
        elapsed = time.time() - self.job["launched_at"]
        written = read_result(Path(self.job["dir"])) if code is None else None
        if written is not None:  # result.json is written last: the step is over, bar its exit
            self.proc.kill()
            self.proc.wait()
            code = 0
        if code is None and elapsed <= self.budget_s + KILL_GRACE_S:
            return False
        if code is None:  # over its budget: stopped
            self.proc.kill()
            self.proc.wait()
            result = {"accepted": False, "reason": f"over its budget ({elapsed:.1f} s): stopped"}
            outcome = "timeout"
        else:
            result = read_result(Path(self.job["dir"])) or {
                "accepted": False,
                "reason": f"the step process exited {code} without a result "
                f"(see {self.job['dir']}/step.log)",
            }
            outcome = "accepted" if result.get("accepted") else "rejected"
            if code != 0 and not result.get("accepted"):
                outcome = "failed"
        self.proc = None
        self._finish(result, outcome, elapsed)
        return True

    def take_swap(self, run: str):
        """At ``run_start`` of ``run``: the better model waiting, if any (None otherwise)."""
        self.poll()
        if self.pending is None:
            return None
        model, result = self.pending
        self.pending = None
        self.swaps += 1
        self.current = result["weights"]
        self.model_label = f"step-{result['step']:02d}"
        self._record(
            {"event": "swap", "step": result["step"], "run": run, "weights": result["weights"]}
        )
        self.report("info", f"fine-tune: decoding {run} with the weights of step {result['step']}")
        return model

    def close(self) -> None:
        """At the session's end: a step still running is stopped; weights not used are said."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self._record(
                {
                    "event": "step",
                    "step": self.job["step"],
                    "after_run": self.job["after_run"],
                    "outcome": "cancelled",
                    "accepted": False,
                    "reason": "the session ended",
                }
            )
        if self.pending is not None:
            step = self.pending[1]["step"]
            self.report("info", f"fine-tune: step {step}'s weights came after the last run")
            self.pending = None

    def status(self) -> dict:
        """Status fields: ``finetune_settled`` is what a waiting source reads."""
        return {
            "finetune_state": "running" if self.proc is not None else "idle",
            "finetune_settled": list(self.settled),
            "finetune_steps": self.steps,
            "finetune_swaps": self.swaps,
            "finetune_model": self.model_label,
        }

    # -- internals ----------------------------------------------------------------------------
    def _finish(self, result: dict, outcome: str, elapsed: float) -> None:
        step, run = self.job["step"], self.job["after_run"]
        keep = ("accepted", "reason", "n_train", "n_val", "before", "after", "epochs_run")
        keep += ("alpha", "batches_run", "stopped_early", "grid", "since_launch_seconds")
        line = {"event": "step", "step": step, "after_run": run, "outcome": outcome}
        line.update({k: result.get(k) for k in keep})
        line.update(
            seconds=round(elapsed, 3),
            train_seconds=result.get("train_seconds"),
            weights=result.get("weights"),
        )
        if result.get("accepted"):
            try:
                from mindeye_models.checkpoint import load_checkpoint

                model, _ = load_checkpoint(result["weights"], device=self.config["device"])
                self.pending = (model, {**result, "step": step})
            except Exception as err:  # noqa: BLE001 - a bad file: keep decoding with the old
                line.update(outcome="failed", accepted=False, reason=f"weights unreadable: {err}")
        self._record(line)
        self._settle(run)
        self.report(
            "info" if outcome in ("accepted", "rejected") else "warning", describe_step(line)
        )

    def _settle(self, run: str) -> None:
        self.settled.append(run)

    def _record(self, line: dict) -> None:
        with open(self.folder / STEPS_FILE, "a") as fh:
            fh.write(json.dumps({**line, "time": time.time()}) + "\n")


def describe_step(step: dict) -> str:
    """One line about a settled step (a ``steps.jsonl`` line or the summary's entry): its
    verdict, the weights kept, held-out figures before and after, reason and seconds.  The one
    wording of a step, for the decode stage's log and the summary."""
    n = step.get("step")  # a skipped step has no number
    text = f"fine-tune {f'step {n} ' if n else ''}after {step['after_run']}: {step['outcome']}"
    if step.get("alpha") is not None:
        text += f" (alpha {step['alpha']:g})"
    before, after = step.get("before"), step.get("after")
    if before and after:
        text += (
            f"; held-out ({step.get('n_val')} trials, {before.get('ways')}-way) top-1 "
            f"{100 * before['top1']:.0f} % -> {100 * after['top1']:.0f} %, mean rank "
            f"{before['mean_rank']:.2f} -> {after['mean_rank']:.2f}"
        )
        if "mrr" in before and "mrr" in after:
            text += f", MRR {before['mrr']:.3f} -> {after['mrr']:.3f}"
    seconds = step.get("seconds")
    return f"{text} ({step.get('reason')}; {'?' if seconds is None else f'{seconds:.1f}'} s)"


def finetuner_from_spec(
    spec: dict[str, Any] | None,
    *,
    checkpoint: str,
    dataset: str,
    device: str,
    clip_weights: str | None,
    cache_dir: str | None,
    report,
) -> BetweenRunsFinetuner | None:
    """The decode spec's ``finetune`` mapping (None: off): ``mode``, ``dir`` (the session's
    finetune folder), ``budget_s``, ``image_ids`` (the session's images: the targets) and
    :data:`STEP_OPTIONS`."""
    if not spec:
        return None
    spec = dict(spec)
    mode = check_choice(spec.pop("mode", None), "finetune", MODES)
    if mode == "replay":
        from realtime.stages.decode_swaps import RecordedSwaps

        return RecordedSwaps(spec.get("swaps") or {}, device=device, report=report)
    for key in ("dir", "image_ids"):
        if key not in spec:
            raise ConfigError(f"the decode spec's 'finetune' needs {key!r}")
    folder, ids = spec.pop("dir"), spec.pop("image_ids")
    budget, last_run = spec.pop("budget_s", 60.0), spec.pop("last_run", None)
    rehearsal = spec.pop("rehearsal", None)
    if rehearsal is not None:  # the voxels must be the model's
        from mindeye_models.checkpoint import read_sidecar

        n_voxels = read_sidecar(checkpoint).get("config", {}).get("n_voxels")
        if n_voxels is not None and int(rehearsal["n_voxels"]) != int(n_voxels):
            raise ConfigError(
                f"the rehearsal file {rehearsal['path']!r} has {rehearsal['n_voxels']} voxels; "
                f"the model takes {n_voxels}: give this subject's responses"
            )
    targets = load_targets(checkpoint, dataset, ids, device, clip_weights, cache_dir)
    return BetweenRunsFinetuner(
        folder,
        checkpoint,
        targets,
        budget_s=budget,
        device=device,
        step_options=spec,
        last_run=last_run,
        report=report,
        rehearsal=rehearsal,
    )


def load_targets(checkpoint, dataset, ids, device, clip_weights=None, cache_dir=None):
    """The image bank of ``ids`` embedded by the checkpoint's embedder (cached like the
    retrieval bank)."""
    from mindeye_models.bank import ImageBank
    from mindeye_models.checkpoint import read_sidecar
    from mindeye_models.embedder import load_embedder
    from replay_data.dataset_reader import ReplayDataset

    name = read_sidecar(checkpoint).get("extra", {}).get("embedder", "tiny-random")
    embedder = load_embedder(name, weights=clip_weights, device=device)
    ids = np.asarray(sorted({int(i) for i in ids}), np.int64)
    images = ReplayDataset.open(dataset).stimuli()[ids]
    return ImageBank.build(images, ids, embedder, cache_dir=cache_dir)


def model_weights_path(job_dir: str | Path) -> Path:
    """Where an accepted step's weights are."""
    return Path(job_dir) / f"{MODEL_NAME}.safetensors"
