"""Choosing the fine-tune method on the dev subjects only: step variants replayed offline.

    python benchmarks/finetune_dev_variants.py SESSION [SESSION ...] [--threads 2] [--out FILE]

Each ``SESSION`` is the ``session-with`` folder that ``benchmarks/finetune_subj02.py`` streamed
for a *dev* subject (the protocol: dev subjects subj02-seed4 and subj02-seed5 choose the method;
the test subjects subj02-seed6, -seed7 and -seed8 are streamed once with the chosen one; see the
README, "Fine-tuning between runs").  After each run but the last, every training of
:data:`TRAININGS` fine-tunes a copy of the session's starting model on the trials so far, as a
step would, and every point of :data:`ALPHAS` between the starting and the trained weights is
validated on the step's held-out trials.  Each policy of :data:`POLICIES` then picks its point
(or keeps the starting model) with :func:`mindeye_models.finetune.select_alpha`, the function a
real step uses, and the pick is scored by what the session cannot see:

- ``later_new``: every scored trial of the later runs whose image no run up to the step showed
  (100-way among the test images): top-1 and mean reciprocal rank.  More trials than the next
  run's first showings, so the comparison is less noisy;
- ``next_unseen`` / ``next_repeats``: the next run's first showings and repeats (top-1).

The choice rule, fixed before any result was seen: the policy with the highest mean change of
``later_new`` top-1 over the dev steps; within 1 point, the one with fewer steps that lower it;
then the simplest.  Every training starts from the session's starting model (in a session a
step starts from the current one, the same until a swap).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
from finetune_subj02_variants import recorded_steps

#: trainings compared (step options changed from the session's)
TRAININGS = {
    "30 ep": {},
    "10 ep": {"epochs": 10},
    "30 ep, val 0.3": {"val_fraction": 0.3},
}
ALPHAS = (0.25, 0.5, 0.75, 1.0)
#: (training, alphas tried, verdict): the first is the method before this comparison
POLICIES = {
    "30 ep, alpha 1, top1-rank (before)": ("30 ep", (1.0,), "top1-rank"),
    "30 ep, alpha grid, top1-rank": ("30 ep", ALPHAS, "top1-rank"),
    "30 ep, alpha grid, mrr": ("30 ep", ALPHAS, "mrr"),
    "10 ep, alpha grid, mrr": ("10 ep", ALPHAS, "mrr"),
    "10 ep, alpha 1, top1-rank": ("10 ep", (1.0,), "top1-rank"),
    "30 ep, val 0.3, alpha grid, mrr": ("30 ep, val 0.3", ALPHAS, "mrr"),
}


def scores(model, voxels, image_ids, bank) -> dict:
    """Top-1 and MRR of trials among ``bank`` (None when there are none)."""
    from mindeye_models.finetune import validate

    if len(voxels) == 0:
        return {"n": 0, "top1": None, "mrr": None}
    v = validate(model, voxels, image_ids, bank)
    return {"n": v["n"], "top1": v["top1"], "mrr": v["mrr"]}


def diagnostics(model, data, runs, k, bank) -> dict:
    """What the model does on the runs after ``runs[k]`` (the session cannot see this)."""
    upto = np.isin(data["runs"], runs[: k + 1])
    seen = np.isin(data["image_ids"], np.unique(data["image_ids"][upto]))
    scored, later = data["scored"], np.isin(data["runs"], runs[k + 1 :])
    nxt = data["runs"] == runs[k + 1]
    out = {}
    for name, mask in (
        ("later_new", later & scored & ~seen),
        ("next_unseen", nxt & scored & ~seen),
        ("next_repeats", nxt & scored & seen),
    ):
        out[name] = scores(model, data["voxels"][mask], data["image_ids"][mask], bank)
    return out


def replay_session(folder: Path) -> list[dict]:
    """Every step of one session in every training; per alpha its held-out validation and its
    diagnostics."""
    from mindeye_models.finetune_config import FinetuneConfig

    job, start_model, targets, data, bank, runs = recorded_steps(folder)
    base = {k: v for k, v in job["config"].items() if k not in ("budget_s", "alphas", "verdict")}
    steps = []
    for k, run in enumerate(runs[:-1]):
        upto = np.isin(data["runs"], runs[: k + 1]) & np.isin(data["image_ids"], targets.ids)
        vox, ids = data["voxels"][upto], data["image_ids"][upto]
        step = {"after_run": run, "start": diagnostics(start_model, data, runs, k, bank)}
        for name, change in TRAININGS.items():
            cfg = FinetuneConfig.from_dict({**base, **change, "budget_s": 3600.0})
            step[name] = replay_training(start_model, vox, ids, targets, cfg, (data, runs, k, bank))
            seconds = step[name]["seconds"]
            print(json.dumps({"after_run": run, "training": name, "seconds": seconds}), flush=True)
        steps.append(step)
    for p in start_model.parameters():
        p.requires_grad_(True)
    return steps


def replay_training(start_model, vox, ids, targets, cfg, scored, rehearsal=None) -> dict:
    """One training of a step from ``start_model`` on the session's trials so far (``vox``,
    ``ids``), then every alpha of :data:`ALPHAS` validated on the step's held-out trials and
    scored by :func:`diagnostics` (``scored``: its ``data, runs, k, bank``)."""
    from mindeye_models.finetune import (
        blend,
        finetune_step,
        held_out_split,
        trained_parameters,
        validate,
    )

    model = copy.deepcopy(start_model)
    t = time.perf_counter()
    r = finetune_step(model, vox, ids, targets, cfg, rehearsal=rehearsal)
    seconds = round(time.perf_counter() - t, 1)
    by_image = ids if cfg.holdout == "images" else None
    _, val = held_out_split(len(ids), cfg.val_fraction, by_image)
    params = trained_parameters(model, cfg.params)
    start = [p.detach().clone() for p in trained_parameters(start_model, cfg.params)]
    tuned = [p.detach().clone() for p in params]
    grid = []
    for alpha in ALPHAS:
        blend(params, start, tuned, alpha)
        row = {"alpha": alpha, **validate(model, vox[val], ids[val], targets)}
        row["diag"] = diagnostics(model, *scored)
        grid.append(row)
    out = {"before": r.before, "n_val": r.n_val, "grid": grid, "seconds": seconds}
    return out | {"n_rehearsal": r.n_rehearsal}


def pick(step: dict, policy: tuple) -> tuple[float, dict]:
    """The alpha a policy keeps at a step (0: the starting model) and its diagnostics."""
    from mindeye_models.finetune import select_alpha

    training, alphas, verdict = policy
    t = step[training]
    grid = [r for r in t["grid"] if r["alpha"] in alphas]
    best = select_alpha(grid, t["before"], verdict)
    return (0.0, step["start"]) if best is None else (best["alpha"], best["diag"])


def delta(a: dict, b: dict, key: str) -> float | None:
    return None if a[key] is None else round(100 * (b[key] - a[key]), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="+", help="session-with folders of the dev subjects")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--out", default="finetune_dev_variants.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    replayed = {str(s): replay_session(Path(s)) for s in args.sessions}
    Path(args.out).write_text(json.dumps(replayed, indent=1) + "\n")
    print("| policy | session | after | alpha | later-new top-1 (n) | next unseen | next repeats |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for name, policy in POLICIES.items():
        changes = []
        for session, steps in replayed.items():
            for step in steps:
                alpha, diag = pick(step, policy)
                s0 = step["start"]
                d = delta(s0["later_new"], diag["later_new"], "top1")
                changes.append(d)
                cells = [
                    f"{100 * s0[g]['top1']:.0f} → {100 * diag[g]['top1']:.0f} % ({s0[g]['n']})"
                    if s0[g]["top1"] is not None
                    else "n/a"
                    for g in ("later_new", "next_unseen", "next_repeats")
                ]
                label = Path(session).parent.name
                print(
                    f"| {name} | {label} | {step['after_run']} | {alpha:g} | "
                    + " | ".join(cells)
                    + " |"
                )
        valid = [c for c in changes if c is not None]
        summary[name] = {
            "mean_change_later_new_top1": round(float(np.mean(valid)), 2),
            "steps_lowered": int(sum(c < 0 for c in valid)),
            "steps_raised": int(sum(c > 0 for c in valid)),
            "steps": len(valid),
        }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
